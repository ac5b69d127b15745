package l2_test

import (
	"fmt"
	"math"
	"slices"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/strata-cache/strata/internal/redistest"
	"github.com/strata-cache/strata/l2"
)

// shardOf maps each of n keys of namespace ns to the address of the shard
// the store sends it to.
func shardOf(t *testing.T, store *l2.Store, n int) []string {
	t.Helper()
	ring := store.Client().(*redis.Ring)
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

func openShards(t *testing.T, servers []*redistest.Server) *l2.Store {
	t.Helper()
	var addrs []string
	for _, s := range servers {
		addrs = append(addrs, s.Addr())
	}
	store, err := l2.Open(l2.Config{Addrs: addrs})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	return store
}

// checkMoved checks that going from before to after moved about want of the
// keys, all of them onto target (or, with target empty, off source).
func checkMoved(t *testing.T, before, after []string, want float64, source, target string) {
	t.Helper()
	moved := 0
	for i := range before {
		if before[i] == after[i] {
			continue
		}
		moved++
		if (target != "" && after[i] != target) || (source != "" && before[i] != source) {
			t.Fatalf("key %d moved %s → %s: not a consistent hash", i, before[i], after[i])
		}
	}
	frac := float64(moved) / float64(len(before))
	t.Logf("moved %.4f of %d keys (ideal %.4f)", frac, len(before), want)
	if math.Abs(frac-want) > 0.05*want {
		t.Errorf("moved %.4f of the keys, want %.4f ± 5%%", frac, want)
	}
}

func TestShardDistributionAndMovement(t *testing.T) {
	const keys = 100_000
	servers := redistest.StartShards(t, 5)
	for _, n := range []int{3, 5} {
		t.Run(fmt.Sprint(n, " shards"), func(t *testing.T) {
			count := map[string]int{}
			for _, a := range shardOf(t, openShards(t, servers[:n]), keys) {
				count[a]++
			}
			for a, c := range count {
				if share := float64(c) / keys; math.Abs(share-1/float64(n)) > 0.05/float64(n) {
					t.Errorf("shard %s holds %.4f of the keys, want %.4f ± 5%%", a, share, 1/float64(n))
				}
			}
		})
	}
	t.Run("adding a 4th shard", func(t *testing.T) {
		before := shardOf(t, openShards(t, servers[:3]), keys)
		after := shardOf(t, openShards(t, servers[:4]), keys)
		checkMoved(t, before, after, 0.25, "", servers[3].Addr())
	})
	t.Run("a shard out of service", func(t *testing.T) {
		store := openShards(t, servers[:4])
		before := shardOf(t, store, keys)
		servers[1].Kill()
		redistest.WaitFor(t, 10*time.Second, func() bool {
			c, err := store.Client().(*redis.Ring).GetShardClientForKey(store.Key("ns", "user:probe"))
			return err == nil && c != nil && slices.Index(shardOf(t, store, 200), servers[1].Addr()) < 0
		}, "shard 1 leaves the routing")
		checkMoved(t, before, shardOf(t, store, keys), 0.25, servers[1].Addr(), "")
	})
}
