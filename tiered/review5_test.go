package tiered_test

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/strata-cache/strata/internal/clock"
	"github.com/strata-cache/strata/internal/redistest"
	"github.com/strata-cache/strata/l2"
	"github.com/strata-cache/strata/tiered"
)

// review5DB is a test's source of truth.
type review5DB struct {
	mu sync.Mutex
	m  map[string]string
}

func (d *review5DB) set(k, v string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.m[k] = v
}

func (d *review5DB) load(ks []string) map[string]string {
	d.mu.Lock()
	defer d.mu.Unlock()
	out := map[string]string{}
	for _, k := range ks {
		if v, ok := d.m[k]; ok {
			out[k] = v
		}
	}
	return out
}

// wait receives from ch or fails the test after d.
func review5Wait[T any](t *testing.T, ch <-chan T, d time.Duration, what string) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(d):
		t.Fatalf("timed out waiting for %s", what)
		panic("unreachable")
	}
}

// Regression (review 5, after the fill guard moved into l1): Redis is down
// and no channel vouches for L1, so every read is a flight that answers
// from L1 (withoutL2). InvalidateTags forgot the flights in progress up
// front, then l1.InvalidateTags deleted the tagged keys one by one. A read
// that started after the forget and took the target's old L1 copy before its
// deletion stayed joinable: a GetMany that started after InvalidateTags
// returned joined it and answered the old value. Flights are now forgotten
// after L1 changed.
//
// "GetMany": the early read is a GetMany of target and a key it loads (a
// slow database query holds target's flight meanwhile); nothing else is
// needed. "Get": the early read is a Get, held in flight by an Observer that
// blocks on its L1 hit, as a preemption between the hit and the flight's end
// would (the old code passes this one: its dropL1 forgot target's flights
// when it deleted target).
func TestReview5TagInvalidationLeavesJoinableL1Read(t *testing.T) {
	for _, early := range []string{"GetMany", "Get"} {
		t.Run(early, func(t *testing.T) {
			review5InvalidationJoin(t, early, func(c *tiered.Cache[string]) error { return c.InvalidateTags(context.Background(), "a", "b") })
		})
	}
}

// The same with Clear and InvalidatePattern, which drop the whole L1
// (dropAll forgot the flights before l1.Clear; now after).
func TestReview5DropAllLeavesJoinableL1Read(t *testing.T) {
	invs := map[string]func(c *tiered.Cache[string]) error{
		"Clear":   func(c *tiered.Cache[string]) error { return c.Clear(context.Background()) },
		"Pattern": func(c *tiered.Cache[string]) error { return c.InvalidatePattern(context.Background(), "*") },
	}
	for name, inv := range invs {
		for _, early := range []string{"GetMany", "Get"} {
			t.Run(name+"/"+early, func(t *testing.T) { review5InvalidationJoin(t, early, inv) })
		}
	}
}

type review5Mark struct{}

var review5N = 30000

// review5Blocker blocks the first L1 hit reported under a marked ctx until
// released.
type review5Blocker struct {
	once    sync.Once
	hit     chan struct{}
	release chan struct{}
}

func (b *review5Blocker) Observe(ctx context.Context, e tiered.Event) {
	if ctx.Value(review5Mark{}) == nil || e.Kind != tiered.EventHit || e.Tier != tiered.TierL1 {
		return
	}
	b.once.Do(func() {
		close(b.hit)
		<-b.release
	})
}

func review5InvalidationJoin(t *testing.T, early string, inv func(*tiered.Cache[string]) error) {
	ctx := context.Background()
	blocker := &review5Blocker{hit: make(chan struct{}), release: make(chan struct{})}
	c, srv := newRedisClient(t, tiered.Config{Observer: blocker,
		Redis: l2.Config{Timeout: 100 * time.Millisecond, BreakerCoolDown: time.Hour}})
	cache := newCache(t, c, "r5tags", tiered.Options[string]{
		TTL: time.Hour,
		Tags: func(key, _ string) []string {
			switch {
			case key == "target":
				return []string{"b"}
			case strings.HasPrefix(key, "a-"):
				return []string{"a"}
			}
			return nil
		},
	})
	db := &review5DB{m: map[string]string{"target": "old", "slow": "s", "other": "o"}}
	n := review5N
	keys := make([]string, 0, n+1)
	for i := range n {
		k := fmt.Sprintf("a-%d", i)
		keys = append(keys, k)
		db.set(k, "v")
	}
	keys = append(keys, "target")

	srv.Kill()
	redistest.WaitFor(t, 10*time.Second, func() bool { return !c.Bus().Trusted() }, "the bus stops vouching for L1")
	for range 5 { // trip the breaker: L2 calls fail at once from here on
		_, _ = cache.Get(ctx, "warm", nil)
	}
	if _, err := cache.GetMany(ctx, keys, func(_ context.Context, ks []string) (map[string]string, error) { return db.load(ks), nil }); err != nil {
		t.Fatal(err)
	}
	if v, err := cache.Get(ctx, "target", nil); err != nil || v != "old" {
		t.Fatalf("target from L1 = %q, %v; want old", v, err)
	}

	// A flight in progress that InvalidateTags will forget: its forgetting
	// tells when forgetAllFlights ran.
	probeStarted, probeRelease, probeDone := make(chan struct{}), make(chan struct{}), make(chan struct{})
	go func() {
		defer close(probeDone)
		_, _ = cache.Get(ctx, "probe", func(context.Context, string) (string, error) {
			close(probeStarted)
			<-probeRelease
			return "p", nil
		})
	}()
	released := false
	release := func() {
		if !released {
			released = true
			close(probeRelease)
			<-probeDone
		}
	}
	defer release()
	review5Wait(t, probeStarted, 5*time.Second, "the probe's load")
	probeForgotten := func() bool {
		pctx, cancel := context.WithCancel(ctx)
		defer cancel()
		var led bool
		_, _ = cache.GetMany(pctx, []string{"probe", "poll"}, func(_ context.Context, ks []string) (map[string]string, error) {
			led = slices.Contains(ks, "probe")
			cancel() // stop waiting for the probe's flight, if joined
			return nil, nil
		})
		return led
	}
	if probeForgotten() {
		t.Fatal("the probe's flight is not joinable before the invalidation")
	}

	db.set("target", "new") // the application changed the record, then invalidates its tags
	invDone := make(chan error, 1)
	go func() { invDone <- inv(cache) }()
	for deadline := time.Now().Add(10 * time.Second); !probeForgotten(); {
		if time.Now().After(deadline) {
			t.Fatal("InvalidateTags never forgot the flights in progress")
		}
	}

	// A read that starts after the forget and answers target from L1 (not
	// yet deleted), its flight still running.
	f2Release, f2Done := make(chan struct{}), make(chan struct{})
	f2Released := false
	releaseF2 := func() {
		if !f2Released {
			f2Released = true
			close(f2Release)
			close(blocker.release)
			<-f2Done
		}
	}
	defer releaseF2()
	switch early {
	case "GetMany":
		f2Keys := make(chan []string, 1)
		go func() {
			defer close(f2Done)
			_, _ = cache.GetMany(ctx, []string{"target", "slow"}, func(_ context.Context, ks []string) (map[string]string, error) {
				f2Keys <- ks
				<-f2Release
				return db.load(ks), nil
			})
		}()
		// Fixed: the flights are forgotten only after target left L1, so
		// the read loads target; with the bug it answered it from L1.
		review5Wait(t, f2Keys, 10*time.Second, "the concurrent GetMany's load")
	case "Get":
		f2Val := make(chan string, 1)
		go func() {
			defer close(f2Done)
			v, _ := cache.Get(context.WithValue(ctx, review5Mark{}, true), "target", func(context.Context, string) (string, error) {
				return db.load([]string{"target"})["target"], nil
			})
			f2Val <- v
		}()
		select {
		case <-blocker.hit:
		case v := <-f2Val:
			// Fixed: the flights are forgotten only after target left L1.
			if v != "new" {
				t.Fatalf("a Get that began after the flights were forgotten answered %q, want new", v)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("the concurrent Get neither hit L1 nor returned")
		}
	}
	review5Wait(t, invDone, 30*time.Second, "the invalidation") // L2 is down: its error is expected

	// After InvalidateTags returned: the old value must be gone.
	g3Keys := make(chan []string, 1)
	type answer struct {
		m   map[string]string
		err error
	}
	g3Done := make(chan answer, 1)
	go func() {
		m, err := cache.GetMany(ctx, []string{"target", "other"}, func(_ context.Context, ks []string) (map[string]string, error) {
			g3Keys <- ks
			return db.load(ks), nil
		})
		g3Done <- answer{m, err}
	}()
	ks := review5Wait(t, g3Keys, 10*time.Second, "the later GetMany's load")
	releaseF2()
	got := review5Wait(t, g3Done, 10*time.Second, "the later GetMany")
	release()
	if got.m["target"] != "new" {
		t.Fatalf("GetMany after the invalidation returned: target = %q (its loader got %v), want new: it joined a read "+
			"that began after the invalidation forgot the flights and took target's L1 copy before the invalidation deleted it", got.m["target"], ks)
	}
}

// Regression (review 5, the single lease protocol): a GetMany whose
// GetOrLeaseMany failed on one Cluster master (paused) held the leases it
// was granted on the healthy masters. Before the refactor its withoutL2
// released them at once; after it they only went to the background retrier
// (now the keys that answered go on under their leases), whose
// rounds release one key at a time, unguarded, within one second: every
// release to the paused master waits out its timeout, so a lease on a
// healthy master stays until a round happens to reach it, often past
// LeaseWait. Another replica's Get of that healthy key waits the whole
// LeaseWait and loads without caching.
func TestReview5GetManyL2ErrorLeavesHealthyLeasesHeld(t *testing.T) {
	waitGoroutinesGone(t)
	ctx := context.Background()
	cl := redistest.StartCluster(t, 3)
	cfg := l2.Config{ClusterAddrs: cl.Addrs(), Timeout: 100 * time.Millisecond}
	opts := tiered.Options[string]{TTL: time.Hour, LeaseWait: 300 * time.Millisecond}
	aClient := newClient(t, tiered.Config{NodeID: "a", Redis: cfg})
	a := newCache(t, aClient, "r5lease", opts)
	b := newCache(t, newClient(t, tiered.Config{NodeID: "b", Redis: cfg}), "r5lease", opts)

	raw := cl.Client(t)
	l2ns := tiered.L2NameForTest(a)
	ranges, err := raw.ClusterSlots(ctx).Result()
	if err != nil {
		t.Fatal(err)
	}
	masterOf := func(k string) string {
		slot := int(raw.ClusterKeySlot(ctx, aClient.L2().Key(l2ns, k)).Val())
		for _, r := range ranges {
			if slot >= r.Start && slot <= r.End {
				return r.Nodes[0].Addr
			}
		}
		t.Fatalf("no master for %s", k)
		return ""
	}
	victim := cl.Masters[0].Addr()
	var healthy string
	var onVictim []string
	for i := 0; healthy == "" || len(onVictim) < 500; i++ {
		k := fmt.Sprintf("k%d", i)
		switch m := masterOf(k); {
		case m == victim:
			onVictim = append(onVictim, k)
		case healthy == "":
			healthy = k
		}
	}

	cl.Masters[0].Pause()
	defer cl.Masters[0].Resume()
	load := func(_ context.Context, ks []string) (map[string]string, error) {
		m := map[string]string{}
		for _, k := range ks {
			m[k] = "v:" + k
		}
		return m, nil
	}
	got, err := a.GetMany(ctx, append([]string{healthy}, onVictim...), load)
	if err != nil || got[healthy] != "v:"+healthy {
		t.Fatalf("GetMany with a master paused: %v (healthy key %q)", err, got[healthy])
	}

	var bl countingLoader
	if v, err := b.Get(ctx, healthy, bl.load); err != nil || v != "v:"+healthy {
		t.Fatalf("B's Get of %s = %q, %v", healthy, v, err)
	}
	if s := b.Stats(); s.LeaseTimeouts > 0 {
		t.Fatalf("B's Get of %s, whose master is healthy, waited out LeaseWait (%+v): A's GetMany left its lease there", healthy, s)
	}
}

// Sound-check: an entry a GetMany loaded carries the batch's load duration,
// so a later Get near its expiry refreshes it early (XFetch), from L1 and
// from L2 (another replica), as for an entry Get loaded.
func TestReview5GetManyEntriesRefreshEarly(t *testing.T) {
	ctx := context.Background()
	clk := clock.NewManual(time.Unix(1_700_000_000, 0))
	srv := redistest.Start(t)
	cfg := tiered.Config{Redis: l2.Config{Addrs: []string{srv.Addr()}}, Clock: clk, Rand: func() float64 { return 1e-9 }}
	opts := tiered.Options[string]{TTL: time.Minute, Jitter: -1}
	a := newCache(t, newClient(t, cfg), "r5xf", opts)
	b := newCache(t, newClient(t, cfg), "r5xf", opts)
	var batches atomic.Int64
	load := func(_ context.Context, ks []string) (map[string]string, error) {
		batches.Add(1)
		clk.Advance(time.Second) // the batch takes a second
		m := map[string]string{}
		for _, k := range ks {
			m[k] = "v"
		}
		return m, nil
	}
	if _, err := a.GetMany(ctx, []string{"x", "y"}, load); err != nil {
		t.Fatal(err)
	}
	clk.Advance(50 * time.Second) // 9 s before expiry: due with Rand 1e-9 (gap 20.7 s)
	var l countingLoader
	if _, err := a.Get(ctx, "x", l.load); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Get(ctx, "y", l.load); err != nil {
		t.Fatal(err)
	}
	redistest.WaitFor(t, 5*time.Second, func() bool { return l.calls.Load() == 2 }, "both early refreshes ran (%d)", &l.calls)
	if a.Stats().Refreshes != 1 || b.Stats().Refreshes != 1 {
		t.Fatalf("refreshes: A %d, B %d; want 1 each", a.Stats().Refreshes, b.Stats().Refreshes)
	}
}

// Regression (review 5, the single lease protocol): a GetMany answered every
// pending key from unvouched L1 copies when its L2 request failed on any
// server, including keys whose server answered (now only keys whose read
// failed fall back to L1). On a Cluster whose master serving the invalidation
// channel died, no channel vouches for L1 (Guarantee 5: L1 copies that may
// have missed an invalidation are not served); another replica's Set of a
// key on a healthy master never reaches this one. Get of that key reads L2
// and answers the new value; GetMany of it together with a key on the dead
// master answers the stale L1 copy.
func TestReview5GetManyServesUnvouchedL1ForHealthyKeys(t *testing.T) {
	waitGoroutinesGone(t)
	ctx := context.Background()
	cl := redistest.StartCluster(t, 3)
	cfg := l2.Config{ClusterAddrs: cl.Addrs(), Timeout: 100 * time.Millisecond}
	opts := tiered.Options[string]{TTL: time.Hour}
	aClient := newClient(t, tiered.Config{NodeID: "a", Redis: cfg})
	bClient := newClient(t, tiered.Config{NodeID: "b", Redis: cfg})
	a := newCache(t, aClient, "r5vouch", opts)
	b := newCache(t, bClient, "r5vouch", opts)
	redistest.WaitFor(t, 10*time.Second, func() bool { return aClient.Bus().Trusted() && bClient.Bus().Trusted() }, "both replicas' channel vouches")

	raw := cl.Client(t)
	channelMaster := slotMaster(t, raw, "strata:invalidations")
	l2ns := tiered.L2NameForTest(a)
	var healthy, dead string
	for i := 0; healthy == "" || dead == ""; i++ {
		k := fmt.Sprintf("k%d", i)
		if slotMaster(t, raw, aClient.L2().Key(l2ns, k)) == channelMaster {
			if dead == "" {
				dead = k
			}
		} else if healthy == "" {
			healthy = k
		}
	}
	db := &review5DB{m: map[string]string{healthy: "v1", dead: "d1"}}
	loadOne := func(_ context.Context, k string) (string, error) { return db.load([]string{k})[k], nil }
	loadMany := func(_ context.Context, ks []string) (map[string]string, error) { return db.load(ks), nil }
	if v, err := a.Get(ctx, healthy, loadOne); err != nil || v != "v1" {
		t.Fatalf("A's first Get = %q, %v", v, err)
	}

	serverAt(t, cl, channelMaster).Kill()
	redistest.WaitFor(t, 10*time.Second, func() bool { return !aClient.Bus().Trusted() }, "A's channel stops vouching for L1")
	db.set(healthy, "v2")
	_ = b.Set(ctx, healthy, "v2") // reaches L2 (a healthy master); its invalidation cannot reach A

	got, err := a.GetMany(ctx, []string{healthy, dead}, loadMany)
	if err != nil {
		t.Fatal(err)
	}
	if v, err := a.Get(ctx, healthy, loadOne); err != nil || v != "v2" {
		t.Fatalf("control: A's Get of %s = %q, %v; want v2 from L2", healthy, v, err)
	}
	if got[healthy] != "v2" {
		t.Fatalf("A's GetMany(%s, %s) answered %s = %q from an L1 copy no channel vouches for; L2 (its master healthy) holds v2, as A's Get answers",
			healthy, dead, healthy, got[healthy])
	}
}
