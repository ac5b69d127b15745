package hitratio

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/strata-cache/strata/l1"
	"github.com/strata-cache/strata/tiered"
)

const (
	// keySize is the length of every key: 16 hex digits (workload.names).
	keySize = 16
	// l1EntryOverhead is l1's entryOverhead: the fixed cost l1.Cache adds to
	// every entry's value size and key length (l1/l1.go).
	l1EntryOverhead = 128
	// strataEntryCost is what Strata's L1 charges for each entry here, 160:
	// the []byte value is stored unencoded, so its size is valueSize
	// (tiered/codec.go, tiered/lease.go), and the L1 key is the key itself,
	// without the namespace (tiered/read.go installL1).
	// TestStrataHoldsCapacityEntries checks it.
	strataEntryCost = valueSize + keySize + l1EntryOverhead
	// replayTTL outlives any replay: nothing expires.
	replayTTL = 24 * time.Hour
	// namespace is the replays' Strata namespace.
	namespace = "hitratio"
)

// replayStrata replays w through Strata's L1 (ristretto engine) by the
// public API: a Client without Redis, a Cache with an L1 of capacity
// entries, and a Get with a loader per request; a miss is a loader call.
func replayStrata(w *workload, capacity int) (int64, error) {
	return replayStrataWith(w, capacity, nil)
}

// replayStrataOtter is replayStrata with the otter engine under L1
// (tiered.L1Options.Engine).
func replayStrataOtter(w *workload, capacity int) (int64, error) {
	return replayStrataWith(w, capacity, func(o *tiered.L1Options) { o.Engine = l1.Otter })
}

// replayStrataWith is replayStrata with the L1 options changed by l1opts
// (nil: none), for other engines.
func replayStrataWith(w *workload, capacity int, l1opts func(*tiered.L1Options)) (int64, error) {
	ctx := context.Background()
	client, cache, err := newStrata(ctx, capacity, l1opts)
	if err != nil {
		return 0, err
	}
	defer client.Close()
	var loads int64
	load := func(context.Context, string) ([]byte, error) {
		loads++
		return value, nil
	}
	for _, id := range w.ids {
		w.pause()
		if _, err := cache.Get(ctx, w.names[id], load); err != nil {
			return 0, err
		}
	}
	if s := cache.Stats(); s.L1Hits+s.Misses != uint64(len(w.ids)) || s.Misses != uint64(loads) {
		return 0, fmt.Errorf("stats disagree with the replay: %d L1 hits and %d misses, %d loads for %d requests",
			s.L1Hits, s.Misses, loads, len(w.ids))
	}
	return int64(len(w.ids)) - loads, nil
}

// newStrata returns a client without Redis and a cache whose L1 holds
// capacity entries of strataEntryCost, where nothing expires.
func newStrata(ctx context.Context, capacity int, l1opts func(*tiered.L1Options)) (*tiered.Client, *tiered.Cache[[]byte], error) {
	client, err := tiered.NewClient(ctx, tiered.Config{Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		return nil, nil, err
	}
	opts := tiered.Options[[]byte]{
		TTL: replayTTL, Jitter: tiered.Off, EarlyRefreshBeta: tiered.Off,
		L1: tiered.L1Options{MaxCost: int64(capacity) * strataEntryCost, MaxTTL: replayTTL},
	}
	if l1opts != nil {
		l1opts(&opts.L1)
	}
	cache, err := tiered.NewCache(client, namespace, opts)
	if err != nil {
		client.Close()
		return nil, nil, err
	}
	return client, cache, nil
}
