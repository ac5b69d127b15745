package l1_test

import (
	"strconv"
	"testing"
	"time"

	"github.com/strata-cache/strata/l1"
)

// Stats follow the cache: entries and cost through sets, overwrites,
// deletes and Clear; evictions and rejections when the cost bound bites;
// and the entry count equals the keys a Get finds.
func TestStats(t *testing.T) {
	forEachEngine(t, func(t *testing.T, engine l1.Engine) {
		c := newCache(t, l1.Config{Engine: engine, MaxCost: 1 << 20})
		n := now()
		for i := range 3 {
			c.Set(entry("k"+strconv.Itoa(i), "value", n), n)
		}
		c.Set(entry("k0", "other", n), n) // an overwrite
		cost := int64(3 * (len("value") + len("k0") + 128))
		if s := c.Stats(); s.Entries != 3 || s.Cost != cost || s.MaxCost != 1<<20 {
			t.Errorf("after 3 keys: %+v, want 3 entries of cost %d", s, cost)
		}
		c.Delete("k1", "absent")
		if s := c.Stats(); s.Entries != 2 {
			t.Errorf("after a delete: %+v, want 2 entries", s)
		}
		c.Clear()
		if s := c.Stats(); s.Entries != 0 || s.Cost != 0 || s.Evicted != 0 || s.Expired != 0 {
			t.Errorf("after Clear: %+v, want empty, no eviction counted", s)
		}

		small := newCache(t, l1.Config{Engine: engine, MaxCost: 20 * (128 + 10 + 4)})
		keys := 200
		for i := range keys {
			k := "key" + strconv.Itoa(i)
			small.Set(entry(k, "v", n), n)
			for range i % 3 { // some keys are hotter: the policy prefers them
				small.Get(k)
			}
		}
		s := small.Stats()
		found := 0
		for i := range keys {
			if _, ok := small.Get("key" + strconv.Itoa(i)); ok {
				found++
			}
		}
		if s.Entries != int64(found) || s.Cost > s.MaxCost {
			t.Errorf("stats %+v; %d keys found, want Entries equal to it and Cost within MaxCost", s, found)
		}
		if s.Evicted+s.Rejected+s.Dropped == 0 || s.Expired != 0 {
			t.Errorf("stats %+v; want evictions or rejections from %d keys in room for 20, none expired", s, keys)
		}
		if got := s.Add(s); got.Entries != 2*s.Entries || got.Evicted != 2*s.Evicted {
			t.Errorf("Add = %+v, want the sums", got)
		}
	})
}

// An entry past its local deadline is dropped by ristretto's cleanup (run
// every few seconds) and counted as expired, not evicted.
func TestStatsCountExpiry(t *testing.T) {
	forEachEngine(t, func(t *testing.T, engine l1.Engine) {
		t.Parallel()
		c := newCache(t, l1.Config{Engine: engine})
		n := now()
		e := entry("k", "v", n)
		e.FreshUntil, e.StaleUntil = n+int64(time.Millisecond), n+int64(time.Millisecond)
		c.Set(e, n)
		deadline := time.Now().Add(30 * time.Second)
		for c.Stats().Expired == 0 {
			if time.Now().After(deadline) {
				t.Fatalf("stats %+v; the entry never expired", c.Stats())
			}
			time.Sleep(50 * time.Millisecond) // polling a condition, with a deadline
		}
		if s := c.Stats(); s.Entries != 0 || s.Evicted != 0 {
			t.Errorf("stats %+v; want the entry gone, as expired only", s)
		}
	})
}
