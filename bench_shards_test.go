package strata_test

import (
	"context"
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/strata-cache/strata/l2"
)

// shardCounts are the L2 sizes BenchmarkGetManyShards compares: a single
// node (go-redis Client) and rings of 3 and 5 shards (go-redis Ring).
var shardCounts = []int{1, 3, 5}

// BenchmarkGetManyShards measures GetMany of 100 keys with []byte values, all
// in L2 (L1 disabled, as in BenchmarkGetMany100Bytes), over 1, 3 and 5 Redis
// shards (shards=N), beside the best a hand-written go-redis program does
// with the same servers and keys: one pipeline of 100 GETs, no decoding
// (raw/shards=N). Each pair shares its servers, so shards=N / raw/shards=N is
// Strata's overhead at that size; how either grows with N is the cost of
// spreading a batch over more shards.
func BenchmarkGetManyShards(b *testing.B) {
	keys := benchKeyList()[:100]
	addrs := make(map[int][]string, len(shardCounts))
	for _, n := range shardCounts {
		addrs[n] = shardAddrs(b, n)
	}
	for _, n := range shardCounts {
		b.Run(fmt.Sprintf("shards=%d", n), func(b *testing.B) {
			cache := l2BenchOf(b, l2.Config{Addrs: addrs[n]}, keys, benchUserJSON)
			benchGetMany(b, cache, keys)
		})
	}
	for _, n := range shardCounts {
		b.Run(fmt.Sprintf("raw/shards=%d", n), func(b *testing.B) {
			benchRawPipeline(b, rawShards(b, addrs[n], keys), keys)
		})
	}
}

// benchUserJSON is the []byte value of key k: the JSON of its benchUser.
func benchUserJSON(i int, k string) []byte {
	v, _ := json.Marshal(&benchUser{ID: i, Name: k, Email: k + "@example.com"})
	return v
}

// rawShards returns the go-redis client l2 would build for addrs (a Client
// for one address, else a Ring with l2's shard names, so keys land on the
// same shards), holding keys as JSON.
func rawShards(b *testing.B, addrs []string, keys []string) redis.UniversalClient {
	b.Helper()
	var rdb redis.UniversalClient
	if len(addrs) == 1 {
		rdb = redis.NewClient(&redis.Options{Addr: addrs[0]})
	} else {
		shards := make(map[string]string, len(addrs))
		for i, a := range addrs {
			shards[fmt.Sprintf("shard%d", i)] = a
		}
		rdb = redis.NewRing(&redis.RingOptions{Addrs: shards})
	}
	b.Cleanup(func() { _ = rdb.Close() })
	ctx := context.Background()
	for i, k := range keys {
		if err := rdb.Set(ctx, k, benchUserJSON(i, k), time.Hour).Err(); err != nil {
			b.Fatal(err)
		}
	}
	return rdb
}

// benchRawPipeline times one pipeline of a GET per key, checking every reply.
func benchRawPipeline(b *testing.B, rdb redis.UniversalClient, keys []string) {
	ctx := context.Background()
	cmds := make([]*redis.StringCmd, len(keys))
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		_, err := rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
			for i, k := range keys {
				cmds[i] = p.Get(ctx, k)
			}
			return nil
		})
		if err != nil {
			b.Fatal(err)
		}
		for _, cmd := range cmds {
			if _, err := cmd.Bytes(); err != nil {
				b.Fatal(err)
			}
		}
	}
}
