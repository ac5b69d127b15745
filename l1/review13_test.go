package l1_test

import (
	"runtime"
	"strconv"
	"testing"
	"testing/synctest"
	"time"

	"github.com/strata-cache/strata/l1"
)

// TestReview13GetPastMaxTTL: l1 documents itself as usable on its own,
// "bounded ... in how long a copy may be served (MaxTTL)" (package doc),
// with "no copy served past MaxTTL" from either engine (Engine) and
// StaleUntil as the time "the cache drops the entry". Since the engines
// keep no TTL, Get returns an entry until the sweeper's next one-second
// bucket comes due: up to two seconds past LocalStaleUntil, whatever
// MaxTTL is. (Time is synctest's: the sleep moves the bubble's clock.)
func TestReview13GetPastMaxTTL(t *testing.T) {
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
			wantHit(t, c, "k", "v")
			time.Sleep(2 * maxTTL)
			if e, ok := c.Get("k"); ok {
				t.Fatalf("Get returned the copy %v after its install, past MaxTTL %v (LocalStaleUntil passed %v ago)",
					time.Duration(time.Now().UnixNano()-n), maxTTL, time.Duration(time.Now().UnixNano()-e.LocalStaleUntil))
			}
		})
	})
}

// TestReview13DefaultCountersWithinDocumentedBound: counterBytes' comment
// says the default admission counters (one per 16 bytes of MaxCost) add
// "at most a fifth of MaxCost", at about 3.2 bytes each. Ristretto rounds
// both its count-min sketch and its doorkeeper bloom filter up to powers
// of two, so a counter takes 4 bytes at a power-of-two count and up to
// about 6 just above one: an empty cache holds a quarter to two fifths of
// MaxCost from New on (16 MiB at the default 64 MiB, against 3 MiB with the
// former one counter per 100 bytes), and tiered makes one per namespace.
func TestReview13DefaultCountersWithinDocumentedBound(t *testing.T) {
	for _, maxCost := range []int64{40 << 20, 64 << 20} {
		t.Run(strconv.FormatInt(maxCost>>20, 10)+"MiB", func(t *testing.T) {
			var before, after runtime.MemStats
			runtime.GC()
			runtime.ReadMemStats(&before)
			c := newCache(t, l1.Config{MaxCost: maxCost}) // Ristretto, default NumCounters
			runtime.GC()
			runtime.ReadMemStats(&after)
			runtime.KeepAlive(c)
			held := int64(after.HeapAlloc) - int64(before.HeapAlloc)
			if held > maxCost/5 {
				t.Errorf("an empty cache of MaxCost %d MiB holds %.1f MiB (%.0f%% of MaxCost); the default counters are documented to add at most a fifth",
					maxCost>>20, float64(held)/(1<<20), 100*float64(held)/float64(maxCost))
			}
		})
	}
}
