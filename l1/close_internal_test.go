package l1

import (
	"testing"
	"time"
)

// waitFor polls cond until it holds or d passes, and reports whether it held.
func waitFor(d time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(time.Millisecond) // polling a condition, not synchronising
	}
	return true
}

// TestCloseDuringSweep: Close must not hang when the sweeper is
// between taking its due entries (expiry.due) and removing one of them.
// Close held life exclusively while it waited for the sweeper to stop
// (expiry.halt), and the sweeper's removal takes life shared: with entries
// due at the moment of Close (any cache whose entries expire in numbers),
// Close and the sweeper waited on each other for good.
//
// The key's stripe, held by the test, parks the real sweeper right after it
// took the entry out of its bucket; Close then takes life; the stripe is let
// go, so the sweeper goes on to life while Close holds it.
func TestCloseDuringSweep(t *testing.T) {
	for _, engine := range []Engine{Ristretto, Otter} {
		t.Run(engine.String(), func(t *testing.T) {
			c, err := New[string](Config{Engine: engine})
			if err != nil {
				t.Fatal(err)
			}
			n := time.Now().UnixNano()
			ms := int64(time.Millisecond)
			c.Set(&Entry[string]{Key: "k", Value: "v", FreshUntil: n + ms, StaleUntil: n + ms}, n)

			s := &c.guard.stripes[c.guard.stripe("k")]
			s.mu.Lock() // the sweeper's removal of k waits here
			// The sweeper takes k out of its bucket at the first tick past
			// its deadline (within two ticks), then waits for the stripe.
			if !waitFor(5*time.Second, func() bool { return c.Filed() == 0 }) {
				s.mu.Unlock()
				c.Close()
				t.Fatal("the sweeper did not take the due entry within 5 s")
			}
			closed := make(chan struct{})
			go func() { c.Close(); close(closed) }()
			// Before the fix Close took life at once and a reader would
			// wait; with it, Close waits for the sweeper first and life
			// stays free. Either way, give Close 100 ms to get there: a
			// bound on detection, not a synchronisation (the test cannot
			// flake, only miss the old bug on a machine this slow).
			waitFor(100*time.Millisecond, func() bool {
				if c.life.TryRLock() {
					c.life.RUnlock()
					return false
				}
				return true
			})
			s.mu.Unlock()
			select {
			case <-closed:
			case <-time.After(5 * time.Second):
				t.Fatal("Close hangs: it holds life while it waits for the sweeper, which waits for life to remove a due entry")
			}
		})
	}
}
