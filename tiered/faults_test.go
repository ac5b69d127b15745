package tiered_test

import (
	"context"
	"fmt"
	"slices"
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

// shardFleet is n cache replicas over one Ring of shards, joined by gossip
// (pub/sub on a Ring rides on one shard, which these tests take away).
type shardFleet struct {
	shards  []*redistest.Server
	addrs   []string
	clients []*tiered.Client
	seed    string
}

func newShardFleet(t *testing.T, shards int) *shardFleet {
	t.Helper()
	f := &shardFleet{shards: redistest.StartShards(t, shards)}
	for _, s := range f.shards {
		f.addrs = append(f.addrs, s.Addr())
	}
	return f
}

// replica adds a replica; with l1 false its caches read L2 on every Get.
func (f *shardFleet) replica(t *testing.T) *tiered.Client {
	t.Helper()
	g := localGossip(f.seed)
	c := newClient(t, tiered.Config{
		NodeID: fmt.Sprintf("replica-%d", len(f.clients)),
		Redis:  l2.Config{Addrs: f.addrs, Timeout: l2.DefaultTimeout},
		Gossip: g,
	})
	if f.seed == "" {
		f.seed = c.GossipAddr()
	}
	f.clients = append(f.clients, c)
	return c
}

// l2Only adds a replica with a cache that reads L2 on every Get.
func (f *shardFleet) l2Only(t *testing.T) (*tiered.Client, *tiered.Cache[string]) {
	t.Helper()
	c := f.replica(t)
	return c, newCache(t, c, "users", tiered.Options[string]{TTL: time.Hour, L1: tiered.L1Options{Disabled: true}})
}

// owner returns the shard that serves key of namespace ns for client c now.
func (f *shardFleet) owner(t *testing.T, c *tiered.Client, ns, key string) *redistest.Server {
	t.Helper()
	sc, err := c.L2().Client().(*redis.Ring).GetShardClientForKey(c.L2().Key(ns, key))
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range f.shards {
		if s.Addr() == sc.Options().Addr {
			return s
		}
	}
	t.Fatalf("no shard at %s", sc.Options().Addr)
	return nil
}

// serving reports whether c routes to the shard at addr.
func serving(c *tiered.Client, addr string) bool {
	for _, h := range c.L2().Health() {
		if h.Addr == addr {
			return h.Serving
		}
	}
	return false
}

// latencies collects Get durations from several goroutines.
type latencies struct {
	mu sync.Mutex
	d  []time.Duration
}

func (l *latencies) add(d time.Duration) {
	l.mu.Lock()
	l.d = append(l.d, d)
	l.mu.Unlock()
}

func (l *latencies) count() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.d)
}

func (l *latencies) report(t *testing.T, what string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	slices.Sort(l.d)
	if len(l.d) == 0 {
		return
	}
	q := func(p float64) time.Duration { return l.d[int(p*float64(len(l.d)-1))] }
	t.Logf("%s: %d Gets, p50 %v, p99 %v, max %v", what, len(l.d), q(0.5), q(0.99), l.d[len(l.d)-1])
}

// readers runs n goroutines that Get random keys of cache until stop is
// closed, checking each value; it returns the number of failed Gets.
func readers(cache *tiered.Cache[string], keys []string, n int, lat *latencies, stop <-chan struct{}, loads *atomic.Int64) func() int64 {
	var wg sync.WaitGroup
	var failures atomic.Int64
	load := func(_ context.Context, k string) (string, error) {
		loads.Add(1)
		return "v:" + k, nil
	}
	for r := range n {
		wg.Go(func() {
			for i := r; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				k := keys[i%len(keys)]
				start := time.Now()
				v, err := cache.Get(context.Background(), k, load)
				lat.add(time.Since(start))
				if err != nil || v != "v:"+k {
					failures.Add(1)
				}
			}
		})
	}
	return func() int64 { wg.Wait(); return failures.Load() }
}

func shardKeys(n int) []string {
	keys := make([]string, n)
	for i := range keys {
		keys[i] = fmt.Sprintf("user:%d", i)
	}
	return keys
}

// A shard that dies under load costs no failed Get: its keys fall back to the
// loader and then to stand-in shards.
func TestShardKilledUnderReaders(t *testing.T) {
	f := newShardFleet(t, 3)
	c, cache := f.l2Only(t)
	keys := shardKeys(300)
	var loads atomic.Int64
	var before, during latencies
	stop := make(chan struct{})
	wait := readers(cache, keys, 8, &before, stop, &loads)
	redistest.WaitFor(t, 10*time.Second, func() bool { return loads.Load() >= int64(len(keys)) }, "every key loaded once")
	close(stop)
	if n := wait(); n != 0 {
		t.Fatalf("%d failed Gets before the kill", n)
	}
	victim := f.shards[1]
	victim.Kill()
	stop = make(chan struct{})
	wait = readers(cache, keys, 8, &during, stop, &loads)
	redistest.WaitFor(t, 10*time.Second, func() bool { return !serving(c, victim.Addr()) }, "the dead shard leaves the routing")
	reads := during.count()
	redistest.WaitFor(t, 10*time.Second, func() bool { return during.count() > reads+5000 }, "5000 more Gets")
	close(stop)
	if n := wait(); n != 0 {
		t.Errorf("%d Gets failed or returned a wrong value while a shard died", n)
	}
	before.report(t, "3 shards up")
	during.report(t, "one shard killed (8 readers)")
}

// A hung shard (SIGSTOP) trips its breaker: each reader pays about one
// timeout, not one per call, and no Get fails.
func TestShardHungTripsBreaker(t *testing.T) {
	f := newShardFleet(t, 3)
	c, cache := f.l2Only(t)
	keys := shardKeys(300)
	var loads atomic.Int64
	for _, k := range keys {
		if _, err := cache.Get(context.Background(), k, func(context.Context, string) (string, error) { return "v:" + k, nil }); err != nil {
			t.Fatal(err)
		}
	}
	victim := f.shards[2]
	victim.Pause()
	var during latencies
	stop := make(chan struct{})
	wait := readers(cache, keys, 8, &during, stop, &loads)
	var tripped atomic.Bool
	redistest.WaitFor(t, 10*time.Second, func() bool {
		for _, h := range c.L2().Health() {
			if h.Addr == victim.Addr() && h.Breaker == "open" {
				tripped.Store(true)
			}
		}
		return tripped.Load() && !serving(c, victim.Addr())
	}, "the breaker opens and the shard leaves the routing")
	reads := during.count()
	redistest.WaitFor(t, 10*time.Second, func() bool { return during.count() > reads+5000 }, "5000 more Gets")
	close(stop)
	if n := wait(); n != 0 {
		t.Errorf("%d Gets failed while a shard hung", n)
	}
	slow := 0
	for _, d := range during.d {
		if d >= l2.DefaultTimeout {
			slow++
		}
	}
	during.report(t, "one shard hung (8 readers)")
	t.Logf("%d of %d Gets waited a full timeout (%v)", slow, len(during.d), l2.DefaultTimeout)
	// Each of the 8 readers may wait once before the breaker opens, and once
	// more if it raced the health check's fencing; not once per call.
	if slow > 3*8 {
		t.Errorf("%d Gets waited for the hung shard; the breaker should stop that after a few", slow)
	}
	victim.Resume()
	redistest.WaitFor(t, 10*time.Second, func() bool { return serving(c, victim.Addr()) }, "the shard returns")
}

// Flap-back: a value overwritten while its shard was away is never served
// again, by a replica that saw the write, one that did not, or one started
// after the shard returned.
func TestShardFlapBackNeverServesOverwrittenValue(t *testing.T) {
	ctx := context.Background()
	f := newShardFleet(t, 3)
	a, b := f.replica(t), f.replica(t)
	opts := tiered.Options[string]{TTL: time.Hour}
	ca, cb := newCache(t, a, "users", opts), newCache(t, b, "users", opts)
	var db atomic.Value // the source of truth the loader reads
	db.Store("v1")
	load := func(context.Context, string) (string, error) { return db.Load().(string), nil }

	const key = "flap"
	if err := ca.Set(ctx, key, "v1"); err != nil {
		t.Fatal(err)
	}
	redistest.WaitFor(t, 5*time.Second, func() bool { return b.BusStats().Applied >= 1 }, "B applies the first Set")
	if v, err := cb.Get(ctx, key, load); err != nil || v != "v1" {
		t.Fatalf("B before the pause: %q, %v", v, err)
	}
	owner := f.owner(t, a, "users", key)
	owner.Pause()
	// The overwrite lands once both replicas route around the owner, so it
	// never reaches it (a write sent to the paused owner would run when it
	// resumes): the owner keeps v1, and only its cleaning stands between
	// its return and v1.
	redistest.WaitFor(t, 10*time.Second, func() bool { return !serving(a, owner.Addr()) && !serving(b, owner.Addr()) },
		"A and B take the owner out")
	db.Store("v2")
	if err := ca.Set(ctx, key, "v2"); err != nil {
		t.Fatalf("Set while the owner is paused: %v", err)
	}
	// Once B has the invalidation (within the propagation bound), nobody may
	// see v1 again.
	redistest.WaitFor(t, 5*time.Second, func() bool { return b.BusStats().Applied >= 2 }, "B applies the second Set")

	var seen sync.Map
	stop := make(chan struct{})
	var wg sync.WaitGroup
	watch := func(name string, cache *tiered.Cache[string]) {
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				v, err := cache.Get(ctx, key, load)
				if err == nil && v == "v1" {
					seen.Store(name, true)
				}
			}
		})
	}
	watch("A", ca)
	watch("B", cb)
	redistest.WaitFor(t, 10*time.Second, func() bool { return !serving(a, owner.Addr()) }, "A takes the owner out")
	owner.Resume()
	redistest.WaitFor(t, 10*time.Second, func() bool { return serving(a, owner.Addr()) && serving(b, owner.Addr()) },
		"the owner serves again on A and B")
	c := f.replica(t)
	cc := newCache(t, c, "users", opts)
	watch("C (new)", cc)
	if v, err := cc.Get(ctx, key, load); err != nil || v != "v2" {
		t.Errorf("C: %q, %v", v, err)
	}
	// And the value the owner now holds is v2, or nothing.
	redistest.WaitFor(t, 10*time.Second, func() bool {
		v, err := f.owner(t, c, "users", key).Client(t).Get(ctx, c.L2().Key("users", key)).Bytes()
		return err == redis.Nil || (err == nil && len(v) > 0)
	}, "the owner answers")
	close(stop)
	wg.Wait()
	seen.Range(func(name, _ any) bool {
		t.Errorf("replica %s served the overwritten value v1", name)
		return true
	})
	for _, r := range []*tiered.Cache[string]{ca, cb, cc} {
		if v, err := r.Get(ctx, key, load); err != nil || v != "v2" {
			t.Errorf("after the flap: %q, %v; want v2", v, err)
		}
	}
}

// Redis entirely down, then back: Gets never fail, writes made meanwhile
// reach every replica, L2 serves again within moments of the servers' return,
// and a value overwritten while they were away (paused, so they kept it) is
// never read back.
func TestAllShardsDownThenBack(t *testing.T) {
	waitsMostly(t)
	for _, how := range []string{"killed", "paused"} {
		t.Run(how, func(t *testing.T) {
			ctx := context.Background()
			f := newShardFleet(t, 3)
			a, b := f.replica(t), f.replica(t)
			ca := newCache(t, a, "users", tiered.Options[string]{TTL: time.Hour})
			cb := newCache(t, b, "users", tiered.Options[string]{TTL: time.Hour})
			var db atomic.Value
			db.Store("v1")
			load := func(_ context.Context, k string) (string, error) { return db.Load().(string) + ":" + k, nil }
			for _, k := range shardKeys(50) {
				if _, err := cb.Get(ctx, k, load); err != nil {
					t.Fatal(err)
				}
			}
			for _, s := range f.shards {
				if how == "killed" {
					s.Kill()
				} else {
					s.Pause()
				}
			}
			db.Store("v2")
			for _, k := range shardKeys(50)[:10] {
				if err := ca.Set(ctx, k, "v2:"+k); err != nil {
					t.Errorf("Set with every shard down: %v", err)
				}
			}
			// B hears of the writes by gossip and drops its copies.
			redistest.WaitFor(t, 5*time.Second, func() bool {
				v, err := cb.Get(ctx, "user:9", load)
				return err == nil && v == "v2:user:9"
			}, "B drops its L1 copy of a key written while Redis was down")
			back := time.Now()
			for _, s := range f.shards {
				if how == "killed" {
					s.Restart()
				} else {
					s.Resume()
				}
			}
			redistest.WaitFor(t, 10*time.Second, func() bool {
				for _, c := range []*tiered.Client{a, b} {
					for _, h := range c.L2().Health() {
						if !h.Serving {
							return false
						}
					}
				}
				return true
			}, "every shard serves again on both replicas")
			t.Logf("L2 serving again %v after the servers returned", time.Since(back).Round(time.Millisecond))
			for _, k := range shardKeys(50)[:10] {
				for name, c := range map[string]*tiered.Cache[string]{"A": ca, "B": cb} {
					if v, err := c.Get(ctx, k, load); err != nil || v != "v2:"+k {
						t.Errorf("%s after the return: Get(%s) = %q, %v; want v2", name, k, v, err)
					}
				}
			}
			// A replica started now reads what B loaded back into L2.
			fresh := newCache(t, f.replica(t), "users", tiered.Options[string]{TTL: time.Hour})
			v, info, err := fresh.GetWithInfo(ctx, "user:3", load)
			if err != nil || v != "v2:user:3" || info.Tier != tiered.TierL2 {
				t.Errorf("a new replica: Get = %q, %+v, %v; want v2 from L2", v, info, err)
			}
		})
	}
}

// A server that restarts from a snapshot older than the writes it
// acknowledged is noticed (its run ID changes) and flushed before it serves:
// the old values it reloaded are not read.
func TestRestartFromOldSnapshotIsFlushed(t *testing.T) {
	ctx := context.Background()
	srv := redistest.Start(t)
	c := newClient(t, tiered.Config{Redis: l2.Config{Addrs: []string{srv.Addr()}, Timeout: l2.DefaultTimeout}})
	cache := newCache(t, c, "users", tiered.Options[string]{TTL: time.Hour, L1: tiered.L1Options{Disabled: true}})
	if err := cache.Set(ctx, "k", "v1"); err != nil {
		t.Fatal(err)
	}
	// A key outside the prefix (cleaning leaves it) tells whether the
	// snapshot came back: v1 itself may already be flushed by then.
	srv.Do(t, "SET", "snapshot-marker", "1")
	srv.Do(t, "SAVE") // dump.rdb holds v1
	srv.Do(t, "DEL", "snapshot-marker")
	if err := cache.Set(ctx, "k", "v2"); err != nil {
		t.Fatal(err)
	}
	srv.Restart() // reloads dump.rdb: v1 is back in Redis
	if n := srv.Do(t, "EXISTS", "snapshot-marker").(int64); n != 1 {
		t.Fatal("the snapshot was not reloaded; the test needs it")
	}
	// Past one health round (the window the check leaves), the server is
	// out until flushed, then serves again without v1.
	redistest.WaitFor(t, 10*time.Second, func() bool {
		return srv.Do(t, "EXISTS", c.L2().Key("users", "k")).(int64) == 0 && c.L2().Health()[0].Serving
	}, "the restarted server is flushed and serves again")
	load := func(context.Context, string) (string, error) { return "v2", nil }
	if v, err := cache.Get(ctx, "k", load); err != nil || v != "v2" {
		t.Errorf("after the restart: %q, %v; want v2", v, err)
	}
}

// Keys whose writes failed while Redis was away are deleted from it on its
// return and then invalidated once more on every replica: one may have read
// the old value in the moments before the repair.
func TestRepairedKeysAreInvalidatedAgain(t *testing.T) {
	ctx := context.Background()
	srv := redistest.Start(t)
	a := newClient(t, tiered.Config{NodeID: "a", Redis: l2.Config{
		Addrs:   []string{srv.Addr()},
		Timeout: l2.DefaultTimeout,
	}, Gossip: &cluster.Config{BindAddr: "127.0.0.1:0", Profile: cluster.ProfileLocal}})
	b := newClient(t, tiered.Config{NodeID: "b", Redis: l2.Config{Addrs: []string{srv.Addr()}, Timeout: l2.DefaultTimeout},
		Gossip: &cluster.Config{BindAddr: "127.0.0.1:0", Profile: cluster.ProfileLocal, Join: []string{a.GossipAddr()}}})
	ca := newCache(t, a, "users", tiered.Options[string]{TTL: time.Hour})
	newCache(t, b, "users", tiered.Options[string]{TTL: time.Hour})
	srv.Pause()
	if err := ca.Set(ctx, "k", "v2"); err != nil {
		t.Fatal(err)
	}
	redistest.WaitFor(t, 5*time.Second, func() bool { return b.BusStats().Applied >= 1 }, "B applies the Set")
	srv.Resume()
	// The keys a repair reports are l2's to test (TestWatcherHearsRepairs);
	// here, that every replica hears of them.
	redistest.WaitFor(t, 15*time.Second, func() bool { return b.BusStats().Applied >= 2 }, "B applies the repair's invalidation")
}
