package l2_test

import (
	"fmt"
	"math"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/strata-cache/strata/internal/redistest"
	"github.com/strata-cache/strata/l2"
)

// shardOf maps each of n keys of namespace ns to the address of its shard.
func shardOf(t *testing.T, ring *redis.Ring, store *l2.Store, n int) []string {
	t.Helper()
	out := make([]string, n)
	for i := range out {
		c, err := ring.GetShardClientForKey(store.Key("ns", fmt.Sprintf("user:%d", i)))
		if err != nil {
			t.Fatal(err)
		}
		out[i] = c.Options().Addr
	}
	return out
}

func TestShardDistributionAndMovement(t *testing.T) {
	const keys = 100_000
	servers := redistest.StartShards(t, 5)
	addrs := map[string]string{}
	for i, s := range servers {
		addrs[fmt.Sprintf("shard%d", i)] = s.Addr()
	}
	for _, n := range []int{3, 5} {
		t.Run(fmt.Sprint(n, " shards"), func(t *testing.T) {
			some := map[string]string{}
			for i := range n {
				name := fmt.Sprintf("shard%d", i)
				some[name] = addrs[name]
			}
			ring := redis.NewRing(&redis.RingOptions{Addrs: some})
			defer ring.Close()
			store, err := l2.Open(l2.Config{Client: ring})
			if err != nil {
				t.Fatal(err)
			}
			count := map[string]int{}
			for _, a := range shardOf(t, ring, store, keys) {
				count[a]++
			}
			for a, c := range count {
				if share := float64(c) / keys; math.Abs(share-1/float64(n)) > 0.05/float64(n) {
					t.Errorf("shard %s holds %.4f of the keys, want %.4f ± 5%%", a, share, 1/float64(n))
				}
			}
		})
	}
	// Adding a fourth shard to three moves about a quarter of the keys.
	three := map[string]string{"shard0": addrs["shard0"], "shard1": addrs["shard1"], "shard2": addrs["shard2"]}
	ring := redis.NewRing(&redis.RingOptions{Addrs: three})
	defer ring.Close()
	store, err := l2.Open(l2.Config{Client: ring})
	if err != nil {
		t.Fatal(err)
	}
	before := shardOf(t, ring, store, keys)
	four := map[string]string{"shard3": addrs["shard3"]}
	for k, v := range three {
		four[k] = v
	}
	ring.SetAddrs(four)
	redistest.WaitFor(t, 10*time.Second, func() bool {
		c, err := ring.GetShardClientForKey("probe")
		return err == nil && c != nil && len(ring.GetShardClients()) == 4
	}, "ring has 4 shards")
	after := shardOf(t, ring, store, keys)
	moved := 0
	for i := range before {
		if before[i] != after[i] {
			moved++
			if after[i] != addrs["shard3"] {
				t.Fatalf("key %d moved between old shards (%s → %s): not a consistent hash", i, before[i], after[i])
			}
		}
	}
	frac := float64(moved) / keys
	t.Logf("adding a 4th shard moved %.4f of %d keys (ideal 0.25)", frac, keys)
	if math.Abs(frac-0.25) > 0.0125 {
		t.Errorf("moved %.4f of the keys, want about 1/4", frac)
	}
}
