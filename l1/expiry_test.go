package l1_test

import (
	"testing"
	"time"

	"github.com/strata-cache/strata/l1"
)

// The sweeper removes entries past their local deadline, counts them as
// expired, and never removes a newer entry of the same key; entries that
// left otherwise are not held for it.
func TestSweeperRemovesOnlyExpiredEntries(t *testing.T) {
	forEachEngine(t, func(t *testing.T, engine l1.Engine) {
		c := newCache(t, l1.Config{Engine: engine})
		n := now()
		short := func(key, value string) *l1.Entry[string] {
			e := entry(key, value, n)
			e.FreshUntil, e.StaleUntil = n+int64(time.Millisecond), n+int64(time.Millisecond)
			return e
		}
		c.Set(short("expires", "v"), n)
		c.Set(short("replaced", "old"), n)
		c.Set(entry("replaced", "new", n), n) // replaces the short-lived copy
		c.Set(short("deleted", "v"), n)
		c.Delete("deleted")
		c.Set(entry("stays", "v", n), n)
		if got := c.Filed(); got != 3 {
			t.Fatalf("%d entries filed for the sweeper, want 3 (expires, replaced's new copy, stays)", got)
		}

		c.Expire(time.Now().Add(3 * time.Second).UnixNano())
		wantMiss(t, c, "expires")
		wantHit(t, c, "replaced", "new")
		wantHit(t, c, "stays", "v")
		if s := c.Stats(); s.Expired != 1 || s.Entries != 2 || s.Evicted != 0 {
			t.Fatalf("stats %+v, want 1 expired, 2 entries", s)
		}
		if got := c.Filed(); got != 2 {
			t.Fatalf("%d entries filed after the sweep, want 2", got)
		}
		c.Clear()
		if got := c.Filed(); got != 0 {
			t.Fatalf("%d entries filed after Clear, want 0", got)
		}
	})
}
