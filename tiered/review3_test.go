package tiered_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/strata-cache/strata/internal/redistest"
	"github.com/strata-cache/strata/l2"
	"github.com/strata-cache/strata/tiered"
)

// Close while failed writes wait to be retried (a delete with no expiry, of
// a sliding cache, and lease releases) and their master is still paused:
// Close returns promptly and leaves no goroutine behind.
func TestReview3CloseWithPendingRetries(t *testing.T) {
	waitGoroutinesGone(t)
	ctx := context.Background()
	c := redistest.StartCluster(t, 3)
	cfg := l2.Config{ClusterAddrs: c.Addrs()}
	a, err := tiered.NewClient(ctx, tiered.Config{NodeID: "a", Redis: cfg, Logger: quietLogger})
	if err != nil {
		t.Fatal(err)
	}
	closed := false
	t.Cleanup(func() {
		if !closed {
			_ = a.Close()
		}
	})
	sliding := newCache(t, a, "slide", tiered.Options[string]{TTL: time.Hour, Sliding: true})
	plain := newCache(t, a, "plain", tiered.Options[string]{TTL: time.Hour, LeaseTTL: time.Minute})
	if err := sliding.Set(ctx, "k", "v1"); err != nil {
		t.Fatal(err)
	}
	redisKey := a.L2().Key("slide", "k")
	masterAddr := slotMaster(t, c.Client(t), redisKey)
	master := serverAt(t, c, masterAddr)
	// Keys on the paused master: their lease requests fail.
	var onMaster []string
	raw := c.Client(t)
	for i := 0; len(onMaster) < 5 && i < 1000; i++ {
		k := "x" + string(rune('a'+i%26)) + string(rune('a'+i/26))
		if slotMaster(t, raw, a.L2().Key("plain", k)) == masterAddr {
			onMaster = append(onMaster, k)
		}
	}
	master.Pause()
	openBreaker(t, a, redisKey)
	if err := sliding.Delete(ctx, "k"); err == nil {
		t.Fatal("Delete with the master paused succeeded")
	}
	if _, err := plain.GetMany(ctx, onMaster, func(_ context.Context, keys []string) (map[string]string, error) {
		m := map[string]string{}
		for _, k := range keys {
			m[k] = "v"
		}
		return m, nil
	}); err != nil {
		t.Logf("GetMany: %v", err)
	}
	st := a.RetryStats()
	t.Logf("before Close: %+v", st)
	if st.Pending == 0 {
		t.Fatal("nothing pending")
	}
	start := time.Now()
	done := make(chan error, 1)
	go func() { done <- a.Close() }()
	redistest.WaitFor(t, 5*time.Second, func() bool {
		select {
		case err := <-done:
			closed = true
			if err != nil && !errors.Is(err, context.Canceled) {
				t.Logf("Close: %v", err)
			}
			return true
		default:
			return false
		}
	}, "Close returns with retries pending")
	t.Logf("Close took %v; after: %+v", time.Since(start), a.RetryStats())
	master.Resume()
}

// A caller's Ring (Heals false, so failed deletes are retried): the Delete
// fails on its shard, and go-redis's Ring then takes that shard out and
// sends the key elsewhere. A retry that lands there deletes nothing the
// shard holds: when it is back, the Ring routes the key to it again. The
// retry counted as applied and the deleted value was served; now retries
// wait while the Ring routes around a shard (l2.Store.Settled), and land on
// the shard once it is back.
func TestReview3CallerRingRetryLandsOnWrongShard(t *testing.T) {
	waitGoroutinesGone(t)
	ctx := context.Background()
	shards := redistest.StartShards(t, 2, redistest.WithArgs("--appendonly", "yes", "--appendfsync", "always"))
	ringOf := func() *redis.Ring {
		r := redis.NewRing(&redis.RingOptions{
			Addrs:              map[string]string{"a": shards[0].Addr(), "b": shards[1].Addr()},
			HeartbeatFrequency: 50 * time.Millisecond,
			ReadTimeout:        100 * time.Millisecond, WriteTimeout: 100 * time.Millisecond, MaxRetries: -1,
		})
		t.Cleanup(func() { _ = r.Close() })
		return r
	}
	ringA, ringB := ringOf(), ringOf()
	a := newClient(t, tiered.Config{NodeID: "a", Redis: l2.Config{Client: ringA}})
	b := newClient(t, tiered.Config{NodeID: "b", Redis: l2.Config{Client: ringB}})
	opts := tiered.Options[string]{TTL: time.Hour, L1: tiered.L1Options{Disabled: true}}
	ca, cb := newCache(t, a, "ring", opts), newCache(t, b, "ring", opts)

	raw0 := shards[0].Client(t)
	var k string
	for i := 0; ; i++ {
		k = "k" + string(rune('a'+i))
		if err := ca.Set(ctx, k, "v1"); err != nil {
			t.Fatal(err)
		}
		if raw0.Exists(ctx, a.L2().Key("ring", k)).Val() == 1 {
			break
		}
	}
	shards[0].Kill() // the Delete cannot reach it; its AOF keeps v1
	if err := ca.Delete(ctx, k); err == nil {
		t.Fatal("Delete with the shard paused succeeded")
	}
	redistest.WaitFor(t, 10*time.Second, func() bool { return ringA.Len() == 1 }, "ring A routes around shard a")
	if st := a.RetryStats(); st.Pending != 1 || st.Applied != 0 {
		t.Fatalf("with shard a away: %+v, want the delete still pending", st)
	}
	shards[0].Restart()
	redistest.WaitFor(t, 10*time.Second, func() bool { return ringA.Len() == 2 && ringB.Len() == 2 }, "both rings route to shard a again")
	redistest.WaitFor(t, 10*time.Second, func() bool { st := a.RetryStats(); return st.Pending == 0 && st.Applied == 1 }, "the retry lands on shard a")
	if v, err := cb.Get(ctx, k, nil); err == nil {
		t.Errorf("B's Get(%s) = %q after A's Delete and its applied retry; want ErrNotFound", k, v)
	}
}

// The l2 review3 marker test through the public API, L1 disabled so every
// Get reads L2: R1 and R3 reach "shard0" through their own server (paused),
// R2 reaches the real one. When R1 reaches it again, R3's marker still holds
// it out, so R2's Set of v2 lands where every replica reads it (guarantees 1
// and 13): before, R2 returned shard0 and later answered v1.
func TestReview3MarkerRemovalStaleGet(t *testing.T) {
	waitGoroutinesGone(t)
	ctx := context.Background()
	shards := redistest.StartShards(t, 3)
	a0, c0 := redistest.Start(t), redistest.Start(t)
	open := func(id string, interval time.Duration, first *redistest.Server) (*tiered.Client, *tiered.Cache[string]) {
		cl := newClient(t, tiered.Config{NodeID: id, Redis: l2.Config{
			Addrs: []string{first.Addr(), shards[1].Addr(), shards[2].Addr()}, HealthInterval: interval}})
		return cl, newCache(t, cl, "ns", tiered.Options[string]{TTL: time.Hour, L1: tiered.L1Options{Disabled: true}})
	}
	r1, _ := open("r1", 50*time.Millisecond, a0)
	r2, c2 := open("r2", 50*time.Millisecond, shards[0])
	r3, c3 := open("r3", time.Second, c0)
	serving := func(c *tiered.Client) bool { return c.L2().Health()[0].Serving }
	redistest.WaitFor(t, 5*time.Second, func() bool { return serving(r1) && serving(r2) && serving(r3) }, "all serve")
	var k string
	for i := 0; ; i++ {
		if k = "k" + string(rune('a'+i%26)) + string(rune('a'+i/26)); r2.L2().Server(k) == shards[0].Addr() {
			break
		}
	}
	agree := func() bool {
		k1, k2, k3 := r1.L2().Key("ns", k), r2.L2().Key("ns", k), r3.L2().Key("ns", k)
		return k1 == k2 && k2 == k3
	}
	a0.Pause()
	c0.Pause()
	redistest.WaitFor(t, 10*time.Second, func() bool { return !serving(r1) && !serving(r2) && !serving(r3) && agree() }, "shard0 out everywhere")
	if err := c2.Set(ctx, k, "v1"); err != nil {
		t.Fatal(err)
	}
	a0.Resume()
	if eventually(1500*time.Millisecond, func() bool { return serving(r2) }) {
		t.Errorf("R2 serves shard0 while R3 cannot reach it")
	}
	if err := c2.Set(ctx, k, "v2"); err != nil {
		t.Fatal(err)
	}
	redistest.WaitFor(t, 10*time.Second, func() bool { return !serving(r2) && agree() }, "shard0 out everywhere again")
	if v, err := c2.Get(ctx, k, nil); v != "v2" {
		t.Errorf("R2's Get after its own Set(v2) returned nil = %q, %v", v, err)
	}
	if v, err := c3.Get(ctx, k, nil); v != "v2" {
		t.Errorf("R3's Get after R2's Set(v2) = %q, %v", v, err)
	}
}

// eventually polls cond until it holds or timeout passes, without failing.
func eventually(timeout time.Duration, cond func() bool) bool {
	for deadline := time.Now().Add(timeout); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
		if cond() {
			return true
		}
	}
	return cond()
}
