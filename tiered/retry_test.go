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

// openBreaker makes c's breaker for the (paused) cluster node serving
// redisKey open, so that the next commands to it are refused unsent.
func openBreaker(t *testing.T, c *tiered.Client, redisKey string) {
	t.Helper()
	redistest.WaitFor(t, 10*time.Second, func() bool {
		err := c.L2().Client().Get(context.Background(), redisKey).Err()
		return errors.Is(err, l2.ErrUnavailable)
	}, "the breaker for the node of %s opens", redisKey)
}

// Issue 10 item 6: a Delete that fails on a Redis Cluster is not left to the
// TTL. Replica A's Delete is refused unsent (its breaker for the paused
// master is open), so the old value stays in L2; once the master answers,
// A's retry deletes it and publishes, and replica B stops serving it.
func TestClusterFailedDeleteIsRetried(t *testing.T) {
	waitGoroutinesGone(t)
	ctx := context.Background()
	c := redistest.StartCluster(t, 3)
	p := newClusterPair(t, c)
	a, b := p.caches(t, "retry", tiered.Options[string]{TTL: time.Hour})
	if err := a.Set(ctx, "k", "v1"); err != nil {
		t.Fatal(err)
	}
	if v, err := b.Get(ctx, "k", nil); err != nil || v != "v1" {
		t.Fatalf("B's Get = %q, %v; want v1", v, err)
	}
	redisKey := p.a.L2().Key("retry", "k")
	master := serverAt(t, c, slotMaster(t, p.raw, redisKey))
	master.Pause()
	openBreaker(t, p.a, redisKey)
	err := a.Delete(ctx, "k")
	if !errors.Is(err, l2.ErrUnavailable) {
		t.Fatalf("Delete with the breaker open = %v, want ErrUnavailable", err)
	}
	if st := p.a.RetryStats(); st.Pending != 1 {
		t.Fatalf("after the failed Delete: %+v, want 1 pending", st)
	}
	master.Resume()
	redistest.WaitFor(t, 10*time.Second, func() bool {
		n, err := p.raw.Exists(ctx, redisKey).Result()
		return err == nil && n == 0
	}, "the retry deletes the old value from L2")
	redistest.WaitFor(t, 5*time.Second, func() bool { return p.a.RetryStats().Pending == 0 }, "nothing left to retry")
	waitGone(t, b, "k", "replica B")
	if st := p.a.RetryStats(); st.Applied != 1 || st.Expired != 0 {
		t.Errorf("retries: %+v, want 1 applied", st)
	}
}

// Issue 10 item 7: no Get waits for a fill that cannot land. Replica A holds
// a key's load lease when its breaker for the key's master opens, so its
// fill and release are refused and the lease stays in L2. Replica B, with
// LeaseWait a minute, still gets the value as soon as A's retried release
// lands, not after LeaseWait.
func TestAbandonedLeaseIsReleased(t *testing.T) {
	waitGoroutinesGone(t)
	ctx := context.Background()
	c := redistest.StartCluster(t, 3)
	p := newClusterPair(t, c)
	opts := tiered.Options[string]{TTL: time.Hour, LeaseTTL: time.Minute, LeaseWait: time.Minute, L1: tiered.L1Options{Disabled: true}}
	a, b := p.caches(t, "lease", opts)
	redisKey := p.a.L2().Key("lease", "k")
	master := serverAt(t, c, slotMaster(t, p.raw, redisKey))

	g := newGate("v1")
	aDone := make(chan error, 1)
	go func() {
		_, err := a.Get(ctx, "k", g.load)
		aDone <- err
	}()
	redistest.WaitFor(t, 5*time.Second, func() bool { return g.calls.Load() == 1 }, "A loads as the lease holder")
	master.Pause()
	openBreaker(t, p.a, redisKey)
	close(g.open)
	if err := <-aDone; err != nil {
		t.Fatalf("A's Get: %v", err)
	}
	if st := p.a.RetryStats(); st.Pending == 0 {
		t.Fatalf("A's refused fill left nothing to retry: %+v", st)
	}
	master.Resume()
	if n, err := p.raw.Exists(ctx, p.a.L2().LeaseKey("lease", "k")).Result(); err != nil {
		t.Fatal(err)
	} else if n == 0 && p.a.RetryStats().Applied == 0 {
		t.Fatal("the lease is gone before any retry: the test did not leave one behind")
	}

	bctx, cancel := context.WithCancel(ctx)
	defer cancel()
	type answer struct {
		v   string
		err error
	}
	bDone := make(chan answer, 1)
	go func() {
		v, err := b.Get(bctx, "k", func(context.Context, string) (string, error) { return "v1", nil })
		bDone <- answer{v, err}
	}()
	var got answer
	redistest.WaitFor(t, 10*time.Second, func() bool {
		select {
		case got = <-bDone:
			return true
		default:
			return false
		}
	}, "B's Get answers before LeaseWait (a minute)")
	if got.err != nil || got.v != "v1" {
		t.Errorf("B's Get = %q, %v; want v1", got.v, got.err)
	}
	if st := b.Stats(); st.LeaseTimeouts != 0 {
		t.Errorf("B waited out LeaseWait: %+v", st)
	}
}

// Issue 10 item 5, a caller's own ClusterClient: Strata adds no breaker to a
// client it did not make, so nothing of Strata's can stay open; a master
// that answers again after a stall is served again through it.
func TestOwnClusterClientServesAfterStall(t *testing.T) {
	waitGoroutinesGone(t)
	ctx := context.Background()
	c := redistest.StartCluster(t, 3)
	own := redis.NewClusterClient(&redis.ClusterOptions{Addrs: c.Addrs(), ReadTimeout: 100 * time.Millisecond, WriteTimeout: 100 * time.Millisecond, MaxRetries: -1})
	t.Cleanup(func() { _ = own.Close() })
	client := newClient(t, tiered.Config{Redis: l2.Config{Client: own}})
	cache := newCache(t, client, "own", tiered.Options[string]{TTL: time.Hour, L1: tiered.L1Options{Disabled: true}})
	if err := cache.Set(ctx, "k", "v1"); err != nil {
		t.Fatal(err)
	}
	master := serverAt(t, c, slotMaster(t, own, client.L2().Key("own", "k")))
	master.Pause()
	var l countingLoader
	for range 5 { // failures a breaker would count
		if _, err := cache.Get(ctx, "k", l.load); err != nil {
			t.Fatalf("Get during the stall: %v", err)
		}
	}
	master.Resume()
	redistest.WaitFor(t, 5*time.Second, func() bool {
		v, info, err := cache.GetWithInfo(ctx, "k", l.load)
		return err == nil && v == "v1" && info.Tier == tiered.TierL2
	}, "L2 serves k again through the caller's client")
	if n := l.calls.Load(); n < 5 {
		t.Errorf("%d loads for 5 Gets during the stall", n)
	}
}
