package strata_test

import (
	"context"
	"strconv"
	"testing"
	"time"

	"github.com/dgraph-io/ristretto/v2"
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
func BenchmarkL1Hit(b *testing.B) {
	ctx := context.Background()
	client, err := tiered.NewClient(ctx, tiered.Config{})
	if err != nil {
		b.Fatal(err)
	}
	defer client.Close()
	cache, err := tiered.NewCache(client, "bench", tiered.Options[*benchUser]{TTL: time.Hour})
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
