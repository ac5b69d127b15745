package tiered_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/strata-cache/strata/internal/redistest"
	"github.com/strata-cache/strata/l2"
	"github.com/strata-cache/strata/tiered"
	"go.uber.org/goleak"
)

// clusterPair is two replicas (clients without gossip, so invalidations
// cross only over Redis pub/sub on the cluster) over one Redis Cluster, and a
// plain cluster client to look at what L2 holds.
type clusterPair struct {
	redis l2.Config
	a, b  *tiered.Client
	raw   *redis.ClusterClient
}

func newClusterPair(t *testing.T, c *redistest.Cluster) *clusterPair {
	t.Helper()
	cfg := l2.Config{ClusterAddrs: c.Addrs()}
	return &clusterPair{
		redis: cfg,
		a:     newClient(t, tiered.Config{NodeID: "replica-a", Redis: cfg}),
		b:     newClient(t, tiered.Config{NodeID: "replica-b", Redis: cfg}),
		raw:   c.Client(t),
	}
}

// caches returns a cache of namespace ns on each replica.
func (p *clusterPair) caches(t *testing.T, ns string, opts tiered.Options[string]) (a, b *tiered.Cache[string]) {
	t.Helper()
	return newCache(t, p.a, ns, opts), newCache(t, p.b, ns, opts)
}

// exists reports whether L2 holds key of namespace ns (at version 0).
func (p *clusterPair) exists(t *testing.T, ns, key string) bool {
	t.Helper()
	n, err := p.raw.Exists(context.Background(), p.a.L2().Key(ns, key)).Result()
	if err != nil {
		t.Fatal(err)
	}
	return n == 1
}

// keysPerMaster returns, per master address, the Redis keys matching match.
func keysPerMaster(t *testing.T, raw *redis.ClusterClient, match string) map[string][]string {
	t.Helper()
	var mu sync.Mutex
	out := map[string][]string{}
	err := raw.ForEachMaster(context.Background(), func(ctx context.Context, m *redis.Client) error {
		keys, err := m.Keys(ctx, match).Result()
		mu.Lock()
		out[m.Options().Addr] = keys
		mu.Unlock()
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// waitGone waits until a lookup of key on c finds nothing.
func waitGone(t *testing.T, c *tiered.Cache[string], key, who string) {
	t.Helper()
	redistest.WaitFor(t, 5*time.Second, func() bool {
		_, err := c.Get(context.Background(), key, nil)
		return errors.Is(err, tiered.ErrNotFound)
	}, "%s stops serving %s", who, key)
}

func numberedKeys(prefix string, n int) []string {
	keys := make([]string, n)
	for i := range keys {
		keys[i] = fmt.Sprintf("%s:%d", prefix, i)
	}
	return keys
}

// TestClusterBasicPaths runs every basic path of two replicas over a
// 3-master Redis Cluster, one namespace per subtest on one cluster.
func TestClusterBasicPaths(t *testing.T) {
	waitsMostly(t)
	c := redistest.StartCluster(t, 3)
	p := newClusterPair(t, c)
	opts := tiered.Options[string]{TTL: time.Hour}

	t.Run("get miss loads then the other replica hits L2", func(t *testing.T) {
		ctx := context.Background()
		a, b := p.caches(t, "get", opts)
		var la, lb countingLoader
		for _, k := range numberedKeys("user", 10) {
			if v, info, err := a.GetWithInfo(ctx, k, la.load); err != nil || v != "v:"+k || info.Tier != tiered.TierLoader {
				t.Fatalf("replica A Get(%s) = %q, %+v, %v; want a load", k, v, info, err)
			}
			if !p.exists(t, "get", k) {
				t.Fatalf("%s not filled in L2", k)
			}
			if v, info, err := b.GetWithInfo(ctx, k, lb.load); err != nil || v != "v:"+k || info.Tier != tiered.TierL2 {
				t.Fatalf("replica B Get(%s) = %q, %+v, %v; want an L2 hit", k, v, info, err)
			}
			if _, info, err := b.GetWithInfo(ctx, k, lb.load); err != nil || info.Tier != tiered.TierL1 {
				t.Fatalf("replica B second Get(%s): %+v, %v; want an L1 hit", k, info, err)
			}
		}
		if la.calls.Load() != 10 || lb.calls.Load() != 0 {
			t.Errorf("loader calls A=%d B=%d, want 10 and 0", la.calls.Load(), lb.calls.Load())
		}
	})

	t.Run("set crosses to the other replica over pub/sub", func(t *testing.T) {
		ctx := context.Background()
		a, b := p.caches(t, "set", opts)
		keys := numberedKeys("user", 6)
		applied := p.b.BusStats().Applied
		for _, k := range keys {
			if err := a.Set(ctx, k, "v1"); err != nil {
				t.Fatal(err)
			}
		}
		// B reads v1 into L1 only once the invalidations of these first
		// writes are behind it: they would drop it, and the check below
		// would pass without the second writes' messages.
		redistest.WaitFor(t, 5*time.Second, func() bool {
			return p.b.BusStats().Applied >= applied+uint64(len(keys))
		}, "replica B applies the first writes' invalidations")
		for _, k := range keys {
			if v, info, err := b.GetWithInfo(ctx, k, nil); err != nil || v != "v1" || info.Tier != tiered.TierL2 {
				t.Fatalf("replica B Get(%s) = %q, %+v, %v; want v1 from L2", k, v, info, err)
			}
		}
		applied = p.b.BusStats().Applied
		for _, k := range keys {
			if err := a.Set(ctx, k, "v2"); err != nil {
				t.Fatal(err)
			}
			if v, err := a.Get(ctx, k, nil); err != nil || v != "v2" {
				t.Fatalf("replica A read its own write of %s: %q, %v", k, v, err)
			}
			redistest.WaitFor(t, 5*time.Second, func() bool {
				v, err := b.Get(ctx, k, nil)
				return err == nil && v == "v2"
			}, "replica B serves v2 of %s", k)
		}
		if got := p.b.BusStats().Applied - applied; got < uint64(len(keys)) {
			t.Errorf("replica B applied %d invalidations for %d writes: v2 came from elsewhere than pub/sub", got, len(keys))
		}
	})

	t.Run("delete", func(t *testing.T) {
		ctx := context.Background()
		a, b := p.caches(t, "delete", opts)
		keys := numberedKeys("user", 6)
		setAndRead(t, a, b, "v", keys...)
		if err := a.Delete(ctx, keys...); err != nil { // keys of several slots in one call
			t.Fatal(err)
		}
		for _, k := range keys {
			if p.exists(t, "delete", k) {
				t.Errorf("%s still in L2 after Delete", k)
			}
			if _, err := a.Get(ctx, k, nil); !errors.Is(err, tiered.ErrNotFound) {
				t.Errorf("replica A Get(%s) after its Delete: %v, want ErrNotFound", k, err)
			}
			waitGone(t, b, k, "replica B")
		}
	})

	t.Run("getmany over many slots loads each key once cluster-wide", func(t *testing.T) {
		ctx := context.Background()
		a, b := p.caches(t, "many", opts)
		keys := numberedKeys("item", 60)
		slots := map[int64]bool{}
		for _, k := range keys {
			slots[p.raw.ClusterKeySlot(ctx, p.a.L2().Key("many", k)).Val()] = true
		}
		if len(slots) < 50 {
			t.Fatalf("the keys span %d slots, want at least 50", len(slots))
		}
		var mu sync.Mutex
		loaded := map[string]int{}
		load := func(_ context.Context, ks []string) (map[string]string, error) {
			out := make(map[string]string, len(ks))
			mu.Lock()
			defer mu.Unlock()
			for _, k := range ks {
				loaded[k]++
				out[k] = "v:" + k
			}
			return out, nil
		}
		var wg sync.WaitGroup
		for _, cache := range []*tiered.Cache[string]{a, b, a, b} {
			wg.Go(func() {
				got, err := cache.GetMany(ctx, keys, load)
				if err != nil {
					t.Errorf("GetMany: %v", err)
				}
				for _, k := range keys {
					if got[k] != "v:"+k {
						t.Errorf("GetMany[%s] = %q, want %q", k, got[k], "v:"+k)
					}
				}
			})
		}
		wg.Wait()
		for _, k := range keys {
			if loaded[k] != 1 {
				t.Errorf("%s loaded %d times by 4 GetMany calls on 2 replicas, want 1", k, loaded[k])
			}
		}
		for addr, ks := range keysPerMaster(t, p.raw, "strata:many:*") {
			if len(ks) == 0 {
				t.Errorf("master %s holds none of the 60 keys", addr)
			}
		}
		// A third replica finds them all in L2.
		late := newCache(t, newClient(t, tiered.Config{Redis: p.redis}), "many", opts)
		got, err := late.GetMany(ctx, keys, nil)
		if err != nil || len(got) != len(keys) || late.Stats().L2Hits != uint64(len(keys)) {
			t.Fatalf("late replica GetMany: %d values, %v, stats %+v; want all from L2", len(got), err, late.Stats())
		}
	})

	t.Run("tags", func(t *testing.T) {
		ctx := context.Background()
		tagged := opts
		tagged.Tags = func(_, v string) []string { return []string{"team:" + v} }
		a, b := p.caches(t, "tags", tagged)
		teams := map[string]string{}
		for i, k := range numberedKeys("user", 12) {
			teams[k] = []string{"red", "blue", "green"}[i%3]
		}
		load := func(_ context.Context, k string) (string, error) { return teams[k], nil }
		for k := range teams {
			for _, cache := range []*tiered.Cache[string]{a, b} {
				if _, err := cache.Get(ctx, k, load); err != nil {
					t.Fatal(err)
				}
			}
		}
		if err := a.Set(ctx, "vip", "gold", tiered.WithTags("vip")); err != nil {
			t.Fatal(err)
		}
		if _, err := b.Get(ctx, "vip", nil); err != nil {
			t.Fatal(err)
		}
		if err := a.InvalidateTags(ctx, "team:red", "vip"); err != nil {
			t.Fatal(err)
		}
		for k, team := range teams {
			if team != "red" {
				continue
			}
			if p.exists(t, "tags", k) {
				t.Errorf("%s (team:red) still in L2", k)
			}
			waitGone(t, b, k, "replica B")
			waitGone(t, a, k, "replica A")
		}
		waitGone(t, b, "vip", "replica B")
		for _, tag := range []string{"team:red", "vip"} {
			if n := p.raw.Exists(ctx, p.a.L2().TagKey("tags", tag)).Val(); n != 0 {
				t.Errorf("the set of tag %s is still in L2", tag)
			}
		}
		for k, team := range teams {
			if team == "red" {
				continue
			}
			if v, err := b.Get(ctx, k, nil); err != nil || v != team {
				t.Errorf("replica B: %s = %q, %v; a key without the tag was lost", k, v, err)
			}
		}
	})

	t.Run("pattern removes keys on every master", func(t *testing.T) {
		ctx := context.Background()
		a, b := p.caches(t, "pattern", opts)
		users, orders := numberedKeys("user", 30), numberedKeys("order", 5)
		setAndRead(t, a, b, "v", append(users, orders...)...)
		const match = "strata:pattern:{user:*}"
		for addr, ks := range keysPerMaster(t, p.raw, match) {
			if len(ks) == 0 {
				t.Fatalf("master %s holds no user key: the test would not cover it", addr)
			}
		}
		if err := b.InvalidatePattern(ctx, "user:*"); err != nil {
			t.Fatal(err)
		}
		for addr, ks := range keysPerMaster(t, p.raw, match) {
			if len(ks) != 0 {
				t.Errorf("master %s still holds %v", addr, ks)
			}
		}
		for _, k := range users {
			waitGone(t, a, k, "replica A")
			waitGone(t, b, k, "replica B")
		}
		for _, k := range orders {
			if !p.exists(t, "pattern", k) {
				t.Errorf("%s, outside the pattern, was removed from L2", k)
			}
			if v, err := a.Get(ctx, k, nil); err != nil || v != "v" {
				t.Errorf("replica A: %s = %q, %v; want v", k, v, err)
			}
		}
	})

	t.Run("clear bumps the namespace version", func(t *testing.T) {
		ctx := context.Background()
		a, b := p.caches(t, "clear", opts)
		keys := numberedKeys("user", 6)
		setAndRead(t, a, b, "old", keys...)
		if err := b.Clear(ctx); err != nil {
			t.Fatal(err)
		}
		if v := p.raw.Get(ctx, "strata:clear#version").Val(); v != "1" {
			t.Errorf("namespace version in L2 = %q, want 1", v)
		}
		for _, k := range keys {
			if _, err := b.Get(ctx, k, nil); !errors.Is(err, tiered.ErrNotFound) {
				t.Errorf("replica B Get(%s) after its Clear: %v, want ErrNotFound", k, err)
			}
			waitGone(t, a, k, "replica A")
		}
		if err := a.Set(ctx, keys[0], "new"); err != nil {
			t.Fatal(err)
		}
		if v, err := b.Get(ctx, keys[0], nil); err != nil || v != "new" {
			t.Errorf("replica B after Clear and Set: %q, %v; want new", v, err)
		}
		late := newCache(t, newClient(t, tiered.Config{Redis: p.redis}), "clear", opts)
		if v, err := late.Get(ctx, keys[0], nil); err != nil || v != "new" {
			t.Errorf("late replica: %q, %v; want the post-Clear value", v, err)
		}
		if _, err := late.Get(ctx, keys[1], nil); !errors.Is(err, tiered.ErrNotFound) {
			t.Errorf("late replica reads a pre-Clear value: %v", err)
		}
	})

	t.Run("lease makes one load for a stampede on two replicas", func(t *testing.T) {
		a, b := p.caches(t, "lease", opts)
		g := newGate("value")
		for _, err := range stampede(t, []*tiered.Cache[string]{a, b}, 50, g) {
			if err != nil {
				t.Fatal(err)
			}
		}
		if n := g.calls.Load(); n != 1 {
			t.Errorf("loader ran %d times for 100 Gets on 2 replicas, want 1", n)
		}
	})
}

// sourceOfTruth is the database behind the failover test's caches: the
// loaders read it, and a writer updates it before the cache (write-through
// order), so a loaded value is never older than an acknowledged write.
type sourceOfTruth struct {
	mu    sync.Mutex
	data  map[string]string
	loads atomic.Int64
}

func (s *sourceOfTruth) put(k, v string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.data[k] = v
}

func (s *sourceOfTruth) get(k string) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.data[k]
}

func (s *sourceOfTruth) load(_ context.Context, k string) (string, error) {
	s.loads.Add(1)
	return s.get(k), nil
}

func (s *sourceOfTruth) loadMany(_ context.Context, keys []string) (map[string]string, error) {
	s.loads.Add(1)
	out := make(map[string]string, len(keys))
	for _, k := range keys {
		out[k] = s.get(k)
	}
	return out, nil
}

// slotMaster returns the address of the master serving Redis key k.
func slotMaster(t *testing.T, raw *redis.ClusterClient, k string) string {
	t.Helper()
	ctx := context.Background()
	slot := int(raw.ClusterKeySlot(ctx, k).Val())
	ranges, err := raw.ClusterSlots(ctx).Result()
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range ranges {
		if slot >= r.Start && slot <= r.End {
			return r.Nodes[0].Addr
		}
	}
	t.Fatalf("no master serves slot %d: %+v", slot, ranges)
	return ""
}

// replicaOf maps each master's address to its replica's, from the replicas'
// ROLE (CLUSTER SLOTS may leave out a replica until gossip reports its
// replication offset).
func replicaOf(t *testing.T, c *redistest.Cluster) map[string]string {
	t.Helper()
	out := map[string]string{}
	for _, r := range c.Replicas {
		role, ok := r.Do(t, "ROLE").([]any)
		if !ok || len(role) < 3 || role[0] != "slave" {
			t.Fatalf("%s ROLE = %v, want a replica", r.Addr(), role)
		}
		out[fmt.Sprintf("%v:%v", role[1], role[2])] = r.Addr()
	}
	return out
}

// waitReplicated waits until the replica of every key's slot holds what its
// master holds, reading it with READONLY.
func waitReplicated(t *testing.T, c *redistest.Cluster, raw *redis.ClusterClient, redisKeys []string) {
	t.Helper()
	ctx := context.Background()
	readers := map[string]*redis.Client{}
	for _, r := range c.Replicas {
		rc := redis.NewClient(&redis.Options{Addr: r.Addr(), OnConnect: func(ctx context.Context, cn *redis.Conn) error {
			return cn.ReadOnly(ctx).Err()
		}})
		t.Cleanup(func() { _ = rc.Close() })
		readers[r.Addr()] = rc
	}
	replicas := replicaOf(t, c)
	replicaOfKey := map[string]string{}
	for _, k := range redisKeys {
		replicaOfKey[k] = replicas[slotMaster(t, raw, k)]
	}
	redistest.WaitFor(t, 10*time.Second, func() bool {
		for _, k := range redisKeys {
			want, err := raw.Get(ctx, k).Result()
			if err != nil {
				return false
			}
			if got, err := readers[replicaOfKey[k]].Get(ctx, k).Result(); err != nil || got != want {
				return false
			}
		}
		return true
	}, "every write replicated")
}

// serverAt returns the cluster node listening on addr.
func serverAt(t *testing.T, c *redistest.Cluster, addr string) *redistest.Server {
	t.Helper()
	for _, s := range append(append([]*redistest.Server{}, c.Masters...), c.Replicas...) {
		if s.Addr() == addr {
			return s
		}
	}
	t.Fatalf("no cluster node at %s", addr)
	return nil
}

// failoverReaders reads keys on caches until stop closes: Get on each cache,
// and GetMany on the last one too. Every answer must be an error-free value
// no older than want, the last acknowledged write.
type failoverReaders struct {
	once    sync.Once
	wg      sync.WaitGroup
	stop    chan struct{}
	reads   atomic.Int64
	errors  atomic.Int64
	slowest atomic.Int64 // nanoseconds
}

func startFailoverReaders(t *testing.T, caches []*tiered.Cache[string], keys []string, db *sourceOfTruth, want func(string) string) *failoverReaders {
	r := &failoverReaders{stop: make(chan struct{})}
	check := func(what, k, v string, err error, took time.Duration) {
		r.reads.Add(1)
		if d := int64(took); d > r.slowest.Load() {
			r.slowest.Store(d) // a racy maximum is good enough for a log line
		}
		if err != nil || v != want(k) {
			if r.errors.Add(1) <= 5 {
				t.Errorf("%s(%s) during failover = %q, %v; want %q", what, k, v, err, want(k))
			}
		}
	}
	loop := func(round func(ctx context.Context)) {
		// Paced, so the readers leave CPU to the cluster's failure detector.
		tick := time.NewTicker(time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-r.stop:
				return
			case <-tick.C:
			}
			round(context.Background())
		}
	}
	for _, c := range caches {
		r.wg.Go(func() {
			loop(func(ctx context.Context) {
				for _, k := range keys {
					start := time.Now()
					v, err := c.Get(ctx, k, db.load)
					check("Get", k, v, err, time.Since(start))
				}
			})
		})
	}
	last := caches[len(caches)-1]
	r.wg.Go(func() {
		loop(func(ctx context.Context) {
			start := time.Now()
			got, err := last.GetMany(ctx, keys, db.loadMany)
			took := time.Since(start)
			for _, k := range keys {
				check("GetMany", k, got[k], err, took)
			}
		})
	})
	return r
}

// finish stops the readers and waits for them. It is idempotent.
func (r *failoverReaders) finish() {
	r.once.Do(func() {
		close(r.stop)
		r.wg.Wait()
	})
}

// clusterFailoverSetup is a cluster with a replica per master, two cache
// replicas (A with L1; B with L1 and, on the same client, without), and 30
// keys written twice (v0 then v1) and replicated.
type clusterFailoverSetup struct {
	c            *redistest.Cluster
	p            *clusterPair
	a, b, direct *tiered.Cache[string]
	db           *sourceOfTruth
	keys         []string
	chosen       string // a key on the master that serves the invalidation channel's slot
	victim       string // that master's address
	promoted     string // its replica's address
}

func newClusterFailoverSetup(t *testing.T) *clusterFailoverSetup {
	t.Helper()
	ctx := context.Background()
	c := redistest.StartCluster(t, 3, redistest.WithReplicas(1))
	p := newClusterPair(t, c)
	a, b := p.caches(t, "failover", tiered.Options[string]{TTL: time.Hour})
	s := &clusterFailoverSetup{
		c: c, p: p, a: a, b: b,
		direct: newCache(t, p.b, "failover", tiered.Options[string]{TTL: time.Hour, L1: tiered.L1Options{Disabled: true}}),
		db:     &sourceOfTruth{data: map[string]string{}},
		keys:   numberedKeys("user", 30),
	}
	redisKeys := make([]string, len(s.keys))
	for i, k := range s.keys {
		redisKeys[i] = p.a.L2().Key("failover", k)
	}
	for _, version := range []string{"v0", "v1"} {
		for _, k := range s.keys {
			s.db.put(k, version+":"+k)
			if err := a.Set(ctx, k, s.db.get(k)); err != nil {
				t.Fatal(err)
			}
		}
	}
	for _, cache := range []*tiered.Cache[string]{a, b} { // warm both L1s
		if _, err := cache.GetMany(ctx, s.keys, s.db.loadMany); err != nil {
			t.Fatal(err)
		}
	}
	waitReplicated(t, c, p.raw, redisKeys)
	channelMaster := slotMaster(t, p.raw, "strata:invalidations")
	for i, k := range s.keys {
		if m := slotMaster(t, p.raw, redisKeys[i]); m == channelMaster {
			s.chosen, s.victim, s.promoted = k, m, replicaOf(t, c)[m]
			return s
		}
	}
	t.Fatal("no key shares a master with the invalidation channel")
	return nil
}

// waitGoroutinesGone makes the end of the test wait, after every other
// cleanup (clients closed), until the goroutines started since this call are
// gone. go-redis starts a goroutine per pool that redials a dead server once a
// second and sees its pool closed only after the sleep, so it outlives
// Client.Close by up to a second; TestMain's leak check would flag it.
func waitGoroutinesGone(t *testing.T) {
	t.Helper()
	before := goleak.IgnoreCurrent()
	t.Cleanup(func() {
		var last lastError
		redistest.WaitFor(t, 5*time.Second, func() bool {
			last.err = goleak.Find(before)
			return last.err == nil
		}, "goroutines left behind: %v", &last)
	})
}

// lastError prints the error it holds when the message is formatted.
type lastError struct{ err error }

func (e *lastError) String() string { return fmt.Sprint(e.err) }

// TestClusterMasterFailover kills the master of a key (the one that also
// serves the invalidation channel's slot, so pub/sub fails over too) while
// readers run on two replicas: no read fails or returns a value older than
// the last acknowledged write, and once the replica is promoted both
// replicas write and read through it again.
func TestClusterMasterFailover(t *testing.T) {
	waitGoroutinesGone(t)
	ctx := context.Background()
	s := newClusterFailoverSetup(t)
	readers := startFailoverReaders(t, []*tiered.Cache[string]{s.a, s.b, s.direct}, s.keys, s.db, s.db.get)
	defer readers.finish() // before the clients close, if the test fails early
	killed := time.Now()
	serverAt(t, s.c, s.victim).Kill()

	promoted := serverAt(t, s.c, s.promoted)
	redistest.WaitFor(t, 20*time.Second, func() bool {
		role, _ := promoted.Do(t, "ROLE").([]any)
		return len(role) > 0 && role[0] == "master"
	}, "the cluster promotes %s", s.promoted)
	t.Logf("cluster promoted %s %v after the kill of %s", s.promoted, time.Since(killed), s.victim)
	// The readers go on for a while on the promoted cluster.
	atPromotion := readers.reads.Load()
	redistest.WaitFor(t, 10*time.Second, func() bool { return readers.reads.Load() >= atPromotion+100 }, "reads after the promotion")

	t.Run("replicas use the promoted master", func(t *testing.T) {
		// A replica started during the failover, with the dead node among
		// its seeds, writes and reads the chosen key through L2.
		fresh := newCache(t, newClient(t, tiered.Config{NodeID: "replica-fresh", Redis: s.p.redis}), "failover",
			tiered.Options[string]{TTL: time.Hour, L1: tiered.L1Options{Disabled: true}})
		redistest.WaitFor(t, 20*time.Second, func() bool {
			if err := fresh.Set(ctx, s.chosen, s.db.get(s.chosen)); err != nil {
				return false
			}
			v, info, err := fresh.GetWithInfo(ctx, s.chosen, s.db.load)
			return err == nil && v == s.db.get(s.chosen) && info.Tier == tiered.TierL2
		}, "a fresh replica writes and reads %s through the promoted master", s.chosen)
		t.Logf("a fresh replica served %s from L2 %v after the kill", s.chosen, time.Since(killed))
		readers.finish()

		// The replicas that lived through the failover write and read
		// through the promoted master, and the invalidation crosses again.
		s.db.put(s.chosen, "v2:"+s.chosen)
		redistest.WaitFor(t, 5*time.Second, func() bool {
			return s.a.Set(ctx, s.chosen, s.db.get(s.chosen)) == nil
		}, "replica A writes %s after the failover", s.chosen)
		if v, err := s.a.Get(ctx, s.chosen, nil); err != nil || v != s.db.get(s.chosen) {
			t.Errorf("replica A after its write: %q, %v; want %q", v, err, s.db.get(s.chosen))
		}
		redistest.WaitFor(t, 5*time.Second, func() bool {
			v, err := s.b.Get(ctx, s.chosen, nil)
			return err == nil && v == s.db.get(s.chosen)
		}, "replica B drops its L1 copy and serves v2")
		if v, info, err := s.direct.GetWithInfo(ctx, s.chosen, s.db.load); err != nil || v != s.db.get(s.chosen) || info.Tier != tiered.TierL2 {
			t.Errorf("replica B without L1: %q, %+v, %v; want v2 from L2", v, info, err)
		}
	})

	readers.finish()
	t.Logf("%d reads during the failover, the slowest %v; %d loads, %d L2 errors on replica B without L1",
		readers.reads.Load(), time.Duration(readers.slowest.Load()), s.db.loads.Load(), s.direct.Stats().L2Errors)
	if s.direct.Stats().L2Errors == 0 {
		t.Error("replica B without L1 met no L2 error: the readers did not read through the dead master")
	}
}

// TestClusterClientFollowsFailover is the failover's reroute alone: a client
// made before a master dies writes and reads that master's keys through L2
// again once its replica is promoted.
func TestClusterClientFollowsFailover(t *testing.T) {
	waitGoroutinesGone(t)
	ctx := context.Background()
	c := redistest.StartCluster(t, 3, redistest.WithReplicas(1))
	client := newClient(t, tiered.Config{Redis: l2.Config{ClusterAddrs: c.Addrs()}})
	cache := newCache(t, client, "users", tiered.Options[string]{L1: tiered.L1Options{Disabled: true}})
	if err := cache.Set(ctx, "k", "v1"); err != nil {
		t.Fatal(err)
	}
	raw := c.Client(t)
	redisKey := client.L2().Key("users", "k")
	waitReplicated(t, c, raw, []string{redisKey})
	victim := slotMaster(t, raw, redisKey)
	serverAt(t, c, victim).Kill()
	var l countingLoader
	redistest.WaitFor(t, 20*time.Second, func() bool {
		if cache.Set(ctx, "k", "v2") != nil {
			return false
		}
		v, info, err := cache.GetWithInfo(ctx, "k", l.load)
		return err == nil && v == "v2" && info.Tier == tiered.TierL2
	}, "Set and Get of k through the promoted master")
}

// setAndRead sets each key to v on replica a and reads it on b, so both hold
// it in L1.
func setAndRead(t *testing.T, a, b *tiered.Cache[string], v string, keys ...string) {
	t.Helper()
	ctx := context.Background()
	for _, k := range keys {
		if err := a.Set(ctx, k, v); err != nil {
			t.Fatal(err)
		}
		if _, err := b.Get(ctx, k, nil); err != nil {
			t.Fatal(err)
		}
	}
}
