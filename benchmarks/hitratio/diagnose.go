package hitratio

import (
	"fmt"
	"time"

	"github.com/strata-cache/strata/l1"
)

// Diagnostic policies: raw ristretto and Strata's l1 package configured
// and driven the ways Strata's read path differs from a plain cache-aside
// user of ristretto, to tell which difference costs hit ratio.
//
//   - "-l1cfg": the counters Strata's L1 gets by default, l1.Config's
//     max(MaxCost/16, 1000) with MaxCost in bytes (capacity ×
//     strataEntryCost; until main's 738ed94 it was MaxCost/100), and each
//     entry costing strataEntryCost;
//   - "-<n>get": n ristretto Gets of the key on a miss instead of one.
//     tiered.Cache.Get makes 4 on a miss without L2 (its L1 check, then
//     staleL1 in getSlow, staleL1 and freshL1 in fetch), and every Get
//     counts in TinyLFU's sketch;
//   - "l1...": the l1 package itself (SetIf under a fence, SetWithTTL,
//     OnExit bookkeeping) with ten counters per entry ("l1") or its
//     default counters ("l1-default").
func init() {
	for gets := 1; gets <= 4; gets++ {
		suffix := fmt.Sprintf("-%dget", gets)
		if gets > 1 {
			registry["ristretto"+suffix] = ristrettoVariant(false, gets)
			registry["l1"+suffix] = l1Variant(false, gets)
			registry["l1-default"+suffix] = l1Variant(true, gets)
		}
		registry["ristretto-l1cfg"+suffix] = ristrettoVariant(true, gets)
	}
	registry["l1"] = l1Variant(false, 1)
	registry["l1-default"] = l1Variant(true, 1)
}

// l1CounterBytes is l1's counterBytes: l1.Config's default NumCounters
// is max(MaxCost/l1CounterBytes, 1000).
const l1CounterBytes = (l1EntryOverhead + 32) / 10

// strataCounters is l1.Config's default NumCounters for an L1 of capacity
// entries of strataEntryCost.
func strataCounters(capacity int) int64 {
	return max(int64(capacity)*strataEntryCost/l1CounterBytes, 1000)
}

// ristrettoVariant is raw ristretto with Strata's L1 configuration
// (l1cfg) or the advised one, making gets Gets on a miss.
func ristrettoVariant(l1cfg bool, gets int) policyFunc {
	return func(w *workload, capacity int) (int64, error) {
		s := ristrettoSetup{counters: 10 * int64(capacity), maxCost: int64(capacity), cost: 1, getsPerMiss: gets}
		if l1cfg {
			s = ristrettoSetup{counters: strataCounters(capacity), maxCost: int64(capacity) * strataEntryCost,
				cost: strataEntryCost, getsPerMiss: gets}
		}
		return replayRistrettoWith(w, s)
	}
}

// l1Variant is Strata's l1.Cache used directly as tiered uses it without
// L2 (a fence, then SetIf), with its default counters or ten per entry,
// making gets Gets on a miss.
func l1Variant(defaultCounters bool, gets int) policyFunc {
	return func(w *workload, capacity int) (int64, error) {
		cfg := l1.Config{MaxCost: int64(capacity) * strataEntryCost, MaxTTL: replayTTL}
		if !defaultCounters {
			cfg.NumCounters = 10 * int64(capacity)
		}
		c, err := l1.New[[]byte](cfg)
		if err != nil {
			return 0, err
		}
		defer c.Close()
		var hits int64
		for _, id := range w.ids {
			w.pause()
			key := w.names[id]
			if _, ok := c.Get(key); ok {
				hits++
				continue
			}
			for range gets - 1 {
				c.Get(key)
			}
			now := time.Now().UnixNano()
			f := c.Begin(key)
			e := &l1.Entry[[]byte]{Key: key, Value: value, Size: valueSize,
				FreshUntil: now + int64(replayTTL), StaleUntil: now + int64(replayTTL)}
			c.SetIf(e, f, now)
		}
		return hits, nil
	}
}
