package tiered

import (
	"context"
	"runtime/debug"
	"sync"
)

// refreshAsync refreshes key in the background unless this replica is
// already refreshing it. The refresh runs with ctx's values but not its
// cancellation (the caller has its answer already), bounded by
// RefreshTimeout and ended by Close; across replicas the load lease lets one
// refresh run. It reports whether it started one.
func (c *Cache[V]) refreshAsync(ctx context.Context, key string, seen uint64, load Loader[V]) bool {
	if !c.refreshing.add(key) {
		return false
	}
	lctx, done, err := c.client.beginLoad(context.WithoutCancel(ctx))
	if err != nil {
		c.refreshing.remove(key)
		return false
	}
	c.stats.refreshes.Add(1)
	c.observe(ctx, Event{Kind: EventRefresh})
	go func() {
		defer done()
		defer c.refreshing.remove(key)
		defer c.survive("refresh", key)
		rctx, cancel := context.WithTimeout(lctx, c.opts.RefreshTimeout)
		defer cancel()
		// Its own span, linked to the request that started it (ctx's).
		rctx, sp := c.client.start(rctx, OpRefresh, c.ns, key, 1)
		var err error
		defer func() { end(sp, Outcome{Err: err}) }()
		err = c.refresh(rctx, key, seen, load)
	}()
	return true
}

// refresh replaces key's value, whose version seen triggered it: from L2 if
// another replica refreshed it already (a fresh, newer version), else by
// loading under the load lease. A failed refresh leaves the current value
// alone; runLoader counts and reports it, and refresh returns its error (for
// the refresh's span).
func (c *Cache[V]) refresh(ctx context.Context, key string, seen uint64, load Loader[V]) error {
	r := c.oneLease(key, load)
	switch {
	case c.client.l2 == nil:
		_ = r.run(ctx)
		return r.slots[0].err
	case !c.versionKnown.Load():
		return nil
	}
	e, foreign, _ := c.readL2(ctx, key)
	switch {
	case foreign:
		// Another type's entry: refreshed around it, into L1 alone, as
		// the read that loaded it did.
		_ = r.loadKeys(ctx, oneKey, cacheL1)
		return r.slots[0].err
	case e != nil && e.Value.version > seen && c.client.clock.NowNano() < e.FreshUntil:
		c.installL1(key, r.slots[0].fence, e)
		return nil
	}
	if !r.tryLease(ctx, 0) {
		return nil // another replica refreshes it
	}
	_ = r.loadKeys(ctx, oneKey, fillLeased)
	return r.slots[0].err
}

// keySet is a set of keys safe for concurrent use.
type keySet struct {
	mu   sync.Mutex
	keys map[string]struct{}
}

// add adds key and reports whether it was absent.
func (s *keySet) add(key string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.keys[key]; ok {
		return false
	}
	if s.keys == nil {
		s.keys = make(map[string]struct{})
	}
	s.keys[key] = struct{}{}
	return true
}

func (s *keySet) remove(key string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.keys, key)
}

// survive ends a background goroutine's panic, logging it with its stack:
// user callbacks are recovered where they are called, so this is the last
// resort for anything else (an Observer, say), which must not end the
// process.
func (c *Cache[V]) survive(what, key string) {
	if r := recover(); r != nil {
		c.client.cfg.Logger.Error("strata: background "+what+" panicked", "namespace", c.ns, "key", key,
			"panic", r, "stack", string(debug.Stack()))
	}
}
