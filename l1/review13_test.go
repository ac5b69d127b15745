package l1_test

import (
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
