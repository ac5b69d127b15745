package hitratio

import (
	"fmt"
	"time"

	"github.com/maypok86/otter/v2"
	"github.com/strata-cache/strata/l1"
)

// Diagnostic policies: raw ristretto and Strata's l1 package configured
// and driven the ways Strata's read path differs from a plain cache-aside
// user of ristretto, to tell which difference costs hit ratio.
//
//   - "-l1cfg": MaxCost in bytes (capacity × strataEntryCost), each entry
//     costing strataEntryCost, and the counters Strata's L1 gets by
//     default, l1.Config's max(MaxCost/16, 1000): ten per entry here, the
//     same as "ristretto" (until main's 738ed94 it was MaxCost/100, 1.6 per
//     entry, and this variant showed what that cost);
//   - "-<n>get": n lookups of the key on a miss instead of one.
//     tiered.Cache.Get makes 4 on a miss without L2 (its L1 check, then
//     staleL1 in getSlow, staleL1 and freshL1 in fetch; 3 with L2), and
//     every ristretto Get counts in TinyLFU's sketch (an otter miss counts
//     nowhere);
//   - "otter-weighted": raw otter bounded by weight as Strata's L1 bounds
//     it (MaximumWeight capacity × strataEntryCost, each entry weighing
//     strataEntryCost) instead of by MaximumSize. Weighted, otter sizes
//     its sketch (and the period it ages it by) from the number of entries
//     when the cache first gets half full, about half what MaximumSize
//     gives; "otter-weighted-sized" also sets InitialCapacity to capacity,
//     which sizes the sketch up front as MaximumSize does;
//   - "otter-async": raw otter with its maintenance on its own goroutines,
//     as replayOtter ran it before it held otter to its capacity: otter
//     evicts after the writes, so the replay's tight loop finds it over
//     capacity after almost every Set, and the extra entries hit. (Even
//     held, single replays of Corda at 100 entries spread 24–31%: a
//     randomness inside otter, not timing.)
//   - "l1...": the l1 package itself (SetIf under a fence, its expiry
//     index, OnExit bookkeeping) with NumCounters ten per entry ("l1") or
//     left to its default ("l1-default"; the same here since 738ed94);
//     "l1-otter" is the same on the otter engine.
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
	for gets := 2; gets <= 4; gets++ {
		registry[fmt.Sprintf("otter-%dget", gets)] = otterVariant(false, gets)
	}
	registry["otter-weighted"] = otterVariant(true, 1)
	registry["otter-weighted-sized"] = otterSizedVariant()
	registry["otter-async"] = func(w *workload, capacity int) (int64, error) {
		return replayOtterWith(w, &otter.Options[string, []byte]{MaximumSize: capacity}, 1)
	}
	registry["l1"] = l1Variant(false, 1)
	registry["l1-otter"] = l1EngineVariant(l1.Otter, true, 1)
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
	return l1EngineVariant(l1.Ristretto, defaultCounters, gets)
}

// l1EngineVariant is l1Variant on engine.
func l1EngineVariant(engine l1.Engine, defaultCounters bool, gets int) policyFunc {
	return func(w *workload, capacity int) (int64, error) {
		cfg := l1.Config{MaxCost: int64(capacity) * strataEntryCost, MaxTTL: replayTTL, Engine: engine}
		if !defaultCounters {
			cfg.NumCounters = 10 * int64(capacity)
		}
		c, err := l1.New[[]byte](cfg)
		if err != nil {
			return 0, err
		}
		defer c.Close()
		get := func(key string) bool { _, ok := c.Get(key); return ok }
		fill := func(key string) {
			now := time.Now().UnixNano()
			f := c.Begin(key)
			c.SetIf(&l1.Entry[[]byte]{Key: key, Value: value, Size: valueSize,
				FreshUntil: now + int64(replayTTL), StaleUntil: now + int64(replayTTL)}, f, now)
		}
		return replayCache(w, get, fill, gets), nil
	}
}

// otterSizedVariant is otter-weighted with InitialCapacity capacity.
func otterSizedVariant() policyFunc {
	return func(w *workload, capacity int) (int64, error) {
		return replayOtterWith(w, &otter.Options[string, []byte]{
			MaximumWeight: uint64(capacity) * strataEntryCost, InitialCapacity: capacity,
			Weigher: func(string, []byte) uint32 { return strataEntryCost },
		}, 1)
	}
}

// otterVariant is raw otter, weighted as Strata's L1 (weighted) or bounded
// in entries, making gets GetIfPresent calls on a miss.
func otterVariant(weighted bool, gets int) policyFunc {
	return func(w *workload, capacity int) (int64, error) {
		opts := &otter.Options[string, []byte]{MaximumSize: capacity}
		if weighted {
			opts = &otter.Options[string, []byte]{MaximumWeight: uint64(capacity) * strataEntryCost,
				Weigher: func(string, []byte) uint32 { return strataEntryCost }}
		}
		return replayOtterWith(w, opts, gets)
	}
}
