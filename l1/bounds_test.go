package l1_test

import (
	"fmt"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/strata-cache/strata/l1"
)

// TestGetAtPastMaxTTL: an entry fresh for longer than MaxTTL is capped at
// its install + MaxTTL. GetAt misses it from then on; Get, which reads no
// clock, returns it until the sweeper removes it, within two ticks of its
// deadline. (Time is synctest's: the sleeps move the bubble's clock.)
func TestGetAtPastMaxTTL(t *testing.T) {
	forEachEngine(t, func(t *testing.T, engine l1.Engine) {
		synctest.Test(t, func(t *testing.T) {
			const maxTTL = 10 * time.Millisecond
			c, err := l1.New[string](l1.Config{Engine: engine, MaxTTL: maxTTL})
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			n := time.Now().UnixNano()
			c.Set(entry("k", "v", n), n) // fresh for 10 s, capped at MaxTTL
			if e, ok := c.GetAt("k", n); !ok || e.Value != "v" {
				t.Fatalf("GetAt at install = %v, %v; want v", e, ok)
			}
			e, _ := c.Get("k")
			if e.LocalStaleUntil != n+int64(maxTTL) {
				t.Fatalf("LocalStaleUntil = install + %v, want MaxTTL %v",
					time.Duration(e.LocalStaleUntil-n), maxTTL)
			}
			time.Sleep(maxTTL)
			if e, ok := c.GetAt("k", time.Now().UnixNano()); ok {
				t.Fatalf("GetAt returned %v at install + MaxTTL", e)
			}
			time.Sleep(2*time.Second + time.Millisecond)
			synctest.Wait()
			if e, ok := c.Get("k"); ok {
				t.Fatalf("Get returned %v two seconds past MaxTTL: the sweeper did not remove it", e)
			}
		})
	})
}

// TestDefaultCountersWithinDocumentedBound: the default admission counters
// of the ristretto engine (one per counterBytes of MaxCost) hold at most two
// fifths of MaxCost from New on, as counterBytes and tiered's
// L1Options.MaxCost say: ristretto rounds its count-min sketch and its
// doorkeeper bloom filter up to powers of two, so a counter takes 4 bytes at
// a power-of-two count and up to about 6 just above one. (Found by a
// review: the comment said a fifth.)
func TestDefaultCountersWithinDocumentedBound(t *testing.T) {
	for _, maxCost := range []int64{40 << 20, 64 << 20, 100 << 20} {
		t.Run(strconv.FormatInt(maxCost>>20, 10)+"MiB", func(t *testing.T) {
			var before, after runtime.MemStats
			runtime.GC()
			runtime.ReadMemStats(&before)
			c := newCache(t, l1.Config{MaxCost: maxCost}) // Ristretto, default NumCounters
			runtime.GC()
			runtime.ReadMemStats(&after)
			runtime.KeepAlive(c)
			held := int64(after.HeapAlloc) - int64(before.HeapAlloc)
			t.Logf("an empty cache of MaxCost %d MiB holds %.1f MiB (%.0f%%)",
				maxCost>>20, float64(held)/(1<<20), 100*float64(held)/float64(maxCost))
			if held > maxCost*2/5 {
				t.Errorf("an empty cache of MaxCost %d MiB holds %.1f MiB (%.0f%% of MaxCost); the default counters are documented to add at most two fifths",
					maxCost>>20, float64(held)/(1<<20), 100*float64(held)/float64(maxCost))
			}
		})
	}
}

// TestOtterHoldsMaxCostAfterEverySet: the Otter engine's set runs otter's
// maintenance before it returns, so the table never holds more than
// MaxCost after a Set. Left to otter's goroutines (its default Executor),
// this loop held more after 19,723 of its 20,000 Sets, and in the
// hit-ratio replays the extra entries were extra hits.
func TestOtterHoldsMaxCostAfterEverySet(t *testing.T) {
	const maxCost = 64 << 10
	c := newCache(t, l1.Config{MaxCost: maxCost, Engine: l1.Otter})
	start := now()
	var over int
	for i := range 20_000 {
		key := fmt.Sprintf("key-%05d", i)
		c.Set(entry(key, strings.Repeat("v", 100), start), start)
		if held := int64(c.HeldEntries()) * l1.EntryCost(key, 100); held > maxCost {
			over++
			if over == 1 {
				t.Errorf("after Set %d the engine holds %d, over MaxCost %d", i, held, maxCost)
			}
		}
	}
	if over > 0 {
		t.Errorf("over MaxCost after %d of 20000 Sets", over)
	}
}
