package tiered_test

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/strata-cache/strata/cluster"
	"github.com/strata-cache/strata/internal/redistest"
	"github.com/strata-cache/strata/l2"
	"github.com/strata-cache/strata/tiered"
)

// TestReview8NegativeHitsWithinHits shows that a Stats snapshot taken while
// negative L1 hits are counted can report more L1NegativeHits than L1Hits
// (documented as "of L1Hits"), and that L1Hits-L1NegativeHits (what
// otelcache exports as strata.cache.requests{tier=l1,result=hit}, a
// monotonic counter) can go backwards: countL1Hit adds to l1Hits and then to
// l1NegativeHits, while snapshot reads l1Hits first and l1NegativeHits after,
// so a hit counted in between is seen as a negative but not as a hit.
func TestReview8NegativeHitsWithinHits(t *testing.T) {
	ctx := context.Background()
	c := newClient(t, tiered.Config{NodeID: "a"})
	cache := newCache(t, c, "r8neg", tiered.Options[string]{TTL: time.Hour, NegativeTTL: time.Hour, Jitter: -1, EarlyRefreshBeta: -1})
	absent := func(context.Context, string) (string, error) { return "", tiered.ErrNotFound }
	present := func(context.Context, string) (string, error) { return "v", nil }
	if _, err := cache.Get(ctx, "absent", absent); err != tiered.ErrNotFound {
		t.Fatalf("first Get: %v", err)
	}
	if _, err := cache.Get(ctx, "present", present); err != nil {
		t.Fatal(err)
	}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for i := range 3 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				if i < 2 {
					_, _ = cache.Get(ctx, "absent", absent)
				} else {
					_, _ = cache.Get(ctx, "present", present)
				}
			}
		}()
	}
	var over, backwards atomic.Int64
	var example tiered.Stats
	var prevPositive uint64
	deadline := time.Now().Add(3 * time.Second)
	for time.Now().Before(deadline) && (over.Load() == 0 || backwards.Load() == 0) {
		s := cache.Stats()
		if s.L1NegativeHits > s.L1Hits {
			if over.Add(1) == 1 {
				example = s
			}
		}
		positive := s.L1Hits - s.L1NegativeHits
		if s.L1NegativeHits <= s.L1Hits && positive < prevPositive {
			backwards.Add(1)
		}
		if s.L1NegativeHits <= s.L1Hits {
			prevPositive = positive
		}
	}
	close(stop)
	wg.Wait()
	if n := over.Load(); n > 0 {
		t.Errorf("a snapshot had L1NegativeHits %d > L1Hits %d (otelcache's l1 hit series = %d as int64)",
			example.L1NegativeHits, example.L1Hits, int64(example.L1Hits-example.L1NegativeHits))
	}
	if n := backwards.Load(); n > 0 {
		t.Errorf("L1Hits-L1NegativeHits (a monotonic counter in otelcache) went backwards %d times", n)
	}
}

// TestReview8NegativeL2HitsWithinHits is the same for L2 hits: l2Hits is
// added before l2NegativeHits and read before it.
func TestReview8NegativeL2HitsWithinHits(t *testing.T) {
	ctx := context.Background()
	srv := redistest.Start(t)
	redisCfg := l2.Config{Addrs: []string{srv.Addr()}}
	a := newClient(t, tiered.Config{NodeID: "a", Redis: redisCfg})
	b := newClient(t, tiered.Config{NodeID: "b", Redis: redisCfg})
	opts := tiered.Options[string]{TTL: time.Hour, NegativeTTL: time.Hour, Jitter: -1, EarlyRefreshBeta: -1,
		L1: tiered.L1Options{Disabled: true}}
	ca := newCache(t, a, "r8neg2", opts)
	cb := newCache(t, b, "r8neg2", opts)
	absent := func(context.Context, string) (string, error) { return "", tiered.ErrNotFound }
	if _, err := ca.Get(ctx, "absent", absent); err != tiered.ErrNotFound {
		t.Fatalf("first Get: %v", err)
	}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				_, _ = cb.Get(ctx, "absent", absent)
			}
		}()
	}
	var example tiered.Stats
	found := false
	deadline := time.Now().Add(3 * time.Second)
	for time.Now().Before(deadline) && !found {
		if s := cb.Stats(); s.L2NegativeHits > s.L2Hits {
			example, found = s, true
		}
	}
	close(stop)
	wg.Wait()
	if found {
		t.Errorf("a snapshot had L2NegativeHits %d > L2Hits %d", example.L2NegativeHits, example.L2Hits)
	}
}

// TestReview8CallerHealthPausedBounded shows whether Health with a caller's
// own client (a *redis.Client, and a *redis.Ring with one shard paused)
// returns within HealthTimeout (plus scheduling slack) while a server is
// paused, and reports the paused server as not serving.
func TestReview8CallerHealthPausedBounded(t *testing.T) {
	const timeout = 200 * time.Millisecond
	const slack = 700 * time.Millisecond
	srv := redistest.Start(t)
	own := srv.Client(t)
	c := newClient(t, tiered.Config{NodeID: "a", Redis: l2.Config{Client: own, HealthTimeout: timeout}})
	shards := redistest.StartShards(t, 2)
	ring := redis.NewRing(&redis.RingOptions{Addrs: map[string]string{"s0": shards[0].Addr(), "s1": shards[1].Addr()}})
	t.Cleanup(func() { _ = ring.Close() })
	rc := newClient(t, tiered.Config{NodeID: "b", Redis: l2.Config{Client: ring, HealthTimeout: timeout}})

	srv.Pause()
	shards[1].Pause()
	t.Cleanup(srv.Resume)
	t.Cleanup(shards[1].Resume)
	for i := range 3 {
		start := time.Now()
		h := c.Health()
		if d := time.Since(start); d > timeout+slack {
			t.Errorf("round %d: Health took %v with the caller's server paused, want at most ~%v", i, d, timeout)
		}
		if len(h.Servers) != 1 || h.Servers[0].Serving {
			t.Errorf("round %d: servers %+v, want the paused one not serving", i, h.Servers)
		}
		start = time.Now()
		h = rc.Health()
		if d := time.Since(start); d > timeout+slack {
			t.Errorf("round %d: Ring Health took %v with a shard paused, want at most ~%v", i, d, timeout)
		}
		serving := 0
		for _, s := range h.Servers {
			if s.Serving {
				serving++
			}
		}
		if len(h.Servers) != 2 || serving != 1 {
			t.Errorf("round %d: ring servers %+v, want 2, the paused one alone not serving", i, h.Servers)
		}
	}
}

// TestReview8GossipCloseIsQuick shows how long Close takes with gossip,
// in the LAN profile (the default), for a member of three, and for the
// last member, whose peers are gone: the announcement and leave waits are
// bounded by five gossip intervals each (1s each in LAN).
func TestReview8GossipCloseIsQuick(t *testing.T) {
	waitsMostly(t)
	lan := func(seeds ...string) *cluster.Config {
		return &cluster.Config{BindAddr: "127.0.0.1:0", Join: seeds}
	}
	a, err := tiered.NewClient(context.Background(), tiered.Config{NodeID: "a", Gossip: lan(), Logger: quietLogger})
	if err != nil {
		t.Fatal(err)
	}
	b := newClient(t, tiered.Config{NodeID: "b", Gossip: lan(a.GossipAddr())})
	c, err := tiered.NewClient(context.Background(), tiered.Config{NodeID: "c", Gossip: lan(a.GossipAddr()), Logger: quietLogger})
	if err != nil {
		t.Fatal(err)
	}
	redistest.WaitFor(t, 20*time.Second, func() bool {
		return len(a.Health().Members) == 3 && len(b.Health().Members) == 3 && len(c.Health().Members) == 3
	}, "three members")
	start := time.Now()
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	dc := time.Since(start)
	redistest.WaitFor(t, 20*time.Second, func() bool {
		m, _ := member(a.Health(), "c")
		return m.State == cluster.MemberLeft
	}, "a shows c left: %+v", a.Health().Members)
	start = time.Now()
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	da := time.Since(start)
	t.Logf("Close: member of three %v, then a with one peer left %v", dc, da)
	if dc > 2500*time.Millisecond || da > 2500*time.Millisecond {
		t.Errorf("Close took %v / %v, want within the two five-interval bounds (2s in LAN)", dc, da)
	}
	if m, _ := member(b.Health(), "c"); m.State != cluster.MemberLeft {
		t.Errorf("b shows c as %+v, want left", m)
	}
}
