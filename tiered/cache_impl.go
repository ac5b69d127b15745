package tiered

import (
	"context"
	"math"
	"time"

	"github.com/strata-cache/strata/l1"
)

// hitL1 answers a fresh L1 hit, starting an early refresh when XFetch says so.
func (c *Cache[V]) hitL1(ctx context.Context, e *entry[V], now int64, load Loader[V]) (V, error) {
	early := c.countL1Hit(ctx, e, now, load)
	if c.client.spans != nil {
		c.client.spans.Hit(ctx, Operation{Op: OpGet, Namespace: c.ns, Key: e.Key, Keys: 1},
			Outcome{Tier: TierL1, Negative: e.Value.negative, EarlyRefresh: early})
	}
	return c.result(e)
}

// countL1Hit counts and reports a fresh L1 hit, starting an early refresh or
// a sliding extension where due; it reports whether it started a refresh.
func (c *Cache[V]) countL1Hit(ctx context.Context, e *entry[V], now int64, load Loader[V]) (early bool) {
	c.stats.l1Hit(e.Value.negative)
	if a := c.client.audit; a != nil {
		a.sample(c, e, now)
	}
	if now >= e.Value.refreshFrom && load != nil {
		early = c.earlyRefresh(ctx, e, now, load)
	}
	if c.opts.Sliding && !e.Value.negative {
		c.slide(ctx, e, now)
	}
	c.observe(ctx, Event{Kind: EventHit, Tier: TierL1})
	return early
}

// check validates key and the client's state.
func (c *Cache[V]) check(key string) error {
	if len(key) == 0 || len(key) > MaxKeyLength {
		return invalidKey(key)
	}
	if c.client.closed.Load() {
		return ErrClosed
	}
	return nil
}

// checkAll is check for every key.
func (c *Cache[V]) checkAll(keys []string) error {
	for _, k := range keys {
		if err := c.check(k); err != nil {
			return err
		}
	}
	return nil
}

// getL1 returns the L1 entry of key if it is fresh, and the time it was
// found fresh at.
func (c *Cache[V]) getL1(key string) (e *entry[V], now int64, ok bool) {
	if c.l1 == nil || !c.client.trusted.Load() {
		return nil, 0, false
	}
	if e, ok = c.l1.Get(key); !ok {
		return nil, 0, false
	}
	if now = c.client.clock.NowNano(); now >= e.LocalFreshUntil {
		return nil, 0, false
	}
	return e, now, true
}

// result turns an entry into Get's results.
func (c *Cache[V]) result(e *entry[V]) (V, error) {
	if e.Value.negative {
		var zero V
		return zero, ErrNotFound
	}
	return e.Value.v, nil
}

func (c *Cache[V]) observe(ctx context.Context, e Event) {
	if c.client.wants&(1<<e.Kind) != 0 {
		e.Namespace = c.ns
		c.client.cfg.Observer.Observe(ctx, e)
	}
}

// jitter spreads d by ± Options.Jitter.
func (c *Cache[V]) jitter(d int64) int64 {
	j := c.opts.Jitter
	if j == 0 {
		return d
	}
	f := 1 + j*(2*c.client.cfg.Rand()-1)
	return int64(math.Round(float64(d) * f))
}

func (c *Cache[V]) close() {
	if c.l1 != nil {
		c.l1.Close()
	}
}

// cached is what an L1 entry of a Cache[V] holds: the value, and what the
// read paths need to know about it.
type cached[V any] struct {
	// v, refreshFrom and negative, which every hit reads, come first.
	v V
	// refreshFrom is the earliest time (Unix ns) at which a hit should
	// consider refreshing the value early (XFetch); math.MaxInt64 for never.
	refreshFrom int64
	negative    bool // a cached "not found": v is the zero value
	// l1Only marks a value loaded into L1 alone (L2 failed, held another
	// type's entry, or the namespace version was not known): L2 holds
	// nothing of it to extend, or to check it against.
	l1Only  bool
	version uint64 // the version the value came from (its write time in ns)
	// loadDuration is how long the load that produced the value took.
	loadDuration time.Duration
}

// entry is an L1 entry of a Cache[V]; L2 holds the same as an l2.Envelope.
type entry[V any] = l1.Entry[cached[V]]
