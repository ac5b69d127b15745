package strata_test

import (
	"context"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/strata-cache/strata/internal/redistest"
	"github.com/strata-cache/strata/l2"
	"github.com/strata-cache/strata/tiered"
)

// BenchmarkGetShardHung measures Gets of the keys of one shard of three, L1
// disabled: "healthy" with every shard up, then "hung" after that shard was
// stopped (SIGSTOP) and its breaker tripped, so its keys are served by the
// stand-in shards. The target is hung ≤ 2× healthy.
func BenchmarkGetShardHung(b *testing.B) {
	shards := redistest.StartShards(b, 3)
	var addrs []string
	for _, s := range shards {
		addrs = append(addrs, s.Addr())
	}
	all := benchKeyList()
	ctx := context.Background()
	client, err := tiered.NewClient(ctx, tiered.Config{Redis: l2.Config{Addrs: addrs}})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = client.Close() })
	cache, err := tiered.NewCache(client, "bench", tiered.Options[*benchUser]{TTL: time.Hour, L1: tiered.L1Options{Disabled: true}})
	if err != nil {
		b.Fatal(err)
	}
	// A Store of its own, on the same shards, names the keys as the
	// client's does.
	store, err := l2.Open(l2.Config{Addrs: addrs})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = store.Close() })
	ring := client.Redis().(*redis.Ring)
	victim := shards[1]
	var keys []string
	for _, k := range all {
		if c, err := ring.GetShardClientForKey(store.Key("bench", k)); err == nil && c.Options().Addr == victim.Addr() {
			keys = append(keys, k)
		}
	}
	load := func(_ context.Context, k string) (*benchUser, error) {
		return &benchUser{Name: k, Email: k + "@example.com"}, nil
	}
	get := func(i int) {
		if _, err := cache.Get(ctx, keys[i%len(keys)], load); err != nil {
			b.Fatal(err)
		}
	}
	b.Run("healthy", func(b *testing.B) { run(b, false, get) })

	victim.Pause()
	b.Cleanup(victim.Resume)
	for _, k := range keys { // trips the breaker, then fills the stand-ins
		if _, err := cache.Get(ctx, k, load); err != nil {
			b.Fatal(err)
		}
	}
	redistest.WaitFor(b, 10*time.Second, func() bool {
		for _, h := range store.Health() {
			if h.Addr == victim.Addr() {
				return !h.Serving
			}
		}
		return false
	}, "the hung shard leaves the routing")
	for _, k := range keys {
		if _, err := cache.Get(ctx, k, load); err != nil {
			b.Fatal(err)
		}
	}
	b.Run("hung", func(b *testing.B) { run(b, false, get) })
}
