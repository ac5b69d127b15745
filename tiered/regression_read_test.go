package tiered_test

import (
	"context"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/strata-cache/strata/internal/clock"
	"github.com/strata-cache/strata/internal/redistest"
	"github.com/strata-cache/strata/l2"
	"github.com/strata-cache/strata/tiered"
)

// failingGate is a loader that blocks until opened, then fails (or returns
// value when fail is false), counting calls.
type failingGate struct {
	*gate
	fail bool
}

func (g *failingGate) load(ctx context.Context, key string) (string, error) {
	v, err := g.gate.load(ctx, key)
	if err == nil && g.fail {
		return "", errSource
	}
	return v, err
}

// manualReplicas returns n caches of one namespace over one Redis, each on its
// own client, all on one manual clock.
func manualReplicas(t *testing.T, n int, opts tiered.Options[string]) ([]*tiered.Cache[string], *clock.Manual, *redistest.Server) {
	t.Helper()
	clk := clock.NewManual(time.Unix(1_700_000_000, 0))
	srv := redistest.Start(t)
	opts.Jitter = -1
	caches := make([]*tiered.Cache[string], n)
	for i := range caches {
		c := newClient(t, tiered.Config{Redis: l2.Config{Addrs: []string{srv.Addr()}}, Clock: clk})
		caches[i] = newCache(t, c, "users", opts)
	}
	return caches, clk, srv
}

// A waiter whose key is present in L2 but expired (kept there for
// StaleIfError) must take the lease over when the holder gives it up without
// a fill, as it does for an absent key. awaitFill only takes leases through
// GetOrLease, which never grants one while the value exists, so the waiter
// polls until LeaseWait.
func TestReviewAwaitFillTakesOverLeaseOfExpiredValue(t *testing.T) {
	ctx := context.Background()
	caches, clk, _ := manualReplicas(t, 2, tiered.Options[string]{
		TTL: time.Minute, StaleIfError: time.Hour, LeaseTTL: time.Minute, LeaseWait: time.Minute,
	})
	a, b := caches[0], caches[1]
	if _, err := a.Get(ctx, "k", func(context.Context, string) (string, error) { return "v1", nil }); err != nil {
		t.Fatal(err)
	}
	clk.Advance(2 * time.Minute) // expired, still in L2 and inside StaleIfError

	// Replica B takes the lease; its source is down.
	holder := &failingGate{gate: newGate(""), fail: true}
	holderDone := make(chan struct{})
	go func() {
		defer close(holderDone)
		v, info, err := b.GetWithInfo(ctx, "k", holder.load)
		if err != nil || v != "v1" || !info.Stale {
			t.Errorf("holder: %q, %+v, %v; want stale v1", v, info, err)
		}
	}()
	redistest.WaitFor(t, 10*time.Second, func() bool { return holder.calls.Load() == 1 }, "B holds the lease and loads")

	// Replica A waits on B's lease.
	other := &countingLoader{value: func(string) (string, error) { return "v2", nil }}
	type answer struct {
		v   string
		err error
	}
	got := make(chan answer, 1)
	go func() {
		// The timeout only bounds the failure: a correct A answers in
		// milliseconds, the bug makes it wait LeaseWait (a minute).
		actx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		v, err := a.Get(actx, "k", other.load)
		got <- answer{v, err}
	}()
	redistest.WaitFor(t, 10*time.Second, func() bool { return a.Stats().LeaseWaits == 1 }, "A waiting on B's lease")

	close(holder.open) // B's load fails: B serves stale and releases the lease
	<-holderDone
	r := <-got
	if r.err != nil || r.v != "v2" || other.calls.Load() != 1 {
		t.Fatalf("A: Get = %q, %v after %d loads; want A to take the released lease and load v2 at once", r.v, r.err, other.calls.Load())
	}
}

// lookupMany (GetMany without a loader) reads the fill-guard generation of a
// key after the pipelined L2 read, so a Set on this replica between the read
// and the install is not fenced off: the old value overwrites the new one in
// L1 and this replica then returns it (guarantees 1 and 2).
func TestReviewGetManyLookupStaleFill(t *testing.T) {
	ctx := context.Background()
	srv := redistest.Start(t)
	redis := l2.Config{Addrs: []string{srv.Addr()}}
	codec := &blockingCodec{blockOn: "old-a", reached: make(chan struct{}), release: make(chan struct{})}
	// One schema: the codecs encode alike, and their types would make the
	// fingerprints differ.
	a := newCache(t, newClient(t, tiered.Config{Redis: redis}), "users", tiered.Options[string]{Codec: codec, Schema: "raw"})
	b := newCache(t, newClient(t, tiered.Config{Redis: redis}), "users", tiered.Options[string]{Schema: "raw"})
	for k, v := range map[string]string{"a": "old-a", "b": "old-b"} {
		if err := b.Set(ctx, k, v); err != nil {
			t.Fatal(err)
		}
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		if _, err := a.GetMany(ctx, []string{"a", "b"}, nil); err != nil {
			t.Error(err)
		}
	}()
	<-codec.reached // GetMany has read both keys from L2 and is decoding "a"
	if err := a.Set(ctx, "b", "new-b"); err != nil {
		t.Fatal(err)
	}
	close(codec.release)
	<-done
	if v, err := a.Get(ctx, "b", nil); err != nil || v != "new-b" {
		t.Fatalf("after Set(b, new-b) returned: Get(b) = %q, %v; want new-b", v, err)
	}
}

// blockingCodec is the raw string codec, blocking the first Unmarshal of
// blockOn until release is closed.
type blockingCodec struct {
	blockOn string
	once    sync.Once
	reached chan struct{}
	release chan struct{}
}

func (c *blockingCodec) Marshal(v string) ([]byte, error) { return []byte(v), nil }

func (c *blockingCodec) Unmarshal(data []byte) (string, error) {
	s := string(data)
	if s == c.blockOn {
		c.once.Do(func() {
			close(c.reached)
			<-c.release
		})
	}
	return s, nil
}

// A Get that starts after Delete returned must not be answered with the
// deleted value. It is, when it joins a flight that began before the Delete:
// the flight's stale-if-error fallback (read before the Delete) or its
// loader's pre-Delete result is handed to it.
func TestReviewGetAfterDeleteJoinsOlderFlight(t *testing.T) {
	for _, mode := range []string{"stale-if-error", "loaded"} {
		t.Run(mode, func(t *testing.T) {
			ctx := context.Background()
			caches, clk, _ := manualReplicas(t, 1, tiered.Options[string]{TTL: time.Minute, StaleIfError: time.Hour})
			cache := caches[0]
			if _, err := cache.Get(ctx, "k", func(context.Context, string) (string, error) { return "old", nil }); err != nil {
				t.Fatal(err)
			}
			clk.Advance(2 * time.Minute) // expired; inside StaleIfError
			// The leader's load reads the source before the Delete and
			// returns after it: failing (stale-if-error serves "old") or
			// with the old record.
			leader := &failingGate{gate: newGate("old"), fail: mode == "stale-if-error"}
			go func() { _, _ = cache.Get(ctx, "k", leader.load) }()
			redistest.WaitFor(t, 10*time.Second, func() bool { return leader.calls.Load() == 1 }, "leader loading")

			if err := cache.Delete(ctx, "k"); err != nil {
				t.Fatal(err)
			}
			// After Delete returned: a new Get, whose loader would see no record.
			fresh := &countingLoader{value: func(string) (string, error) { return "", tiered.ErrNotFound }}
			got := make(chan string, 1)
			go func() {
				v, err := cache.Get(ctx, "k", fresh.load)
				if err != nil {
					v = err.Error()
				}
				got <- v
			}()
			redistest.WaitFor(t, 10*time.Second, func() bool { return flightWaiting() || fresh.calls.Load() > 0 },
				"the new Get waiting on the leader's flight, or loading on its own")
			close(leader.open)
			if v := <-got; v == "old" {
				t.Fatalf("Get started after Delete returned answered %q, the deleted value", v)
			}
		})
	}
}

// flightWaiting reports whether some goroutine waits on a flight call.
func flightWaiting() bool {
	buf := make([]byte, 1<<20)
	buf = buf[:runtime.Stack(buf, true)]
	return strings.Contains(string(buf), "internal/flight.(*Call[...]).Wait")
}

// GetMany's lease path abandons the leases it was granted when a later lease
// command of the same batch fails (readOrLease returns the error, leased falls
// back to L1-only loading): the leases are neither filled nor released, and
// every other replica waits up to LeaseTTL for those keys. A Ring with one
// shard down produces this with a partial GetOrLeaseMany failure; here an ACL
// that denies access to b's lease key makes TryLease(b) fail deterministically.
func TestReviewGetManyReleasesLeasesOnLeaseError(t *testing.T) {
	ctx := context.Background()
	clk := clock.NewManual(time.Unix(1_700_000_000, 0))
	srv := redistest.Start(t)
	srv.Do(t, "ACL", "SETUSER", "app", "on", ">pw", "~strata:users:{a}*", "~strata:users:{b}", "&*", "+@all")
	opts := tiered.Options[string]{TTL: time.Minute, Jitter: -1, LeaseTTL: time.Hour}
	writer := newCache(t, newClient(t, tiered.Config{Redis: l2.Config{Addrs: []string{srv.Addr()}}, Clock: clk}), "users", opts)
	c := newClient(t, tiered.Config{Redis: l2.Config{Addrs: []string{srv.Addr()}, Username: "app", Password: "pw"}, Clock: clk})
	cache := newCache(t, c, "users", opts)
	if err := writer.Set(ctx, "b", "old"); err != nil {
		t.Fatal(err)
	}
	clk.Advance(2 * time.Minute) // b: expired but still in L2, so it is leased with TryLease
	load := func(_ context.Context, keys []string) (map[string]string, error) {
		m := map[string]string{}
		for _, k := range keys {
			m[k] = "v:" + k
		}
		return m, nil
	}
	m, err := cache.GetMany(ctx, []string{"a", "b"}, load)
	if err != nil || m["a"] != "v:a" || m["b"] != "v:b" {
		t.Fatalf("GetMany = %v, %v", m, err)
	}
	if cache.Stats().L2Errors == 0 {
		t.Fatal("TryLease did not fail: the test does not exercise the error path")
	}
	if n := srv.Do(t, "EXISTS", "strata:users:{a}:lease"); n != int64(0) {
		ttl := srv.Do(t, "PTTL", "strata:users:{a}:lease")
		t.Fatalf("a's lease is still held after GetMany returned (PTTL %v ms): other replicas wait on it for LeaseTTL", ttl)
	}
}

// Client.Invalidate from a process without a Cache deletes the key as L2
// spells it after a Clear (with the namespace's version), not the pre-Clear
// key.
func TestInvalidateAfterClearDeletesVersionedKey(t *testing.T) {
	ctx := context.Background()
	c, srv := newRedisClient(t, tiered.Config{})
	cache := newCache(t, c, "users", tiered.Options[string]{TTL: time.Hour})
	if err := cache.Clear(ctx); err != nil {
		t.Fatal(err)
	}
	if err := cache.Set(ctx, "k", "v1"); err != nil {
		t.Fatal(err)
	}
	key := "strata:users#1:{k}"
	if n := srv.Do(t, "EXISTS", key).(int64); n != 1 {
		t.Fatalf("the Set did not land at %s", key)
	}
	producer := newClient(t, tiered.Config{Redis: l2.Config{Addrs: []string{srv.Addr()}}})
	if err := producer.Invalidate(ctx, "users", "k"); err != nil {
		t.Fatal(err)
	}
	if n := srv.Do(t, "EXISTS", key).(int64); n != 0 {
		t.Errorf("Invalidate left %s in L2", key)
	}
}

// A fill that lands in L1 between Get's L1 check and its flight is a fresh
// hit. It was taken for a stale copy (the stale-while-revalidate test did
// not require the value to be past its TTL), so the caller got Info.Stale and
// started a refresh: the second load TestStampedeOneLoadPerCluster caught
// under CPU pressure in CI.
func TestFillBetweenL1CheckAndFlightIsFreshHit(t *testing.T) {
	ctx := context.Background()
	for _, swr := range []time.Duration{0, time.Minute} {
		caches, _, _ := manualReplicas(t, 1, tiered.Options[string]{TTL: time.Minute, StaleWhileRevalidate: swr})
		c := caches[0]
		if err := c.Set(ctx, "k", "v1"); err != nil {
			t.Fatal(err)
		}
		loads := &countingLoader{}
		v, info, err := tiered.GetPastL1(c, ctx, "k", loads.load)
		if err != nil || v != "v1" || info != (tiered.Info{Tier: tiered.TierL1}) {
			t.Fatalf("SWR %v: got %q, %+v, %v; want v1 fresh from L1", swr, v, info, err)
		}
		if s := c.Stats(); s.Refreshes != 0 || s.StaleHits != 0 || s.L1Hits != 1 || loads.calls.Load() != 0 {
			t.Errorf("SWR %v: %+v, %d loads; want one L1 hit and nothing else", swr, s, loads.calls.Load())
		}
	}
}

// LeaseWait runs on the injected clock, as TTLs do (issue 11): with a
// manual clock, a waiter gives up on another replica's lease (LeaseWait a
// minute, the lease held by a gated loader) once the clock passes LeaseWait,
// for Get and for GetMany, and loads itself without caching.
func TestLeaseWaitRunsOnTheInjectedClock(t *testing.T) {
	ctx := context.Background()
	caches, clk, _ := manualReplicas(t, 2, tiered.Options[string]{TTL: time.Hour, LeaseTTL: time.Hour, LeaseWait: time.Minute})
	a, b := caches[0], caches[1]
	g := newGate("a")
	defer close(g.open)
	for i, key := range []string{"by-get", "by-getmany"} {
		go func() { _, _ = a.Get(ctx, key, g.load) }()
		redistest.WaitFor(t, 5*time.Second, func() bool { return g.calls.Load() == int64(i+1) }, "A holds the lease of %s", key)
		done := make(chan string, 1)
		go func() {
			if key == "by-get" {
				v, _ := b.Get(ctx, key, func(context.Context, string) (string, error) { return "b", nil })
				done <- v
				return
			}
			m, _ := b.GetMany(ctx, []string{key}, func(_ context.Context, keys []string) (map[string]string, error) {
				return map[string]string{keys[0]: "b"}, nil
			})
			done <- m[key]
		}()
		redistest.WaitFor(t, 5*time.Second, func() bool { return b.Stats().LeaseWaits == uint64(i+1) }, "B waits on A's lease of %s", key)
		clk.Advance(2 * time.Minute)
		var got string
		redistest.WaitFor(t, 10*time.Second, func() bool {
			select {
			case got = <-done:
				return true
			default:
				return false
			}
		}, "B gives up waiting for %s once the clock passes LeaseWait", key)
		if got != "b" || b.Stats().LeaseTimeouts != uint64(i+1) {
			t.Errorf("%s: B answered %q with %d lease timeouts; want its own load, %d", key, got, b.Stats().LeaseTimeouts, i+1)
		}
	}
}
