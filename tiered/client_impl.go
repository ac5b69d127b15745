package tiered

import (
	"context"
	"sync"
	"sync/atomic"
	"time"

	"github.com/strata-cache/strata/coherence"
)

// l2Watcher passes the L2 store's routing changes and repairs to c.
type l2Watcher struct{ c *Client }

// RouteChanged implements l2.Watcher.
func (w l2Watcher) RouteChanged(reason string) { w.c.routeChanged(reason) }

// Repaired implements l2.Watcher.
func (w l2Watcher) Repaired(ns string, keys []string) { w.c.repaired(ns, keys) }

// routeChanged drops L1 when L2's routing changed: values read before may
// have come from a server that no longer serves their key, and an
// invalidation may have been applied against a different server.
func (c *Client) routeChanged(reason string) {
	c.routeFlushes.Add(1)
	c.lastRouteFlush.Store(&Flush{Reason: "L2 routing changed: " + reason, At: c.clock.Now()})
	c.cfg.Logger.Warn("strata: L2 routing changed; dropping L1", "reason", reason)
	for _, cache := range c.cachesOf("") {
		cache.reset()
	}
}

// repaired invalidates keys everywhere once a returning Redis server no
// longer holds their old values: a replica may have read one in the
// moments before the repair.
func (c *Client) repaired(ns string, keys []string) {
	done, err := c.beginWrite()
	if err != nil {
		return
	}
	defer done()
	m := &coherence.Message{Kind: coherence.KindKeys, Namespace: ns, Items: keys}
	for _, cache := range c.cachesOf(ns) {
		cache.invalidate(m)
	}
	_ = c.publish(c.ctx, coherence.KindKeys, ns, keys, uint64(c.clock.NowNano()))
}

// register adds a cache to be closed with the client.
func (c *Client) register(cache registeredCache) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed.Load() {
		return ErrClosed
	}
	c.caches = append(c.caches, cache)
	c.counted = append(c.counted, cache)
	return nil
}

// beginLoad registers a loader call so Close can cancel it and wait for it.
// It returns ctx, ended also by Close, and the func to call when the load is
// over; it fails once the client is closed. Only loader calls are tracked: L2
// commands are bounded by their own timeout.
func (c *Client) beginLoad(ctx context.Context) (context.Context, func(), error) {
	c.mu.Lock()
	if c.closed.Load() {
		c.mu.Unlock()
		return nil, nil, ErrClosed
	}
	c.loads.Add(1)
	c.mu.Unlock()
	lctx, cancel := context.WithCancel(ctx)
	unhook := context.AfterFunc(c.ctx, cancel)
	return lctx, func() {
		unhook()
		cancel()
		c.loads.Done()
	}, nil
}

// beginWrite registers a write or invalidation so that Close waits for it
// (its L2 part is bounded by the L2 timeout, its publication by WithAck's).
// It fails once the client is closed.
func (c *Client) beginWrite() (func(), error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed.Load() {
		return nil, ErrClosed
	}
	c.writes.Add(1)
	return c.writes.Done, nil
}

// stopwatch starts timing a load: with the injected clock when there is one
// (tests then control load durations), else with the monotonic clock (the
// coarse clock's millisecond would round short loads to zero).
func (c *Client) stopwatch() func() time.Duration {
	if c.coarse == nil {
		start := c.clock.NowNano()
		return func() time.Duration { return time.Duration(c.clock.NowNano() - start) }
	}
	start := time.Now()
	return func() time.Duration { return time.Since(start) }
}

// l2Error reports a failed L2 command: observer, then a rate-limited log.
func (c *Client) l2Error(ctx context.Context, ns, op string, err error) {
	if c.wants&(1<<EventL2Error) != 0 { // never without an Observer
		c.cfg.Observer.Observe(ctx, Event{Kind: EventL2Error, Namespace: ns, Tier: TierL2, Err: err})
	}
	if n, ok := c.l2Log.allow(c.clock.NowNano()); ok {
		c.cfg.Logger.Warn("strata: L2 unavailable, serving without it",
			"namespace", ns, "op", op, "err", err, "errors_since_last_log", n)
	}
}

// rateLimitedLog lets one log through per interval and counts the rest.
type rateLimitedLog struct {
	interval   int64
	last       atomic.Int64
	suppressed atomic.Int64
}

// allow reports whether to log now, and how many events were held back since
// the last log (this one included).
func (r *rateLimitedLog) allow(now int64) (int64, bool) {
	n := r.suppressed.Add(1)
	last := r.last.Load()
	if last != 0 && now-last < r.interval {
		return 0, false
	}
	if !r.last.CompareAndSwap(last, now) {
		return 0, false
	}
	r.suppressed.Add(-n)
	return n, true
}

// close is Client.Close.
func (c *Client) close() error {
	c.mu.Lock()
	if c.closed.Load() {
		c.mu.Unlock()
		return nil
	}
	// Set under mu so that no load starts after Wait below begins.
	c.closed.Store(true)
	caches := c.caches
	c.caches = nil
	c.mu.Unlock()
	c.cancel()
	c.loads.Wait()
	// Their invalidations go out before the bus's last heartbeat, which
	// lets receivers notice one lost on both channels.
	c.writes.Wait()
	var drains sync.WaitGroup // write-behind: flush what is pending first
	for _, cache := range caches {
		drains.Go(cache.drain)
	}
	drains.Wait()
	c.audit.close()
	c.retry.close()
	if c.bus != nil {
		_ = c.bus.Close()
	}
	if c.gossip != nil {
		_ = c.gossip.Close()
	}
	for _, cache := range caches {
		cache.close()
	}
	if c.coarse != nil {
		c.releaseClock()
	}
	if c.l2 != nil {
		return c.l2.Close()
	}
	return nil
}

// nextVersion returns a version for a write or load made at now (Unix ns):
// now, or just above the last one handed out, so that two writes of this
// replica never share a version even within one tick of a coarse clock.
func (c *Client) nextVersion(now int64) uint64 {
	for {
		last := c.lastVersion.Load()
		v := max(uint64(now), last+1)
		if c.lastVersion.CompareAndSwap(last, v) {
			return v
		}
	}
}
