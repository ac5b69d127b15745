package chaos_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/strata-cache/strata/cluster"
	"github.com/strata-cache/strata/internal/redistest"
	"github.com/strata-cache/strata/l2"
	"github.com/strata-cache/strata/tiered"
)

// TestRegressionTagSetOnStandIn is the deterministic reproduction of the stale
// reads the chaos soak found on a Ring (seed 1796221964569417412): a value
// whose tag's set lives on a shard that is out of service is cached with
// its membership added to the tag set on a stand-in shard, under the
// plain tag-set key; once the shard serves again, InvalidateTags pops the
// set on the shard and returns no error, but the value stays in L2 (until
// its TTL) and every replica serves it: guarantees 9 and 13 broken.
func TestRegressionTagSetOnStandIn(t *testing.T) {
	ctx := context.Background()
	shards := redistest.StartShards(t, 3)
	var addrs []string
	for _, s := range shards {
		addrs = append(addrs, s.Addr())
	}
	cfg := l2.Config{Addrs: addrs, Timeout: l2Timeout}
	newCache := func(name string, l1Off bool) (*tiered.Client, *tiered.Cache[string]) {
		c, err := tiered.NewClient(ctx, tiered.Config{NodeID: name, Redis: cfg, Logger: quietLogger})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = c.Close() })
		cache, err := tiered.NewCache(c, "users", tiered.Options[string]{TTL: time.Minute,
			L1: tiered.L1Options{Disabled: l1Off}, Tags: func(string, string) []string { return []string{"t"} }})
		if err != nil {
			t.Fatal(err)
		}
		return c, cache
	}
	client, cache := newCache("writer", false)
	place, err := tiered.NewCache(client, "placement", tiered.Options[string]{TTL: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	_, probe := newCache("probe", true) // what L2 holds
	// Find the shard of tag t's set (home), and a key served elsewhere.
	if err := cache.Set(ctx, "finder", "x"); err != nil {
		t.Fatal(err)
	}
	home := -1
	holds := func(i int, key string) bool {
		c := shards[i].Client(t)
		n, _ := c.Exists(ctx, key).Result()
		return n == 1
	}
	for i := range shards {
		if holds(i, "strata:users#tag:{t}") {
			home = i
		}
	}
	if home < 0 {
		t.Fatal("tag set of t found on no shard")
	}
	key := ""
	for i := range 50 {
		k := fmt.Sprintf("user:%d", i)
		if !holds(home, "strata:users:{"+k+"}") && shardOf(t, shards, place, k) != home {
			key = k
			break
		}
	}
	t.Logf("tag t's set on shard %d (%s); %s on shard %d", home, addrs[home], key, shardOf(t, shards, place, key))

	shards[home].Kill()
	redistest.WaitFor(t, 10*time.Second, func() bool { return !serving(client, addrs[home]) }, "the writer holds shard %d out", home)
	if err := cache.Set(ctx, key, "v1"); err != nil { // its tag membership goes to a stand-in
		t.Fatal(err)
	}
	shards[home].Restart()
	redistest.WaitFor(t, 10*time.Second, func() bool { return serving(client, addrs[home]) }, "the writer serves shard %d again", home)

	// The database changes; the application invalidates the tag.
	if err := cache.InvalidateTags(ctx, "t"); err != nil {
		t.Fatalf("InvalidateTags: %v", err)
	}
	for _, c := range []*tiered.Cache[string]{cache, probe} {
		v, err := c.Get(ctx, key, nil)
		if !errors.Is(err, tiered.ErrNotFound) {
			t.Errorf("%s after InvalidateTags(t) returned nil: %q, %v; want ErrNotFound (the value carries tag t)", key, v, err)
		}
	}
	for i := range shards {
		for _, k := range keysOn(t, shards[i], "*#tag:{t}") {
			t.Logf("shard %d holds %s", i, k)
		}
	}
}

// shardOf returns the index of the shard serving k: the Ring places a
// key by its hash tag ({k}) alone, so a Set of k in another namespace,
// without tags, shows where k lives.
func shardOf(t *testing.T, shards []*redistest.Server, place *tiered.Cache[string], k string) int {
	t.Helper()
	if err := place.Set(context.Background(), k, "x"); err != nil {
		t.Fatal(err)
	}
	for i, s := range shards {
		if n, _ := s.Client(t).Exists(context.Background(), "strata:placement:{"+k+"}").Result(); n == 1 {
			return i
		}
	}
	t.Fatalf("%s found on no shard", k)
	return -1
}

func serving(c *tiered.Client, addr string) bool {
	for _, h := range c.L2Health() {
		if h.Addr == addr {
			return h.Serving
		}
	}
	return false
}

func keysOn(t *testing.T, s *redistest.Server, pattern string) []string {
	t.Helper()
	keys, _ := s.Client(t).Keys(context.Background(), pattern).Result()
	return keys
}

// TestRegressionGossipNodeRace is the reproduction of the data race the chaos
// soak found (seed 1796222289999553051, under -race): a replica's gossip
// broadcast (cluster.(*node).broadcast → send → memberlist.SendBestEffort)
// reads the *memberlist.Node that Members() returned (Node.Address: Addr,
// Port) while memberlist's packet handler rewrites the same struct
// (aliveNode, state.go:1131: Addr, Port, Meta) on an alive message of a
// higher incarnation. Members() hands out memberlist's own nodes, which it
// writes under its lock only. Such a message comes from a member that
// refutes a suspicion (after a gossip cut or loss) and from every member
// that closes: cluster's Close announces the departure in its metadata
// (UpdateNode) first. Here replicas close, one by one, while replica 0
// broadcasts invalidations.
func TestRegressionGossipNodeRace(t *testing.T) {
	ctx := context.Background()
	start := func(name string, seed []string) (*tiered.Client, *tiered.Cache[string]) {
		c, err := tiered.NewClient(ctx, tiered.Config{NodeID: name, Logger: quietLogger,
			Gossip: &cluster.Config{BindAddr: "127.0.0.1:0", Profile: cluster.ProfileLocal, Join: seed}})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = c.Close() })
		cache, err := tiered.NewCache(c, "users", tiered.Options[string]{TTL: time.Minute})
		if err != nil {
			t.Fatal(err)
		}
		return c, cache
	}
	first, cache := start("race-0", nil)
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() { // replica 0 broadcasts invalidations all along
		defer close(done)
		for {
			select {
			case <-stop:
				return
			default:
			}
			_ = cache.Delete(ctx, "k")
			// Between two broadcasts nothing orders this goroutine's read
			// of a Node with memberlist's rewrite of it.
			time.Sleep(5 * time.Millisecond)
		}
	}()
	for round := range 8 {
		var others []*tiered.Client
		for i := range 3 {
			c, _ := start(fmt.Sprintf("race-%d-%d", round, i), []string{first.GossipAddr()})
			others = append(others, c)
		}
		redistest.WaitFor(t, 10*time.Second, func() bool {
			alive := 0
			for _, m := range first.Health().Members {
				if m.State == cluster.MemberAlive {
					alive++
				}
			}
			return alive == 4
		}, "4 members alive")
		for _, c := range others {
			_ = c.Close()
		}
	}
	close(stop)
	<-done
}
