package tiered_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"

	"github.com/strata-cache/strata/internal/redistest"
	"github.com/strata-cache/strata/l2"
	"github.com/strata-cache/strata/tiered"
)

// batchRecorder is a BatchLoader that records the keys of each call.
type batchRecorder struct {
	mu    sync.Mutex
	calls [][]string
	skip  map[string]bool // keys reported as not found
}

func (b *batchRecorder) load(_ context.Context, keys []string) (map[string]string, error) {
	b.mu.Lock()
	b.calls = append(b.calls, slices.Clone(keys))
	b.mu.Unlock()
	out := make(map[string]string, len(keys))
	for _, k := range keys {
		if !b.skip[k] {
			out[k] = "v:" + k
		}
	}
	return out, nil
}

func TestGetManyAcrossTopologies(t *testing.T) {
	tests := []struct {
		name  string
		redis func(t *testing.T) l2.Config
	}{
		{"single", func(t *testing.T) l2.Config { return l2.Config{Addrs: []string{redistest.Start(t).Addr()}} }},
		{"ring of 3 shards", func(t *testing.T) l2.Config {
			var addrs []string
			for _, s := range redistest.StartShards(t, 3) {
				addrs = append(addrs, s.Addr())
			}
			return l2.Config{Addrs: addrs}
		}},
		{"cluster of 3 masters", func(t *testing.T) l2.Config {
			return l2.Config{ClusterAddrs: redistest.StartCluster(t, 3).Addrs()}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) { testGetMany(t, tt.redis(t)) })
	}
}

func testGetMany(t *testing.T, redis l2.Config) {
	ctx := context.Background()
	cfg := tiered.Config{Redis: redis}
	a := newCache(t, newClient(t, cfg), "users", tiered.Options[string]{})
	b := newCache(t, newClient(t, cfg), "users", tiered.Options[string]{})
	keys := make([]string, 30)
	for i := range keys {
		keys[i] = fmt.Sprintf("user:%d", i)
	}
	// Replica A caches the first 10 in L1 (and L2).
	for _, k := range keys[:10] {
		if _, err := a.Get(ctx, k, func(_ context.Context, k string) (string, error) { return "v:" + k, nil }); err != nil {
			t.Fatal(err)
		}
	}
	rec := &batchRecorder{skip: map[string]bool{"user:29": true}}
	got, err := a.GetMany(ctx, append(keys, "user:0"), rec.load) // a duplicate key too
	if err != nil {
		t.Fatal(err)
	}
	if len(rec.calls) != 1 || !slices.Equal(rec.calls[0], keys[10:]) {
		t.Fatalf("batch loader calls %v, want one call with keys 10..29", rec.calls)
	}
	if len(got) != 29 || got["user:5"] != "v:user:5" || got["user:15"] != "v:user:15" {
		t.Fatalf("GetMany returned %d values: %v", len(got), got)
	}
	if _, ok := got["user:29"]; ok {
		t.Error("a key the loader did not return is in the result")
	}
	// Replica B finds everything A loaded in L2 without loading.
	recB := &batchRecorder{}
	gotB, err := b.GetMany(ctx, keys[:29], recB.load)
	if err != nil || len(gotB) != 29 || len(recB.calls) != 0 {
		t.Fatalf("replica B: %d values, err %v, loader calls %v; want all from L2", len(gotB), err, recB.calls)
	}
	if s := b.Stats(); s.L2Hits != 29 {
		t.Errorf("replica B stats %+v, want 29 L2 hits", s)
	}
	// And a lookup-only GetMany on B now answers from L1.
	if got, err := b.GetMany(ctx, keys, nil); err != nil || len(got) != 29 {
		t.Fatalf("lookup GetMany: %d values, %v", len(got), err)
	}
}

func TestGetManyNegativeAndErrors(t *testing.T) {
	ctx := context.Background()
	c, _ := newRedisClient(t, tiered.Config{})
	cache := newCache(t, c, "users", tiered.Options[string]{NegativeTTL: 60e9})
	rec := &batchRecorder{skip: map[string]bool{"b": true}}
	for range 2 {
		got, err := cache.GetMany(ctx, []string{"a", "b"}, rec.load)
		if err != nil || len(got) != 1 || got["a"] != "v:a" {
			t.Fatalf("GetMany = %v, %v", got, err)
		}
	}
	if len(rec.calls) != 1 {
		t.Errorf("loader calls %v; the missing key should be negative-cached", rec.calls)
	}
	boom := errors.New("db down")
	got, err := cache.GetMany(ctx, []string{"a", "c"}, func(context.Context, []string) (map[string]string, error) { return nil, boom })
	if !errors.Is(err, boom) || got["a"] != "v:a" {
		t.Fatalf("GetMany with failing loader = %v, %v; want the cached value and the error", got, err)
	}
}
