package benchmarks

import (
	"context"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/strata-cache/strata/l1"
	"github.com/strata-cache/strata/tiered"
)

// orderLen is the length of every precomputed access order, a power of two
// so the next index is order[n&orderMask].
const (
	orderLen  = 1 << 16
	orderMask = orderLen - 1
)

// localHitter is one contender of BenchmarkLocalHit, built and warmed.
type localHitter struct {
	name string
	// get reads key(i) as a user would, into a *User, and reports whether
	// the read was a local hit holding newUser(i)'s ID. Contenders that
	// tell per read whether it was a local hit check it here; the others
	// report a correct value, and verify checks their counters.
	get func(i int) bool
	// verify, when not nil, snapshots the contender's counters and returns
	// a check to run after n more reads: an error unless all n were local
	// hits.
	verify func() func(n int) error
}

// BenchmarkLocalHit compares a read answered by the local tier: Strata's L1
// (a decoded *User, with a Redis L2 configured behind it) on each of its
// engines (strata: ristretto, the default; strata-otter), raw ristretto v2
// and otter v2 (the floor: a map lookup and nothing else), and the peers
// whose local tier keeps bytes and decodes on every hit: go-redis/cache
// (TinyLFU, msgpack), rueidis client-side caching and go-redis v9's
// client-side cache (both JSON, invalidated by RESP3 tracking). Every
// contender holds the same 1,000 warmed keys with the same byte capacity
// and TTL, is read in the same order (round robin, or Zipf), by exactly g
// goroutines that split b.N, and every measured read is checked to have
// been a local hit: per read where the contender tells (Strata's
// GetWithInfo tier, rueidis's IsCacheHit, the raw caches' ok), else by its
// counters after the loop (go-redis CSC's hits grew by b.N; go-redis/cache
// sent nothing to Redis). A read that was not a local hit fails the
// benchmark. Strata is read with GetWithInfo, Get's L1 path plus the tier
// it answered from.
//
// ns/op is wall time over all reads: with g > 1 it is the reciprocal of
// the throughput of g goroutines on GOMAXPROCS processors, as under
// RunParallel.
func BenchmarkLocalHit(b *testing.B) {
	settle()
	contenders := openLocalHitters(b)
	for _, dist := range []string{"uniform", "zipf"} {
		for _, g := range []int{1, 2, 8} {
			for _, c := range contenders {
				b.Run(fmt.Sprintf("%s/g=%d/%s", dist, g, c.name), func(b *testing.B) {
					benchLocalHit(b, c, dist, g)
				})
			}
		}
	}
}

// benchLocalHit times b.N reads of c in dist's order on g goroutines.
func benchLocalHit(b *testing.B, c localHitter, dist string, g int) {
	orders := workerOrders(dist, g)
	var check func(int) error
	if c.verify != nil {
		check = c.verify()
	}
	b.ReportAllocs()
	settle()
	b.ResetTimer()
	bad := onGoroutines(b.N, g, func(w, n int) (bad int) {
		order := orders[w]
		for j := range n {
			if !c.get(order[j&orderMask]) {
				bad++
			}
		}
		return bad
	})
	b.StopTimer()
	if bad > 0 {
		b.Fatalf("%s: %d of %d reads were not local hits of the right value", c.name, bad, b.N)
	}
	if check != nil {
		if err := check(b.N); err != nil {
			b.Fatalf("%s: %v", c.name, err)
		}
	}
}

// workerOrders returns an access order of dist for each of g workers: Zipf
// draws of a seed of its own, and each rotated to start its share of the
// way in, so that round-robin workers do not read the same key in step.
func workerOrders(dist string, g int) [][]int {
	orders := make([][]int, g)
	for w := range orders {
		order := accessOrder(dist, orderLen, uint64(w)+1)
		start := w * orderLen / g
		orders[w] = append(order[start:], order[:start]...)
	}
	return orders
}

// onGoroutines runs f on exactly g goroutines (on the caller's own when g
// is 1), worker w doing its share n of total, the shares adding up to
// total; it returns the sum of what they return.
func onGoroutines(total, g int, f func(w, n int) int) int {
	if g == 1 {
		return f(0, total)
	}
	var (
		wg  sync.WaitGroup
		sum atomic.Int64
	)
	for w := range g {
		n := total / g
		if w < total%g {
			n++
		}
		wg.Go(func() { sum.Add(int64(f(w, n))) })
	}
	wg.Wait()
	return int(sum.Load())
}

// openLocalHitters builds and warms every contender of BenchmarkLocalHit,
// each Redis-backed one on a Redis server of its own (so that no
// contender's writes or invalidations reach another's local tier), for all
// of the sub-benchmarks; they are closed when b ends.
func openLocalHitters(b *testing.B) []localHitter {
	addrs := startRedis(b, 5)
	return []localHitter{
		strataHitter(b, "strata", addrs[0], tiered.L1Options{}),
		strataHitter(b, "strata-otter", addrs[1], tiered.L1Options{Engine: l1.Otter}),
		ristrettoHitter(b, "ristretto", ttl),
		otterHitter(b, "otter", true),
		// Without a TTL neither reads the clock on a hit: the floor under
		// Strata's L1, whose engines keep no TTL (l1's sweeper expires).
		ristrettoHitter(b, "ristretto-nottl", 0),
		otterHitter(b, "otter-nottl", false),
		goRedisCacheHitter(b, addrs[2]),
		rueidisHitter(b, addrs[3]),
		goRedisCSCHitter(b, addrs[4]),
	}
}

// hasID reports whether u is the value of key(i).
func hasID(u *User, i int) bool { return u != nil && u.ID == int64(i) }

func strataHitter(b *testing.B, name, addr string, l1 tiered.L1Options) localHitter {
	c := newStrata(b, []string{addr}, l1)
	warmStrata(b, c, numKeys)
	keys, ctx := keyList(), context.Background()
	get := func(i int) bool {
		u, info, err := c.GetWithInfo(ctx, keys[i], nil)
		return err == nil && info.Tier == tiered.TierL1 && hasID(u, i)
	}
	for i := range numKeys { // every key must be in L1 before the clock starts
		if !get(i) {
			b.Fatalf("%s: %s is not in L1 after warming", name, keys[i])
		}
	}
	return localHitter{name: name, get: get}
}

func ristrettoHitter(b *testing.B, name string, entryTTL time.Duration) localHitter {
	rc := newRistretto(b)
	warmRistretto(b, rc, numKeys, entryTTL)
	keys := keyList()
	return localHitter{name: name, get: func(i int) bool {
		u, ok := rc.Get(keys[i])
		return ok && hasID(u, i)
	}}
}

func otterHitter(b *testing.B, name string, expiring bool) localHitter {
	oc := newOtter(b, expiring)
	warmOtter(oc, numKeys)
	keys := keyList()
	return localHitter{name: name, get: func(i int) bool {
		u, ok := oc.GetIfPresent(keys[i])
		return ok && hasID(u, i)
	}}
}

// goRedisCacheHitter: a local hit is a Get that sent nothing to Redis,
// which go-redis/cache's Stats count (hits and misses are Redis reads).
func goRedisCacheHitter(b *testing.B, addr string) localHitter {
	cd := newGoRedisCache(b, addr)
	warmGoRedisCache(b, cd, numKeys)
	keys, ctx := keyList(), context.Background()
	redisReads := func() uint64 { s := cd.Stats(); return s.Hits + s.Misses }
	return localHitter{
		name: "go-redis-cache",
		get: func(i int) bool {
			u := new(User)
			return cd.Get(ctx, keys[i], u) == nil && hasID(u, i)
		},
		verify: func() func(int) error {
			before := redisReads()
			return func(int) error {
				if d := redisReads() - before; d != 0 {
					return fmt.Errorf("%d reads went to Redis", d)
				}
				return nil
			}
		},
	}
}

func rueidisHitter(b *testing.B, addr string) localHitter {
	client := newRueidis(b, addr, true)
	setJSONRueidis(b, client, numKeys)
	fillRueidis(b, client, numKeys)
	keys, ctx := keyList(), context.Background()
	return localHitter{name: "rueidis-csc", get: func(i int) bool {
		u, hit, err := rueidisGet(ctx, client, keys[i])
		return err == nil && hit && hasID(u, i)
	}}
}

// goRedisCSCHitter: go-redis's client-side cache does not tell per read
// whether it answered; its CSCStats must have counted b.N more hits and no
// miss.
func goRedisCSCHitter(b *testing.B, addr string) localHitter {
	rdb := newGoRedisCSC(b, addr)
	setJSON(b, rdb, numKeys)
	fillGoRedisCSC(b, rdb, numKeys)
	keys, ctx := keyList(), context.Background()
	return localHitter{
		name: "go-redis-csc",
		get: func(i int) bool {
			data, err := rdb.Get(ctx, keys[i]).Bytes()
			if err != nil {
				return false
			}
			u, err := decodeJSON(data)
			return err == nil && hasID(u, i)
		},
		verify: func() func(int) error {
			before := rdb.CSCStats()
			return func(n int) error {
				s := rdb.CSCStats()
				if hits, misses := s.Hits-before.Hits, s.Misses-before.Misses; hits != uint64(n) || misses != 0 {
					return fmt.Errorf("%d reads: %d client-side cache hits, %d misses", n, hits, misses)
				}
				return nil
			}
		},
	}
}

// BenchmarkL2Hit compares a read answered by Redis, one at a time, with the
// local tier disabled or bypassed: Strata with L1 disabled (GET of its
// envelope, JSON decode), go-redis GET + json.Unmarshal, go-redis/cache
// GetSkippingLocalCache (msgpack; Item.SkipLocalCache would not do: it
// applies to Set, and Once still looks in the local cache first) and
// rueidis Do(GET) without client-side caching + DecodeJSON. Each contender
// has a Redis server of its own, holding the 1,000 keys; reads go round
// robin. Every read is checked to have come from Redis: per read for Strata
// (GetWithInfo's tier), by go-redis/cache's count of Redis hits after the
// loop; the plain clients have no other tier.
func BenchmarkL2Hit(b *testing.B) {
	addrs := startRedis(b, 4)
	ctx := context.Background()
	keys := keyList()
	b.Run("strata", func(b *testing.B) {
		c := newStrata(b, addrs[:1], tiered.L1Options{Disabled: true})
		warmStrata(b, c, numKeys)
		timeReads(b, func(i int) error {
			u, info, err := c.GetWithInfo(ctx, keys[i], nil)
			if err == nil && (info.Tier != tiered.TierL2 || !hasID(u, i)) {
				err = fmt.Errorf("tier %v, value %+v", info.Tier, u)
			}
			return err
		})
	})
	b.Run("go-redis", func(b *testing.B) {
		rdb := newGoRedis(b, addrs[1])
		setJSON(b, rdb, numKeys)
		timeReads(b, func(i int) error {
			data, err := rdb.Get(ctx, keys[i]).Bytes()
			if err != nil {
				return err
			}
			return checkJSON(data, i)
		})
	})
	b.Run("go-redis-cache", func(b *testing.B) {
		cd := newGoRedisCache(b, addrs[2])
		warmGoRedisCache(b, cd, numKeys)
		before := cd.Stats().Hits
		timeReads(b, func(i int) error {
			u := new(User)
			if err := cd.GetSkippingLocalCache(ctx, keys[i], u); err != nil {
				return err
			}
			return idError(u, i)
		})
		if d := cd.Stats().Hits - before; d != uint64(b.N) {
			b.Fatalf("%d reads, %d Redis hits", b.N, d)
		}
	})
	b.Run("rueidis", func(b *testing.B) {
		client := newRueidis(b, addrs[3], false)
		setJSONRueidis(b, client, numKeys)
		timeReads(b, func(i int) error {
			u := new(User)
			if err := client.Do(ctx, client.B().Get().Key(keys[i]).Build()).DecodeJSON(u); err != nil {
				return err
			}
			return idError(u, i)
		})
	})
}

// timeReads times b.N calls of read on one goroutine, over the keys round
// robin, failing at the first error.
func timeReads(b *testing.B, read func(i int) error) {
	b.ReportAllocs()
	b.ResetTimer()
	for n := 0; n < b.N; n++ {
		if err := read(n % numKeys); err != nil {
			b.Fatalf("read %d: %v", n, err)
		}
	}
	b.StopTimer()
}

// checkJSON decodes data as a user would and checks it is newUser(i).
func checkJSON(data []byte, i int) error {
	u, err := decodeJSON(data)
	if err != nil {
		return err
	}
	return idError(u, i)
}

// idError reports a u that is not the value of key(i).
func idError(u *User, i int) error {
	if !hasID(u, i) {
		return fmt.Errorf("%s holds %+v", key(i), u)
	}
	return nil
}

// getManyKeys is the batch size of BenchmarkGetMany.
const getManyKeys = 100

// BenchmarkGetMany compares a batch read of 100 keys, all in Redis, with
// every local tier disabled: it measures the L2 batch path (one round trip
// per server, or a pipeline) and the decoding of 100 values. On one node:
// Strata's GetMany (L1 disabled), one go-redis MGET and one rueidis MGET
// (Do), each value decoded from JSON. On 3 shards: Strata's GetMany over
// l2.Config{Addrs: 3 addresses} (a go-redis Ring inside, one pipeline per
// shard, shards in parallel) and a go-redis Ring pipeline of 100 GETs (the
// Ring splits it per shard and runs the shards in parallel; MGET cannot span
// a Ring's shards). rueidis has no client-side sharding over independent
// nodes (only Redis Cluster's slots), so it runs on one node only. Every
// batch is checked to hold the 100 right values.
func BenchmarkGetMany(b *testing.B) {
	keys := keyList()[:getManyKeys]
	ctx := context.Background()
	for _, shards := range []int{1, 3} {
		addrs := startRedis(b, shards)
		b.Run("shards="+strconv.Itoa(shards)+"/strata", func(b *testing.B) {
			c := newStrata(b, addrs, tiered.L1Options{Disabled: true})
			warmStrata(b, c, getManyKeys)
			timeBatches(b, func() error {
				got, err := c.GetMany(ctx, keys, nil)
				if err != nil {
					return err
				}
				for i, k := range keys {
					if err := idError(got[k], i); err != nil {
						return err
					}
				}
				return nil
			})
		})
		if shards == 1 {
			benchGetManyOneNode(b, addrs[0], keys)
			continue
		}
		b.Run("shards=3/go-redis", func(b *testing.B) {
			ring := newGoRedisRing(b, addrs)
			setJSON(b, ring, getManyKeys)
			cmds := make([]*redis.StringCmd, len(keys))
			timeBatches(b, func() error {
				_, err := ring.Pipelined(ctx, func(p redis.Pipeliner) error {
					for i, k := range keys {
						cmds[i] = p.Get(ctx, k)
					}
					return nil
				})
				if err != nil {
					return err
				}
				for i, cmd := range cmds {
					if err := checkJSON([]byte(cmd.Val()), i); err != nil {
						return err
					}
				}
				return nil
			})
		})
	}
}

// benchGetManyOneNode runs BenchmarkGetMany's single-node MGETs of go-redis
// and rueidis against the Redis at addr.
func benchGetManyOneNode(b *testing.B, addr string, keys []string) {
	ctx := context.Background()
	b.Run("shards=1/go-redis", func(b *testing.B) {
		rdb := newGoRedis(b, addr)
		setJSON(b, rdb, getManyKeys)
		timeBatches(b, func() error {
			vals, err := rdb.MGet(ctx, keys...).Result()
			if err != nil {
				return err
			}
			for i, v := range vals {
				s, _ := v.(string)
				if err := checkJSON([]byte(s), i); err != nil {
					return err
				}
			}
			return nil
		})
	})
	b.Run("shards=1/rueidis", func(b *testing.B) {
		client := newRueidis(b, addr, false)
		setJSONRueidis(b, client, getManyKeys)
		timeBatches(b, func() error {
			vals, err := client.Do(ctx, client.B().Mget().Key(keys...).Build()).ToArray()
			if err != nil {
				return err
			}
			for i := range vals {
				u := new(User)
				if err := vals[i].DecodeJSON(u); err != nil {
					return err
				}
				if err := idError(u, i); err != nil {
					return err
				}
			}
			return nil
		})
	})
}

// timeBatches times b.N calls of batch on one goroutine, failing at the
// first error.
func timeBatches(b *testing.B, batch func() error) {
	b.ReportAllocs()
	b.ResetTimer()
	for n := 0; n < b.N; n++ {
		if err := batch(); err != nil {
			b.Fatalf("batch %d: %v", n, err)
		}
	}
	b.StopTimer()
}

// mixedWriteEvery makes one operation in mixedWriteEvery a write: 90% reads,
// 10% writes.
const mixedWriteEvery = 10

// BenchmarkMixed compares 90% reads and 10% writes on two replicas of each
// contender over one Redis, one goroutine per replica, keys drawn Zipf (a
// few hot keys take most reads and writes): Strata (two tiered.Clients,
// invalidation over pub/sub), go-redis/cache (no invalidation between
// replicas at all: a write reaches its own TinyLFU and Redis, never the
// other replica's TinyLFU), rueidis and go-redis's client-side caches
// (writes are SETs; Redis's tracking invalidates every cached copy). Each
// key is written by one replica only (the one of its parity), so that
// writes of a key are ordered; both replicas read every key.
//
// It reports stale-reads/op: reads that started after the write of a newer
// version had been acknowledged (the writer's Set returned) and still
// returned an older version, over all operations. The count is raw, with no
// tolerance: Strata's guarantee to other replicas is bounded in time (about
// a millisecond on loopback), not immediate, so a handful of stale reads
// just after a write are expected from it; a contender without
// invalidation serves its old copy until its TTL, and counts every such read.
func BenchmarkMixed(b *testing.B) {
	for _, contender := range replicaContenders {
		b.Run(contender, func(b *testing.B) {
			addr := startRedis(b, 1)[0]
			reps := openReplicas(b, contender, addr, 2, func(i int) *User { return versioned(i, 0) })
			benchMixed(b, reps)
		})
	}
}

// versioned is newUser(i) at version v, which BenchmarkMixed keeps in Score.
func versioned(i int, v int64) *User {
	u := newUser(i)
	u.Score = float64(v)
	return u
}

// version is the version of a value made by versioned.
func version(u *User) int64 { return int64(u.Score) }

// benchMixed times b.N operations, split between the replicas of reps, each
// on a goroutine of its own, and reports the stale reads.
func benchMixed(b *testing.B, reps []replica) {
	ctx := context.Background()
	var acked [numKeys]atomic.Int64 // the newest version of each key whose write returned
	orders := workerOrders("zipf", len(reps))
	var failed atomic.Pointer[error]
	b.ReportAllocs()
	b.ResetTimer()
	stale := onGoroutines(b.N, len(reps), func(r, n int) (stale int) {
		rep, order := reps[r], orders[r]
		for j := range n {
			i := order[j&orderMask]
			if j%mixedWriteEvery == mixedWriteEvery-1 {
				i = i&^1 | r // a key of this replica's parity: its writes are this goroutine's alone
				v := acked[i].Load() + 1
				if err := rep.set(ctx, key(i), versioned(i, v)); err != nil {
					failed.CompareAndSwap(nil, &err)
					return stale
				}
				acked[i].Store(v)
				continue
			}
			want := acked[i].Load()
			u, err := rep.get(ctx, key(i))
			if err == nil {
				err = idError(u, i)
			}
			if err != nil {
				failed.CompareAndSwap(nil, &err)
				return stale
			}
			if version(u) < want {
				stale++
			}
		}
		return stale
	})
	b.StopTimer()
	if err := failed.Load(); err != nil {
		b.Fatal(*err)
	}
	b.ReportMetric(float64(stale)/float64(b.N), "stale-reads/op")
}
