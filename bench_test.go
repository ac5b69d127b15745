package strata_test

import (
	"context"
	"encoding/json"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dgraph-io/ristretto/v2"
	"github.com/redis/go-redis/v9"
	"github.com/strata-cache/strata/internal/redistest"
	"github.com/strata-cache/strata/l2"
	"github.com/strata-cache/strata/tiered"
)

// benchUser is the pointer-to-struct value the L1 benchmarks store.
type benchUser struct {
	ID    int
	Name  string
	Email string
}

const benchKeys = 1024

func benchKeyList() []string {
	keys := make([]string, benchKeys)
	for i := range keys {
		keys[i] = "user:" + strconv.Itoa(i)
	}
	return keys
}

// BenchmarkL1Hit measures a Get answered from L1. Compare with
// BenchmarkRawRistrettoGet in the same run.
func BenchmarkL1Hit(b *testing.B) { benchL1Hit(b, tiered.Config{}, "bench") }

// benchL1Hit fills a cache of namespace ns on a client made with cfg and
// measures its L1 hits under RunParallel; it returns the cache.
func benchL1Hit(b *testing.B, cfg tiered.Config, ns string) *tiered.Cache[*benchUser] {
	ctx := context.Background()
	client, err := tiered.NewClient(ctx, cfg)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = client.Close() })
	cache, err := tiered.NewCache(client, ns, tiered.Options[*benchUser]{TTL: time.Hour})
	if err != nil {
		b.Fatal(err)
	}
	keys := benchKeyList()
	for i, k := range keys {
		if err := cache.Set(ctx, k, &benchUser{ID: i, Name: k, Email: k + "@example.com"}); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		i := 0
		for pb.Next() {
			if _, err := cache.Get(ctx, keys[i%benchKeys], nil); err != nil {
				b.Fatal(err)
			}
			i++
		}
	})
	b.StopTimer()
	return cache
}

// BenchmarkL1HitAudit is BenchmarkL1Hit on a client with L2, with the
// consistency auditor off and sampling 1% of hits (issue 15: at most 1.05×
// the cost, 0 allocs on hits not sampled). The sampled hits are checked in
// the background against Redis, at most 100 a second.
func BenchmarkL1HitAudit(b *testing.B) {
	srv := redistest.Start(b)
	for _, tc := range []struct {
		name string
		rate float64
	}{{"off", 0}, {"1pct", 0.01}} {
		b.Run(tc.name, func(b *testing.B) {
			cache := benchL1Hit(b, tiered.Config{Redis: l2.Config{Addrs: []string{srv.Addr()}},
				Audit: tiered.AuditConfig{SampleRate: tc.rate}}, "bench-"+tc.name)
			if s := cache.Stats().Audit; tc.rate > 0 {
				b.ReportMetric(float64(s.Samples+s.Skipped)/float64(b.N), "sampled/op")
			}
		})
	}
}

// BenchmarkRawRistrettoGet is BenchmarkL1Hit's baseline: ristretto v2 alone
// with the same keys, values, TTL and parallelism.
func BenchmarkRawRistrettoGet(b *testing.B) {
	rc, err := ristretto.NewCache(&ristretto.Config[string, *benchUser]{
		NumCounters: (64 << 20) / 100, MaxCost: 64 << 20, BufferItems: 64, IgnoreInternalCost: true,
	})
	if err != nil {
		b.Fatal(err)
	}
	defer rc.Close()
	keys := benchKeyList()
	for i, k := range keys {
		rc.SetWithTTL(k, &benchUser{ID: i, Name: k, Email: k + "@example.com"}, 200, time.Hour)
		rc.Wait()
	}
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		i := 0
		for pb.Next() {
			if _, ok := rc.Get(keys[i%benchKeys]); !ok {
				b.Fatal("miss")
			}
			i++
		}
	})
}

// l2Bench is a cache with L1 disabled over redis, filled with keys, for the
// L2 benchmarks.
func l2Bench(b *testing.B, redisCfg l2.Config, keys []string) *tiered.Cache[*benchUser] {
	return l2BenchOf(b, redisCfg, keys, func(i int, k string) *benchUser {
		return &benchUser{ID: i, Name: k, Email: k + "@example.com"}
	})
}

func l2BenchOf[V any](b *testing.B, redisCfg l2.Config, keys []string, value func(int, string) V) *tiered.Cache[V] {
	b.Helper()
	ctx := context.Background()
	client, err := tiered.NewClient(ctx, tiered.Config{Redis: redisCfg})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = client.Close() })
	cache, err := tiered.NewCache(client, "bench", tiered.Options[V]{TTL: time.Hour, L1: tiered.L1Options{Disabled: true}})
	if err != nil {
		b.Fatal(err)
	}
	for i, k := range keys {
		if err := cache.Set(ctx, k, value(i, k)); err != nil {
			b.Fatal(err)
		}
	}
	return cache
}

// BenchmarkL2Hit measures a Get answered from Redis (L1 disabled): one GET,
// the envelope and the JSON decode, one call at a time. Compare with
// BenchmarkRawRedisGet; the Parallel variants load both cores.
func BenchmarkL2Hit(b *testing.B) { benchL2Hit(b, false) }

// BenchmarkL2HitParallel is BenchmarkL2Hit under RunParallel.
func BenchmarkL2HitParallel(b *testing.B) { benchL2Hit(b, true) }

// BenchmarkRawRedisGet is BenchmarkL2Hit's baseline: a go-redis GET of the
// same keys plus a JSON decode of the same value.
func BenchmarkRawRedisGet(b *testing.B) { benchRawRedisGet(b, false) }

// BenchmarkRawRedisGetParallel is BenchmarkRawRedisGet under RunParallel.
func BenchmarkRawRedisGetParallel(b *testing.B) { benchRawRedisGet(b, true) }

func benchL2Hit(b *testing.B, parallel bool) {
	srv := redistest.Start(b)
	keys := benchKeyList()
	cache := l2Bench(b, l2.Config{Addrs: []string{srv.Addr()}}, keys)
	ctx := context.Background()
	run(b, parallel, func(i int) {
		if _, err := cache.Get(ctx, keys[i%benchKeys], nil); err != nil {
			b.Fatal(err)
		}
	})
}

func benchRawRedisGet(b *testing.B, parallel bool) {
	srv := redistest.Start(b)
	rdb := redis.NewClient(&redis.Options{Addr: srv.Addr()})
	defer rdb.Close()
	ctx := context.Background()
	keys := benchKeyList()
	for i, k := range keys {
		v, _ := json.Marshal(&benchUser{ID: i, Name: k, Email: k + "@example.com"})
		if err := rdb.Set(ctx, k, v, time.Hour).Err(); err != nil {
			b.Fatal(err)
		}
	}
	run(b, parallel, func(i int) {
		data, err := rdb.Get(ctx, keys[i%benchKeys]).Bytes()
		if err != nil {
			b.Fatal(err)
		}
		var u benchUser
		if err := json.Unmarshal(data, &u); err != nil {
			b.Fatal(err)
		}
	})
}

// run calls op with a growing index b.N times, on one goroutine or under
// RunParallel, reporting allocations.
func run(b *testing.B, parallel bool, op func(i int)) {
	b.ReportAllocs()
	b.ResetTimer()
	if !parallel {
		for i := 0; b.Loop(); i++ {
			op(i)
		}
		return
	}
	b.RunParallel(func(pb *testing.PB) {
		for i := 0; pb.Next(); i++ {
			op(i)
		}
	})
}

// shardAddrs starts n Redis shards and returns their addresses.
func shardAddrs(b *testing.B, n int) []string {
	var addrs []string
	for _, s := range redistest.StartShards(b, n) {
		addrs = append(addrs, s.Addr())
	}
	return addrs
}

// BenchmarkGetMany100 measures GetMany of 100 keys spread over 3 shards, all
// in L2 (L1 disabled): one pipeline per shard, shards in parallel. Compare
// with BenchmarkRawSequentialGets100, and with BenchmarkRawRedisGet (the
// target is at most three single GETs).
func BenchmarkGetMany100(b *testing.B) {
	keys := benchKeyList()[:100]
	cache := l2Bench(b, l2.Config{Addrs: shardAddrs(b, 3)}, keys)
	benchGetMany(b, cache, keys)
}

// BenchmarkGetMany100Bytes is BenchmarkGetMany100 with []byte values, which
// need no decoding: the cost of the per-shard pipelines alone.
func BenchmarkGetMany100Bytes(b *testing.B) {
	keys := benchKeyList()[:100]
	cache := l2BenchOf(b, l2.Config{Addrs: shardAddrs(b, 3)}, keys, func(i int, k string) []byte {
		v, _ := json.Marshal(&benchUser{ID: i, Name: k, Email: k + "@example.com"})
		return v
	})
	benchGetMany(b, cache, keys)
}

// benchGetMany times lookups of keys, all present in L2.
func benchGetMany[V any](b *testing.B, cache *tiered.Cache[V], keys []string) {
	ctx := context.Background()
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		got, err := cache.GetMany(ctx, keys, nil)
		if err != nil || len(got) != len(keys) {
			b.Fatalf("GetMany: %d values, %v", len(got), err)
		}
	}
}

// BenchmarkRawRingPipeline100 is the best a hand-written go-redis program
// does for BenchmarkGetMany100Bytes: one Ring pipeline of 100 GETs over the
// same 3 shards, no decoding.
func BenchmarkRawRingPipeline100(b *testing.B) {
	ring := benchRing(b)
	ctx := context.Background()
	keys := benchKeyList()[:100]
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		cmds, err := ring.Pipelined(ctx, func(p redis.Pipeliner) error {
			for _, k := range keys {
				p.Get(ctx, k)
			}
			return nil
		})
		if err != nil || len(cmds) != len(keys) {
			b.Fatal(err)
		}
	}
}

// benchRing is a go-redis Ring over 3 fresh shards holding the first 100
// benchmark keys as JSON.
func benchRing(b *testing.B) *redis.Ring {
	shards := map[string]string{}
	for i, a := range shardAddrs(b, 3) {
		shards["shard"+strconv.Itoa(i)] = a
	}
	ring := redis.NewRing(&redis.RingOptions{Addrs: shards})
	b.Cleanup(func() { _ = ring.Close() })
	ctx := context.Background()
	for i, k := range benchKeyList()[:100] {
		v, _ := json.Marshal(&benchUser{ID: i, Name: k, Email: k + "@example.com"})
		if err := ring.Set(ctx, k, v, time.Hour).Err(); err != nil {
			b.Fatal(err)
		}
	}
	return ring
}

// BenchmarkRawSequentialGets100 is BenchmarkGetMany100's baseline: 100 GETs
// one after another through a go-redis Ring over 3 shards, plus decode.
func BenchmarkRawSequentialGets100(b *testing.B) {
	ring := benchRing(b)
	ctx := context.Background()
	keys := benchKeyList()[:100]
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		for _, k := range keys {
			data, err := ring.Get(ctx, k).Bytes()
			if err != nil {
				b.Fatal(err)
			}
			var u benchUser
			if err := json.Unmarshal(data, &u); err != nil {
				b.Fatal(err)
			}
		}
	}
}

// BenchmarkStampede sends 3 replicas × 16 goroutines at once at each cold
// key, the loader taking 1 ms like a fast database query. It reports loads
// per key (the target is 1: one load for the whole cluster) and the p99
// latency of the Gets.
func BenchmarkStampede(b *testing.B) {
	srv := redistest.Start(b)
	ctx := context.Background()
	var caches []*tiered.Cache[string]
	for range 3 {
		client, err := tiered.NewClient(ctx, tiered.Config{Redis: l2.Config{Addrs: []string{srv.Addr()}}})
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { _ = client.Close() })
		cache, err := tiered.NewCache(client, "stampede", tiered.Options[string]{TTL: time.Hour})
		if err != nil {
			b.Fatal(err)
		}
		caches = append(caches, cache)
	}
	var loads atomic.Int64
	load := func(context.Context, string) (string, error) {
		loads.Add(1)
		time.Sleep(time.Millisecond) // the database's latency
		return "value", nil
	}
	const perReplica = 16
	var latencies []time.Duration
	var mu sync.Mutex
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		key := "cold:" + strconv.Itoa(i)
		var wg sync.WaitGroup
		for _, c := range caches {
			for range perReplica {
				wg.Go(func() {
					start := time.Now()
					if _, err := c.Get(ctx, key, load); err != nil {
						b.Error(err)
					}
					d := time.Since(start)
					mu.Lock()
					latencies = append(latencies, d)
					mu.Unlock()
				})
			}
		}
		wg.Wait()
	}
	b.StopTimer()
	slices.Sort(latencies)
	b.ReportMetric(float64(loads.Load())/float64(b.N), "loads/key")
	b.ReportMetric(float64(latencies[len(latencies)*99/100].Microseconds())/1000, "p99-ms")
}

// BenchmarkL1HitEarlyRefresh is BenchmarkL1Hit with a loader passed to Get
// and entries that carry a load duration, with XFetch on (beta 1) and off:
// the early-refresh check must cost a hit almost nothing.
func BenchmarkL1HitEarlyRefresh(b *testing.B) {
	for _, tc := range []struct {
		name string
		beta float64
	}{{"on", 1}, {"off", -1}} {
		b.Run(tc.name, func(b *testing.B) {
			ctx := context.Background()
			client, err := tiered.NewClient(ctx, tiered.Config{})
			if err != nil {
				b.Fatal(err)
			}
			defer client.Close()
			cache, err := tiered.NewCache(client, "bench", tiered.Options[*benchUser]{TTL: time.Hour, EarlyRefreshBeta: tc.beta})
			if err != nil {
				b.Fatal(err)
			}
			load := func(_ context.Context, k string) (*benchUser, error) {
				return &benchUser{Name: k, Email: k + "@example.com"}, nil
			}
			keys := benchKeyList()
			for _, k := range keys {
				if _, err := cache.Get(ctx, k, load); err != nil {
					b.Fatal(err)
				}
			}
			run(b, true, func(i int) {
				if _, err := cache.Get(ctx, keys[i%benchKeys], load); err != nil {
					b.Fatal(err)
				}
			})
		})
	}
}

// BenchmarkSet measures a Set on a single Redis with L1 on: the L2 write
// (value and lease in one script), the namespace check, the L1 install and
// the pub/sub publish, one call at a time. Compare with BenchmarkRawRedisSet.
func BenchmarkSet(b *testing.B) { benchSetWith(b, tiered.Options[*benchUser]{}) }

// BenchmarkRawRedisSet is BenchmarkSet's baseline: a JSON encode and a
// go-redis SET with a TTL, no invalidation.
func BenchmarkRawRedisSet(b *testing.B) {
	srv := redistest.Start(b)
	rdb := redis.NewClient(&redis.Options{Addr: srv.Addr()})
	defer rdb.Close()
	ctx := context.Background()
	keys := benchKeyList()
	users := make([]*benchUser, len(keys))
	for i, k := range keys {
		users[i] = &benchUser{ID: i, Name: k, Email: k + "@example.com"}
	}
	run(b, false, func(i int) {
		v, err := json.Marshal(users[i%benchKeys])
		if err != nil {
			b.Fatal(err)
		}
		if err := rdb.Set(ctx, keys[i%benchKeys], v, time.Hour).Err(); err != nil {
			b.Fatal(err)
		}
	})
}
