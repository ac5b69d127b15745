package tiered_test

import (
	"context"
	"errors"
	"math"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/strata-cache/strata/internal/redistest"
	"github.com/strata-cache/strata/l2"
	"github.com/strata-cache/strata/tiered"
)

// Regression tests of issue 9: invalidations of every kind that must stick
// against racing writes and loads.

// stickReplicas is n replicas of namespace "users" over one Redis, with
// opts, and a probe that reads L2 only (its L1 is off).
type stickReplicas struct {
	srv     *redistest.Server
	clients []*tiered.Client
	caches  []*tiered.Cache[string]
	probe   *tiered.Cache[string]
}

func newStickReplicas(t *testing.T, n int, opts tiered.Options[string]) *stickReplicas {
	t.Helper()
	r := &stickReplicas{srv: redistest.Start(t)}
	redisCfg := l2.Config{Addrs: []string{r.srv.Addr()}}
	for range n {
		c := newClient(t, tiered.Config{Redis: redisCfg})
		r.clients = append(r.clients, c)
		r.caches = append(r.caches, newCache(t, c, "users", opts))
	}
	probeOpts := opts
	probeOpts.L1.Disabled = true
	r.probe = newCache(t, newClient(t, tiered.Config{Redis: redisCfg}), "users", probeOpts)
	return r
}

// inL2 returns key's fresh value in L2, or "" if there is none.
func (r *stickReplicas) inL2(t *testing.T, key string) string {
	t.Helper()
	v, err := r.probe.Get(context.Background(), key, nil)
	switch {
	case errors.Is(err, tiered.ErrNotFound):
		return ""
	case err != nil:
		t.Fatalf("L2 read of %q: %v", key, err)
	}
	return v
}

// lookup is c's answer for key without a loader: its value or "".
func lookup(t *testing.T, c *tiered.Cache[string], key string) string {
	t.Helper()
	v, err := c.Get(context.Background(), key, nil)
	if err != nil && !errors.Is(err, tiered.ErrNotFound) {
		t.Fatalf("Get(%q): %v", key, err)
	}
	return v
}

// applied waits until c's bus has applied at least n invalidations.
func applied(t *testing.T, c *tiered.Client, n uint64) {
	t.Helper()
	redistest.WaitFor(t, 5*time.Second, func() bool { return c.BusStats().Applied >= n }, "invalidations applied")
}

// Item 1: a Set whose L1 install comes after another write of the key to L2
// must not leave its own value in L1 while L2 holds the other.
func TestConcurrentSetsOfOneKeyConverge(t *testing.T) {
	ctx := context.Background()
	t.Run("one replica", func(t *testing.T) {
		r := newStickReplicas(t, 1, tiered.Options[string]{TTL: time.Hour})
		a := r.caches[0]
		paused, resume := make(chan struct{}), make(chan struct{})
		tiered.SetSetHooks(a, nil, func(key string) {
			tiered.SetSetHooks(a, nil, nil) // only the first Set pauses
			close(paused)
			<-resume
		})
		done := make(chan error, 1)
		go func() { done <- a.Set(ctx, "k", "v1") }()
		<-paused
		if err := a.Set(ctx, "k", "v2"); err != nil { // L2: v1 then v2
			t.Fatal(err)
		}
		close(resume)
		if err := <-done; err != nil {
			t.Fatal(err)
		}
		if got, inL2 := lookup(t, a, "k"), r.inL2(t, "k"); got != inL2 || inL2 != "v2" {
			t.Fatalf("replica answers %q, L2 holds %q; want both v2", got, inL2)
		}
	})
	t.Run("two replicas", func(t *testing.T) {
		r := newStickReplicas(t, 2, tiered.Options[string]{TTL: time.Hour})
		a, b := r.caches[0], r.caches[1]
		paused, resume := make(chan struct{}), make(chan struct{})
		tiered.SetSetHooks(a, nil, func(string) { close(paused); <-resume })
		done := make(chan error, 1)
		go func() { done <- a.Set(ctx, "k", "a") }()
		<-paused
		before := r.clients[0].BusStats().Applied
		if err := b.Set(ctx, "k", "b"); err != nil { // L2: a then b
			t.Fatal(err)
		}
		applied(t, r.clients[0], before+1) // A hears of B's write before its install
		close(resume)
		if err := <-done; err != nil {
			t.Fatal(err)
		}
		applied(t, r.clients[1], 1)
		for i, c := range r.caches {
			if got, inL2 := lookup(t, c, "k"), r.inL2(t, "k"); got != inL2 {
				t.Errorf("replica %d answers %q, L2 holds %q", i, got, inL2)
			}
		}
	})
	t.Run("set racing delete", func(t *testing.T) {
		r := newStickReplicas(t, 1, tiered.Options[string]{TTL: time.Hour})
		a := r.caches[0]
		paused, resume := make(chan struct{}), make(chan struct{})
		tiered.SetSetHooks(a, nil, func(string) { close(paused); <-resume })
		done := make(chan error, 1)
		go func() { done <- a.Set(ctx, "k", "v") }()
		<-paused
		if err := a.Delete(ctx, "k"); err != nil { // L2: v, then deleted
			t.Fatal(err)
		}
		close(resume)
		if err := <-done; err != nil {
			t.Fatal(err)
		}
		if got := lookup(t, a, "k"); got != "" || r.inL2(t, "k") != "" {
			t.Fatalf("after Set then Delete in L2, the replica answers %q (L2 %q); want nothing", got, r.inL2(t, "k"))
		}
	})
	t.Run("set racing pattern and clear", func(t *testing.T) {
		for _, inv := range []func(*tiered.Cache[string]) error{
			func(c *tiered.Cache[string]) error { return c.InvalidatePattern(ctx, "k*") },
			func(c *tiered.Cache[string]) error { return c.Clear(ctx) },
		} {
			r := newStickReplicas(t, 1, tiered.Options[string]{TTL: time.Hour})
			a := r.caches[0]
			paused, resume := make(chan struct{}), make(chan struct{})
			tiered.SetSetHooks(a, nil, func(string) { close(paused); <-resume })
			done := make(chan error, 1)
			go func() { done <- a.Set(ctx, "k", "v") }()
			<-paused
			if err := inv(a); err != nil {
				t.Fatal(err)
			}
			close(resume)
			if err := <-done; err != nil {
				t.Fatal(err)
			}
			if got, inL2 := lookup(t, a, "k"), r.inL2(t, "k"); got != inL2 {
				t.Fatalf("replica answers %q, L2 holds %q", got, inL2)
			}
		}
	})
}

// tagged gives every value the tag "t".
func tagged(string, string) []string { return []string{"t"} }

// Item 2: a fill that read L2 before a tag invalidation must not install
// after it, whether the invalidation ran here or on another replica.
func TestTagInvalidationFencesFillInFlight(t *testing.T) {
	ctx := context.Background()
	for _, where := range []string{"here", "elsewhere"} {
		t.Run(where, func(t *testing.T) {
			r := newStickReplicas(t, 2, tiered.Options[string]{TTL: time.Hour, Tags: tagged})
			a, b := r.caches[0], r.caches[1]
			if err := b.Set(ctx, "k", "old"); err != nil {
				t.Fatal(err)
			}
			inv := a
			if where == "elsewhere" {
				inv = b
			}
			tiered.SetBeforeInstall(a, func(string) {
				tiered.SetBeforeInstall(a, nil)
				before := r.clients[0].BusStats().Applied
				if err := inv.InvalidateTags(ctx, "t"); err != nil {
					t.Error(err)
				}
				if where == "elsewhere" {
					applied(t, r.clients[0], before+1)
				}
			})
			if v, err := a.Get(ctx, "k", nil); err != nil || v != "old" {
				t.Fatalf("Get = %q, %v; want the value read before the invalidation", v, err)
			}
			if got := lookup(t, a, "k"); got != "" {
				t.Fatalf("after InvalidateTags, the replica still answers %q", got)
			}
		})
	}
}

// Item 3: a load in flight (lease held, key not yet in any tag set or matched
// by any scan) must not fill L2 after a tag or pattern invalidation returned.
func TestInvalidationEndsLoadInFlight(t *testing.T) {
	ctx := context.Background()
	invalidations := map[string]func(*tiered.Cache[string]) error{
		"tags":    func(c *tiered.Cache[string]) error { return c.InvalidateTags(ctx, "t") },
		"pattern": func(c *tiered.Cache[string]) error { return c.InvalidatePattern(ctx, "k*") },
	}
	for name, inv := range invalidations {
		t.Run(name, func(t *testing.T) {
			r := newStickReplicas(t, 2, tiered.Options[string]{TTL: time.Hour, Tags: tagged})
			a, b := r.caches[0], r.caches[1]
			g := newGate("old")
			done := make(chan string, 1)
			go func() {
				v, _ := a.Get(ctx, "k1", g.load)
				done <- v
			}()
			redistest.WaitFor(t, 5*time.Second, func() bool { return g.calls.Load() == 1 }, "A loads under the lease")
			if err := inv(b); err != nil {
				t.Fatal(err)
			}
			close(g.open)
			if v := <-done; v != "old" {
				t.Fatalf("loader's caller got %q", v)
			}
			if inL2 := r.inL2(t, "k1"); inL2 != "" {
				t.Fatalf("L2 holds %q, loaded before the %s invalidation returned", inL2, name)
			}
			if got := lookup(t, a, "k1"); got != "" {
				t.Fatalf("the loading replica caches %q", got)
			}
		})
	}
}

// Item 4: a Set racing a tag invalidation between writing its value and
// adding its tag membership must leave the key findable by the next one.
func TestSetRacingTagInvalidationKeepsMembership(t *testing.T) {
	ctx := context.Background()
	r := newStickReplicas(t, 1, tiered.Options[string]{TTL: time.Hour})
	a := r.caches[0]
	paused, resume := make(chan struct{}), make(chan struct{})
	tiered.SetSetHooks(a, func(string) { close(paused); <-resume }, nil)
	done := make(chan error, 1)
	go func() { done <- a.Set(ctx, "k", "v", tiered.WithTags("t")) }()
	<-paused
	if err := a.InvalidateTags(ctx, "t"); err != nil {
		t.Fatal(err)
	}
	close(resume)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if err := a.InvalidateTags(ctx, "t"); err != nil {
		t.Fatal(err)
	}
	if inL2 := r.inL2(t, "k"); inL2 != "" {
		t.Fatalf("L2 still holds %q after a later InvalidateTags: its tag membership was lost", inL2)
	}
}

// Item 5: with Sliding, extending a value extends its tag sets too.
func TestSlidingExtendsTagSets(t *testing.T) {
	ctx := context.Background()
	r := newStickReplicas(t, 1, tiered.Options[string]{TTL: time.Hour, Sliding: true})
	a := r.caches[0]
	if err := a.Set(ctx, "k", "v", tiered.WithTags("t"), tiered.WithTTL(2*time.Second)); err != nil {
		t.Fatal(err)
	}
	tagSet := r.clients[0].L2().TagKey("users", "t")
	raw := r.srv.Client(t)
	if ttl := raw.PTTL(ctx, tagSet).Val(); ttl <= 0 || ttl > 3*time.Second {
		t.Fatalf("tag set TTL %v after a 2 s Set", ttl)
	}
	if lookup(t, a, "k") != "v" { // a hit slides: TTL is an hour again
		t.Fatal("value missing")
	}
	redistest.WaitFor(t, 5*time.Second, func() bool {
		return raw.PTTL(ctx, tagSet).Val() > time.Minute && raw.PTTL(ctx, r.clients[0].L2().Key("users", "k")).Val() > time.Minute
	}, "the slide extends the value and its tag set")
}

// Item 6: a reset (a lost invalidation) takes a newer namespace version, then
// drops L1; a read in between that filled L1 from the old namespace is
// dropped with it.
func TestResetAfterLostClearDropsOldNamespace(t *testing.T) {
	ctx := context.Background()
	srv := redistest.Start(t)
	redisCfg := l2.Config{Addrs: []string{srv.Addr()}}
	// Different invalidation keys: A drops what B sends, as if it were lost.
	ca := newClient(t, tiered.Config{Redis: redisCfg, InvalidationKey: []byte("a")})
	cb := newClient(t, tiered.Config{Redis: redisCfg, InvalidationKey: []byte("b")})
	a := newCache(t, ca, "users", tiered.Options[string]{TTL: time.Hour})
	b := newCache(t, cb, "users", tiered.Options[string]{TTL: time.Hour})
	if err := a.Set(ctx, "k", "old"); err != nil {
		t.Fatal(err)
	}
	if err := b.Clear(ctx); err != nil {
		t.Fatal(err)
	}
	if err := b.Set(ctx, "k", "new"); err != nil {
		t.Fatal(err)
	}
	// A read lands between the reset's drop and its version read, and
	// fills L1 from the old namespace.
	var once sync.Once
	tiered.SetBeforeVersion(a, func() {
		once.Do(func() {
			if got := lookup(t, a, "k"); got != "old" {
				t.Errorf("read before the version reread = %q, want the old namespace's", got)
			}
		})
	})
	tiered.Reset(a)
	// The reread takes the version, then drops L1: in between, A may still
	// answer from the L1 copy filled above.
	redistest.WaitFor(t, 5*time.Second, func() bool { return lookup(t, a, "k") == "new" },
		"after the reset, A answers the new namespace's value")
	if v, _ := tiered.VersionKnown(a); v == 0 {
		t.Fatal("A still on version 0")
	}
}

// Item 7: a cache made while Redis does not answer reads its namespace
// version once Redis is back, and until then writes fail with
// ErrVersionUnknown rather than writing under version 0.
func TestFailedVersionReadIsRetried(t *testing.T) {
	ctx := context.Background()
	srv := redistest.Start(t)
	redisCfg := l2.Config{Addrs: []string{srv.Addr()}, Timeout: 100 * time.Millisecond}
	first := newCache(t, newClient(t, tiered.Config{Redis: redisCfg}), "users", tiered.Options[string]{TTL: time.Hour})
	if err := first.Clear(ctx); err != nil {
		t.Fatal(err)
	}
	if err := first.Set(ctx, "k", "after clear"); err != nil {
		t.Fatal(err)
	}
	srv.Pause()
	late := newCache(t, newClient(t, tiered.Config{Redis: redisCfg}), "users", tiered.Options[string]{TTL: time.Hour})
	if _, known := tiered.VersionKnown(late); known {
		t.Fatal("version known while Redis is paused")
	}
	if err := late.Set(ctx, "x", "y"); !errors.Is(err, tiered.ErrVersionUnknown) {
		t.Fatalf("Set with the version unknown = %v, want ErrVersionUnknown", err)
	}
	srv.Resume()
	redistest.WaitFor(t, 10*time.Second, func() bool { _, known := tiered.VersionKnown(late); return known }, "the version is read again")
	if v, _ := tiered.VersionKnown(late); v != 1 {
		t.Fatalf("version %d, want 1", v)
	}
	if v, err := late.Get(ctx, "k", nil); err != nil || v != "after clear" {
		t.Fatalf("Get = %q, %v; want the post-Clear value", v, err)
	}
	// The Set that failed reached L1 only: once the version is known, L1
	// answers what L2 holds again.
	if got := lookup(t, late, "x"); got != "" {
		t.Fatalf("after the version is known, the failed Set's %q is still served", got)
	}
}

// Item 9: tags from the loader path are validated like Set's: a value with
// too many tags is answered but cached nowhere.
func TestLoaderTagsAreValidated(t *testing.T) {
	ctx := context.Background()
	many := make([]string, l2.MaxTags+1)
	for i := range many {
		many[i] = strings.Repeat("t", i+1)
	}
	r := newStickReplicas(t, 2, tiered.Options[string]{TTL: time.Hour, Tags: func(string, string) []string { return many }})
	a, b := r.caches[0], r.caches[1]
	if v, err := a.Get(ctx, "k", func(context.Context, string) (string, error) { return "v", nil }); err != nil || v != "v" {
		t.Fatalf("Get = %q, %v", v, err)
	}
	if inL2 := r.inL2(t, "k"); inL2 != "" {
		t.Fatalf("a value with %d tags was cached in L2", len(many))
	}
	if _, err := b.Get(ctx, "k", nil); !errors.Is(err, tiered.ErrNotFound) {
		t.Fatalf("other replica: %v, want ErrNotFound", err)
	}
	if s := b.Stats(); s.CorruptEntries != 0 {
		t.Fatalf("%d corrupt entries seen", s.CorruptEntries)
	}
	if s := a.Stats(); s.Uncached != 1 {
		t.Fatalf("Uncached = %d, want 1", s.Uncached)
	}
}

// Item 10: with Redis down, a lookup (nil loader) answers from L1 like a
// Get with a loader, for Get and GetMany.
func TestLookupWithRedisDownUsesL1(t *testing.T) {
	ctx := context.Background()
	c, srv := newRedisClient(t, tiered.Config{Redis: l2.Config{Timeout: 100 * time.Millisecond}})
	cache := newCache(t, c, "users", tiered.Options[string]{TTL: time.Hour})
	if err := cache.Set(ctx, "k", "v"); err != nil {
		t.Fatal(err)
	}
	srv.Kill()
	redistest.WaitFor(t, 10*time.Second, func() bool { return !c.Bus().Trusted() }, "the bus stops vouching for L1")
	if v, err := cache.Get(ctx, "k", nil); err != nil || v != "v" {
		t.Fatalf("Get(k, nil) = %q, %v; want this replica's own write", v, err)
	}
	if m, err := cache.GetMany(ctx, []string{"k"}, nil); err != nil || m["k"] != "v" {
		t.Fatalf("GetMany(nil) = %v, %v; want k", m, err)
	}
}

// panicky panics on values equal to "boom".
type panicky struct{}

func (panicky) Marshal(v string) ([]byte, error) {
	if v == "boom" {
		panic("codec boom")
	}
	return []byte(v), nil
}

func (panicky) Unmarshal(data []byte) (string, error) { return string(data), nil }

// Item 11: a Tags or Codec callback that panics in a background refresh does
// not end the process; the refresh fails and the old value stays.
func TestPanickingCallbacksInBackgroundRefresh(t *testing.T) {
	ctx := context.Background()
	cases := map[string]tiered.Options[string]{
		"Tags": {Tags: func(_ string, v string) []string {
			if v == "boom" {
				panic("tags boom")
			}
			return nil
		}},
		"Codec": {Codec: panicky{}},
	}
	for name, opts := range cases {
		t.Run(name, func(t *testing.T) {
			opts.TTL, opts.StaleWhileRevalidate = time.Minute, time.Hour
			cache, clk := manualCache(t, opts)
			if _, err := cache.Get(ctx, "k", func(context.Context, string) (string, error) { return "v1", nil }); err != nil {
				t.Fatal(err)
			}
			clk.Advance(2 * time.Minute)
			var refreshes countingLoader
			refreshes.value = func(string) (string, error) { return "boom", nil }
			if v, info, err := cache.GetWithInfo(ctx, "k", refreshes.load); err != nil || v != "v1" || !info.Stale {
				t.Fatalf("stale Get = %q, %+v, %v", v, info, err)
			}
			redistest.WaitFor(t, 5*time.Second, func() bool {
				return refreshes.calls.Load() == 1 && cache.Stats().Uncached == 1
			}, "the refresh ran and cached nothing")
			if v, _, err := cache.GetWithInfo(ctx, "k", nil); err == nil && v == "boom" {
				t.Fatal("the panicking value was cached")
			}
		})
	}
}

// WithTTL beyond MaxEntryTTL is refused instead of overflowing to a
// millisecond of life.
func TestWithHugeTTLIsRefused(t *testing.T) {
	c := newClient(t, tiered.Config{})
	cache := newCache(t, c, "users", tiered.Options[string]{})
	if err := cache.Set(context.Background(), "k", "v", tiered.WithTTL(math.MaxInt64)); err == nil {
		t.Fatal("Set with WithTTL(math.MaxInt64) succeeded")
	}
	if _, err := tiered.NewCache(c, "other", tiered.Options[string]{TTL: math.MaxInt64}); err == nil {
		t.Fatal("NewCache with TTL math.MaxInt64 succeeded")
	}
	if err := cache.Set(context.Background(), "k", "v", tiered.WithTTL(tiered.MaxEntryTTL)); err != nil {
		t.Fatalf("Set with WithTTL(MaxEntryTTL): %v", err)
	}
	if v, err := cache.Get(context.Background(), "k", nil); err != nil || v != "v" {
		t.Fatalf("Get after a MaxEntryTTL Set = %q, %v", v, err)
	}
}

// Close waits for writes in progress, so their invalidations go out before
// the bus's last heartbeat (and at all).
func TestCloseWaitsForWritesInProgress(t *testing.T) {
	ctx := context.Background()
	r := newStickReplicas(t, 2, tiered.Options[string]{TTL: time.Hour})
	a, b := r.caches[0], r.caches[1]
	if err := a.Set(ctx, "k", "old"); err != nil {
		t.Fatal(err)
	}
	if got := lookup(t, b, "k"); got != "old" {
		t.Fatalf("B answers %q", got)
	}
	paused, resume := make(chan struct{}), make(chan struct{})
	tiered.SetSetHooks(a, nil, func(string) { close(paused); <-resume })
	set := make(chan error, 1)
	go func() { set <- a.Set(ctx, "k", "new") }()
	<-paused
	closed := make(chan error, 1)
	go func() { closed <- r.clients[0].Close() }()
	close(resume)
	if err := <-set; err != nil {
		t.Fatalf("Set in progress at Close: %v", err)
	}
	if err := <-closed; err != nil {
		t.Fatal(err)
	}
	redistest.WaitFor(t, 5*time.Second, func() bool { return lookup(t, b, "k") == "new" },
		"B hears of the Set that was in progress at Close")
}
