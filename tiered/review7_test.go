package tiered_test

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/strata-cache/strata/cluster"
	"github.com/strata-cache/strata/debughttp"
	"github.com/strata-cache/strata/internal/clock"
	"github.com/strata-cache/strata/internal/redistest"
	"github.com/strata-cache/strata/l2"
	"github.com/strata-cache/strata/tiered"
)

// review7Delta asserts that since before, exactly one request moved into the
// bucket named want, and Requests moved by n.
func review7Delta(t *testing.T, step string, before, after tiered.Stats, n uint64, want string) {
	t.Helper()
	buckets := map[string]uint64{
		"l1":    after.L1Hits - before.L1Hits,
		"l2":    after.L2Hits - before.L2Hits,
		"stale": after.StaleHits - before.StaleHits,
		"sie":   after.StaleOnError - before.StaleOnError,
		"miss":  after.Misses - before.Misses,
	}
	if got := after.Requests() - before.Requests(); got != n {
		t.Errorf("%s: Requests moved by %d, want %d (buckets %v)", step, got, n, buckets)
		return
	}
	if want != "" && buckets[want] != n {
		t.Errorf("%s: buckets %v, want %d in %s", step, buckets, n, want)
	}
}

// Every path of Get, GetWithInfo and GetMany counts each call (key) once,
// in the right bucket; background refreshes count none.
func TestReview7StatsEveryPath(t *testing.T) {
	ctx := context.Background()
	srv := redistest.Start(t)
	clk := clock.NewManual(time.Now())
	redisCfg := l2.Config{Addrs: []string{srv.Addr()}}
	a := newClient(t, tiered.Config{NodeID: "a", Clock: clk, Redis: redisCfg})
	b := newClient(t, tiered.Config{NodeID: "b", Clock: clk, Redis: redisCfg})
	opts := tiered.Options[string]{TTL: time.Minute, Jitter: -1, EarlyRefreshBeta: -1, NegativeTTL: time.Minute,
		StaleWhileRevalidate: time.Minute}
	ca := newCache(t, a, "r7", opts)
	cb := newCache(t, b, "r7", opts)
	var fail atomic.Bool
	load := func(_ context.Context, k string) (string, error) {
		if k == "absent" {
			return "", tiered.ErrNotFound
		}
		if fail.Load() {
			return "", errors.New("down")
		}
		return "v:" + k, nil
	}
	loadMany := func(_ context.Context, keys []string) (map[string]string, error) {
		m := map[string]string{}
		for _, k := range keys {
			m[k] = "v:" + k
		}
		return m, nil
	}
	step := func(name string, c *tiered.Cache[string], n uint64, want string, f func()) {
		t.Helper()
		before := c.Stats()
		f()
		review7Delta(t, name, before, c.Stats(), n, want)
	}
	step("miss", ca, 1, "miss", func() { _, _ = ca.Get(ctx, "k", load) })
	step("l1", ca, 1, "l1", func() { _, _ = ca.Get(ctx, "k", load) })
	step("l1 info", ca, 1, "l1", func() { _, _, _ = ca.GetWithInfo(ctx, "k", load) })
	step("l2", cb, 1, "l2", func() { _, _ = cb.Get(ctx, "k", load) })
	step("lookup miss", ca, 1, "miss", func() { _, _ = ca.Get(ctx, "nope", nil) })
	step("negative load", ca, 1, "miss", func() { _, _ = ca.Get(ctx, "absent", load) })
	step("negative l1", ca, 1, "l1", func() { _, _ = ca.Get(ctx, "absent", load) })
	step("negative l2", cb, 1, "l2", func() { _, _, _ = cb.GetWithInfo(ctx, "absent", load) })
	step("getmany mixed", cb, 3, "", func() { _, _ = cb.GetMany(ctx, []string{"k", "m1", "m2"}, loadMany) })
	step("getmany lookup", ca, 3, "", func() { _, _ = ca.GetMany(ctx, []string{"k", "m1", "zz"}, nil) })

	clk.Advance(90 * time.Second) // past TTL, inside SWR
	step("swr", ca, 1, "stale", func() { _, _ = ca.Get(ctx, "k", load) })
	redistest.WaitFor(t, 10*time.Second, func() bool {
		_, info, err := ca.GetWithInfo(ctx, "k", nil)
		return err == nil && !info.Stale
	}, "the refresh lands")
	s := ca.Stats()
	if s.Refreshes == 0 {
		t.Fatalf("no refresh: %+v", s)
	}
}

// A GetMany naming a key twice counts it once: the key is answered once,
// and Stats count per distinct key (documented on Stats).
func TestReview7GetManyDuplicateKeysCounted(t *testing.T) {
	ctx := context.Background()
	c, _ := newRedisClient(t, tiered.Config{})
	cache := newCache(t, c, "r7dup", tiered.Options[string]{TTL: time.Hour})
	loadMany := func(_ context.Context, keys []string) (map[string]string, error) {
		m := map[string]string{}
		for _, k := range keys {
			m[k] = "v"
		}
		return m, nil
	}
	before := cache.Stats()
	if _, err := cache.GetMany(ctx, []string{"a", "a", "b"}, loadMany); err != nil {
		t.Fatal(err)
	}
	if got := cache.Stats().Requests() - before.Requests(); got != 2 {
		t.Errorf("GetMany of 3 keys (one repeated) counted %d requests, want 2 (per distinct key)", got)
	}
}

// Regression (review 7): a server that is down when the client starts is
// out of service, and gets the same WARN as one that goes down later.
// Before, the first health round was quiet and servers start fenced, so the
// only line was the INFO when it came back, for an outage never announced.
func TestReview7DownAtStartIsWarned(t *testing.T) {
	rec := &logRecorder{}
	srv := redistest.Start(t)
	srv.Pause()
	c := newClient(t, tiered.Config{Logger: slog.New(rec), Redis: l2.Config{Addrs: []string{srv.Addr()},
		Timeout: 200 * time.Millisecond, HealthInterval: 50 * time.Millisecond, HealthTimeout: 200 * time.Millisecond}})
	_ = newCache(t, c, "r7logs", tiered.Options[string]{})
	redistest.WaitFor(t, 10*time.Second, func() bool {
		h := c.Health()
		return len(h.Servers) == 1 && !h.Servers[0].Serving
	}, "the paused server out of service")
	srv.Resume()
	redistest.WaitFor(t, 10*time.Second, func() bool { return rec.has(slog.LevelInfo, "strata: L2 server back in service") },
		"an info line that the server returned")
	if !rec.has(slog.LevelWarn, "strata: L2 server out of service") {
		t.Errorf("the server was logged back in service but never out of it; lines at WARN+: %q", rec.atLeast(slog.LevelWarn))
	}
}

// Health, Stats and the debughttp handler read from other goroutines while
// invalidations flow on both channels and members leave and the client
// closes: no data race, no panic.
func TestReview7HealthConcurrent(t *testing.T) {
	ctx := context.Background()
	srv := redistest.Start(t)
	redisCfg := l2.Config{Addrs: []string{srv.Addr()}}
	a := newClient(t, tiered.Config{NodeID: "a", Redis: redisCfg, Gossip: &cluster.Config{BindAddr: "127.0.0.1:0", Profile: cluster.ProfileLocal}})
	b := newClient(t, tiered.Config{NodeID: "b", Redis: redisCfg, Gossip: &cluster.Config{BindAddr: "127.0.0.1:0", Profile: cluster.ProfileLocal,
		Join: []string{a.GossipAddr()}}})
	ca := newCache(t, a, "r7h", tiered.Options[string]{})
	cb := newCache(t, b, "r7h", tiered.Options[string]{})
	redistest.WaitFor(t, 10*time.Second, func() bool { return len(a.Health().Members) == 2 }, "both members")
	srvA := httptest.NewServer(debughttp.Handler(a))
	defer srvA.Close()
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for _, c := range []*tiered.Client{a, b} {
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				h := c.Health()
				if _, err := json.Marshal(h); err != nil {
					t.Error(err)
				}
				_ = c.Stats()
			}
		})
	}
	wg.Go(func() {
		for {
			select {
			case <-stop:
				return
			default:
			}
			resp, err := srvA.Client().Get(srvA.URL)
			if err != nil {
				t.Error(err)
				return
			}
			var r debughttp.Report
			if err := json.NewDecoder(resp.Body).Decode(&r); err != nil {
				t.Error(err)
			}
			resp.Body.Close()
		}
	})
	for range 50 {
		_ = ca.Set(ctx, "k", "v")
		_ = cb.Delete(ctx, "k")
	}
	_ = b.Close()
	redistest.WaitFor(t, 10*time.Second, func() bool {
		ms := a.Health().Members
		return len(ms) == 2 && ms[1].Name == "b" && ms[1].State == cluster.MemberLeft
	}, "b left")
	_ = a.Close()
	close(stop)
	wg.Wait()
	if h := a.Health(); h.NodeID != "a" {
		t.Errorf("Health after Close: %+v", h)
	}
}

// A GetMany that waits on a Get's flight whose caller gives up retries the
// key itself; a Get whose ctx ends while waiting gives up. Each call (key)
// is still one request.
func TestReview7StatsCancelledFlights(t *testing.T) {
	ctx := context.Background()
	c, _ := newRedisClient(t, tiered.Config{})
	cache := newCache(t, c, "r7cancel", tiered.Options[string]{TTL: time.Hour})
	entered := make(chan struct{}, 4)
	load := func(ctx context.Context, k string) (string, error) {
		entered <- struct{}{}
		<-ctx.Done()
		return "", ctx.Err()
	}
	loadMany := func(_ context.Context, keys []string) (map[string]string, error) {
		m := map[string]string{}
		for _, k := range keys {
			m[k] = "v"
		}
		return m, nil
	}
	before := cache.Stats()
	lctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Go(func() { _, _ = cache.Get(lctx, "k", load) })
	<-entered
	// A Get waiter whose own ctx ends first.
	wctx, wcancel := context.WithCancel(ctx)
	waiterDone := make(chan error, 1)
	wg.Go(func() { _, err := cache.Get(wctx, "k", load); waiterDone <- err })
	// A GetMany waiter on the same flight.
	manyDone := make(chan map[string]string, 1)
	wg.Go(func() { m, _ := cache.GetMany(ctx, []string{"k", "other"}, loadMany); manyDone <- m })
	redistest.WaitFor(t, 10*time.Second, func() bool { return cache.Stats().Requests()-before.Requests() >= 1 },
		"GetMany's other key answered")
	wcancel()
	if err := <-waiterDone; !errors.Is(err, context.Canceled) {
		t.Fatalf("waiter: %v", err)
	}
	cancel()
	m := <-manyDone
	wg.Wait()
	if m["k"] != "v" {
		t.Errorf("GetMany after the leader gave up: %v", m)
	}
	after := cache.Stats()
	if got := after.Requests() - before.Requests(); got != 4 {
		t.Errorf("leader Get, waiting Get, GetMany of 2 keys: %d requests (%+v), want 4", got, after)
	}
}
