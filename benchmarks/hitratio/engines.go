package hitratio

import (
	"github.com/dgraph-io/ristretto/v2"
	"github.com/maypok86/otter/v2"
)

// value is what every real cache stores: 8 bytes, the same for every key.
var value = make([]byte, valueSize)

const valueSize = 8

// replayRistretto replays w through raw ristretto, configured as its
// README advises for a cache of capacity entries: ten counters per entry,
// cost 1 per item. A miss sets the key and waits for ristretto to apply it,
// so the replay runs on one goroutine, like Strata's synchronous L1.
func replayRistretto(w *workload, capacity int) (int64, error) {
	return replayRistrettoWith(w, ristrettoSetup{
		counters: 10 * int64(capacity), maxCost: int64(capacity), cost: 1, getsPerMiss: 1,
	})
}

// ristrettoSetup is a raw ristretto configuration and access pattern.
type ristrettoSetup struct {
	counters, maxCost, cost int64
	// getsPerMiss is how many Gets a miss makes before its Set: 1 for a
	// plain cache-aside user (diagnose.go tries more).
	getsPerMiss int
}

func replayRistrettoWith(w *workload, s ristrettoSetup) (int64, error) {
	rc, err := ristretto.NewCache(&ristretto.Config[string, []byte]{
		NumCounters: s.counters, MaxCost: s.maxCost, BufferItems: 64, IgnoreInternalCost: true,
	})
	if err != nil {
		return 0, err
	}
	defer rc.Close()
	var hits int64
	for _, id := range w.ids {
		w.pause()
		key := w.names[id]
		if _, ok := rc.Get(key); ok {
			hits++
			continue
		}
		for range s.getsPerMiss - 1 {
			rc.Get(key)
		}
		rc.Set(key, value, s.cost)
		rc.Wait()
	}
	return hits, nil
}

// replayOtter replays w through raw otter v2 bounded at capacity entries.
func replayOtter(w *workload, capacity int) (int64, error) {
	c, err := otter.New(&otter.Options[string, []byte]{MaximumSize: capacity})
	if err != nil {
		return 0, err
	}
	defer c.StopAllGoroutines()
	var hits int64
	for _, id := range w.ids {
		w.pause()
		key := w.names[id]
		if _, ok := c.GetIfPresent(key); ok {
			hits++
			continue
		}
		c.Set(key, value)
	}
	return hits, nil
}
