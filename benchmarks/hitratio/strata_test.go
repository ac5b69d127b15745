package hitratio

import (
	"context"
	"fmt"
	"testing"

	"github.com/strata-cache/strata/l1"
	"github.com/strata-cache/strata/tiered"
)

// TestStrataHoldsCapacityEntries checks strataEntryCost on both engines: an
// L1 sized for capacity entries takes capacity distinct keys without
// evicting or rejecting any and serves them all from L1 after; one key
// more does not fit.
func TestStrataHoldsCapacityEntries(t *testing.T) {
	engines := []struct {
		name string
		opts func(*tiered.L1Options)
	}{
		{"ristretto", nil},
		{"otter", func(o *tiered.L1Options) { o.Engine = l1.Otter }},
	}
	for _, e := range engines {
		for _, capacity := range []int{100, 1000} {
			t.Run(fmt.Sprint(e.name, "/", capacity), func(t *testing.T) { holdsCapacity(t, capacity, e.opts) })
		}
	}
}

func holdsCapacity(t *testing.T, capacity int, l1opts func(*tiered.L1Options)) {
	ctx := context.Background()
	client, cache, err := newStrata(ctx, capacity, l1opts)
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	load := func(context.Context, string) ([]byte, error) { return value, nil }
	get := func(i int) {
		t.Helper()
		if _, err := cache.Get(ctx, fmt.Sprintf("%016x", i), load); err != nil {
			t.Fatal(err)
		}
	}
	for range 2 {
		for i := range capacity {
			get(i)
		}
	}
	s := cache.Stats()
	if s.L1.Entries != int64(capacity) || s.L1.Cost != int64(capacity)*strataEntryCost ||
		s.L1.Evicted != 0 || s.L1.Rejected != 0 || s.L1.Dropped != 0 {
		t.Fatalf("after %d keys: %+v, want %d entries costing %d each", capacity, s.L1, capacity, strataEntryCost)
	}
	if s.L1Hits != uint64(capacity) || s.Misses != uint64(capacity) {
		t.Fatalf("second pass: %d L1 hits and %d misses, want %d and 0", s.L1Hits, s.Misses-uint64(capacity), capacity)
	}
	get(capacity)
	if s := cache.Stats(); s.L1.Entries > int64(capacity) || s.L1.Cost > int64(capacity)*strataEntryCost {
		t.Fatalf("after one key more: %+v", s.L1)
	}
}
