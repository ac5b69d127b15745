package hitratio

import (
	"context"
	"fmt"
	"testing"
)

// TestStrataHoldsCapacityEntries checks strataEntryCost: an L1 sized for
// capacity entries takes capacity distinct keys without evicting or
// rejecting any, and serves them all from L1 after.
func TestStrataHoldsCapacityEntries(t *testing.T) {
	for _, capacity := range []int{100, 1000} {
		t.Run(fmt.Sprint(capacity), func(t *testing.T) {
			ctx := context.Background()
			client, cache, err := newStrata(ctx, capacity, nil)
			if err != nil {
				t.Fatal(err)
			}
			defer client.Close()
			load := func(context.Context, string) ([]byte, error) { return value, nil }
			for range 2 {
				for i := range capacity {
					k := fmt.Sprintf("%016x", i)
					if _, err := cache.Get(ctx, k, load); err != nil {
						t.Fatal(err)
					}
				}
			}
			s := cache.Stats()
			if s.L1.Entries != int64(capacity) || s.L1.Cost != int64(capacity)*strataEntryCost ||
				s.L1.Evicted != 0 || s.L1.Rejected != 0 || s.L1.Dropped != 0 {
				t.Fatalf("after %d keys: %+v, want %d entries costing %d each", capacity, s.L1, capacity, strataEntryCost)
			}
			if s.L1Hits != uint64(capacity) || s.Misses != uint64(capacity) {
				t.Fatalf("%d L1 hits and %d misses on the second pass, want %d and 0", s.L1Hits, s.Misses-uint64(capacity), capacity)
			}
			// One more key does not fit: it evicts, or is rejected.
			if _, err := cache.Get(ctx, fmt.Sprintf("%016x", capacity), load); err != nil {
				t.Fatal(err)
			}
			if s := cache.Stats(); s.L1.Entries > int64(capacity) || s.L1.Evicted+s.L1.Rejected != 1 {
				t.Fatalf("after one key more: %+v", s.L1)
			}
		})
	}
}
