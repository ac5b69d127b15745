package hitratio

import (
	"github.com/dgraph-io/ristretto/v2"
	"github.com/maypok86/otter/v2"
)

// value is what every real cache stores: the same for every key.
var value = make([]byte, valueSize)

// valueSize makes Strata's entry cost 160 bytes (strataEntryCost), the size
// l1's defaults are tuned for: its default NumCounters, MaxCost/16, is then
// exactly ten per entry, as raw ristretto gets here. (At 8 bytes, 152 per
// entry, Strata would get 9.5 counters per entry, and ristretto's sketch
// ages at another period: LIRS LOOP at 500, a loop of 1,011 keys, is 6%
// lower for that alone.)
const valueSize = 16

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
	get := func(key string) bool { _, ok := rc.Get(key); return ok }
	return replayCache(w, get, func(key string) { rc.Set(key, value, s.cost); rc.Wait() }, s.getsPerMiss), nil
}

// replayOtter replays w through raw otter v2 bounded at capacity entries,
// its maintenance run on the replaying goroutine (a synchronous Executor)
// so that it holds no more than capacity. Left to its own goroutines, otter
// evicts after the writes: in a replay's tight loop it is over capacity
// after almost every Set (on Corda up to 3.6× at 100 entries, 1.3× at 800,
// 1.1× at 3,200), and the extra entries are extra hits ("otter-async").
func replayOtter(w *workload, capacity int) (int64, error) {
	return replayOtterWith(w, &otter.Options[string, []byte]{MaximumSize: capacity, Executor: runNow}, 1)
}

// replayOtterSized is replayOtter with otter's InitialCapacity hint set to
// capacity, as Strata's otter engine sets it (l1's newOtterStore: MaxCost
// over the smallest entry's cost). With the hint otter builds its
// frequency sketch at once, at that size, and counts every access from
// the first; without it otter builds the sketch when the cache is first
// half full and counts nothing before. Raw otter with the hint is the
// engine as Strata configures it, so strata-otter is judged against it:
// the hint moves otter's own ratio at some points (ARC P3 at 100,000
// entries: 0.956 of otter without it, two runs; LIRS GLI at 500 to 1,000:
// 1.18 to 1.35), which is otter's policy, not Strata's layer. (Weighted,
// as Strata bounds it, otter without the hint would size the sketch by
// the entries it holds when half full, half as many, and age it twice as
// often: 0.91 to 0.95 of otter on LIRS LOOP at 250 to 750, 0.88 to 0.90
// on GLI at 250, 750 and 1,000, three runs each.)
func replayOtterSized(w *workload, capacity int) (int64, error) {
	return replayOtterWith(w, &otter.Options[string, []byte]{
		MaximumSize: capacity, InitialCapacity: capacity, Executor: runNow,
	}, 1)
}

// runNow is a synchronous otter Executor.
func runNow(fn func()) { fn() }

// replayOtterWith replays w through raw otter configured by opts, making
// gets GetIfPresent calls on a miss (diagnose.go tries more than one).
func replayOtterWith(w *workload, opts *otter.Options[string, []byte], gets int) (int64, error) {
	c, err := otter.New(opts)
	if err != nil {
		return 0, err
	}
	defer c.StopAllGoroutines()
	get := func(key string) bool { _, ok := c.GetIfPresent(key); return ok }
	return replayCache(w, get, func(key string) { c.Set(key, value) }, gets), nil
}

// replayCache replays w through a cache given by its lookup and its fill:
// a hit counts, a miss makes gets lookups in all (a user who looks twice
// before filling makes two; diagnose.go tries that) and then fills the key.
func replayCache(w *workload, get func(key string) bool, fill func(key string), gets int) int64 {
	var hits int64
	for _, id := range w.ids {
		w.pause()
		key := w.names[id]
		if get(key) {
			hits++
			continue
		}
		for range gets - 1 {
			get(key)
		}
		fill(key)
	}
	return hits
}
