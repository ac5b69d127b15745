package tiered_test

import (
	"context"
	"strconv"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/strata-cache/strata/cluster"
	"github.com/strata-cache/strata/internal/redistest"
	"github.com/strata-cache/strata/l2"
	"github.com/strata-cache/strata/tiered"
)

// TestCloseAfterFaultsLeavesNothingRunning is issue 15's leak check under
// faults: two replicas joined by gossip, on a 3-shard Ring with one shard
// stopped (SIGSTOP) and one killed, the auditor on and a write-behind
// cache, are closed while reads and writes are in flight and failing.
// Close returns, a second Close is a no-op, and no goroutine of theirs is
// left running.
func TestCloseAfterFaultsLeavesNothingRunning(t *testing.T) {
	if testing.Short() {
		t.Skip("faults")
	}
	shards := redistest.StartShards(t, 3)
	var addrs []string
	for _, s := range shards {
		addrs = append(addrs, s.Addr())
	}
	before := goleak.IgnoreCurrent() // the servers' own goroutines
	redisCfg := l2.Config{Addrs: addrs, Timeout: 200 * time.Millisecond}
	a := newClient(t, tiered.Config{NodeID: "a", Redis: redisCfg, Gossip: &cluster.Config{BindAddr: "127.0.0.1:0", Profile: cluster.ProfileLocal},
		Audit: tiered.AuditConfig{SampleRate: 1}})
	b := newClient(t, tiered.Config{NodeID: "b", Redis: redisCfg, Gossip: &cluster.Config{BindAddr: "127.0.0.1:0", Profile: cluster.ProfileLocal,
		Join: []string{a.GossipAddr()}}, Audit: tiered.AuditConfig{SampleRate: 1}})
	ctx := context.Background()
	var caches []*tiered.Cache[string]
	for _, c := range []*tiered.Client{a, b} {
		caches = append(caches, newCache(t, c, "plain", tiered.Options[string]{}),
			newCache(t, c, "behind", tiered.Options[string]{WriteBehind: &tiered.WriteBehind[string]{
				Flush: func(context.Context, []tiered.Write[string]) error { return nil }}}))
	}
	load := func(_ context.Context, k string) (string, error) { return "v:" + k, nil }
	for i := range 50 {
		if _, err := caches[0].Get(ctx, "k"+strconv.Itoa(i), load); err != nil {
			t.Fatal(err)
		}
	}
	shards[0].Pause()
	shards[1].Kill()

	stop := make(chan struct{})
	var wg sync.WaitGroup
	for w, cache := range caches {
		wg.Go(func() {
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				k := "k" + strconv.Itoa((i*7+w)%50)
				_, _ = cache.Get(ctx, k, load)
				if i%5 == 0 {
					_ = cache.Set(ctx, k, "w"+strconv.Itoa(i))
				}
				if i%11 == 0 {
					_ = cache.Delete(ctx, k)
				}
			}
		})
	}
	// Let the faults bite: both replicas see the paused shard out of service.
	redistest.WaitFor(t, 10*time.Second, func() bool {
		for _, c := range []*tiered.Client{a, b} {
			if h := c.L2Health(); h[0].Serving || h[1].Serving {
				return false
			}
		}
		return true
	}, "the stopped and the killed shard out of service on both replicas")

	closed := make(chan error, 2)
	for _, c := range []*tiered.Client{b, a} {
		go func() { closed <- c.Close() }()
	}
	for range 2 {
		select {
		case <-closed: // an error is allowed: a write-behind drain may fail on the stopped shard
		case <-time.After(30 * time.Second):
			t.Fatal("Close did not return with a shard stopped")
		}
	}
	close(stop)
	wg.Wait()
	for _, c := range []*tiered.Client{a, b} {
		if err := c.Close(); err != nil {
			t.Errorf("second Close = %v", err)
		}
	}
	shards[0].Resume()
	if err := goleak.Find(before,
		goleak.IgnoreTopFunction("github.com/hashicorp/memberlist.(*Memberlist).probeNode"),
		goleak.IgnoreAnyFunction("github.com/redis/go-redis/v9/internal/pool.(*ConnPool).tryDial")); err != nil {
		t.Fatalf("left running after Close: %v", err)
	}
}
