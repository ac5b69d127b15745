package tiered

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/strata-cache/strata/l1"
	"github.com/strata-cache/strata/l2"
)

// getSlow is Get past an L1 miss: one flight per key on this replica reads L2
// and, if needed, loads. The flight runs on the first caller's goroutine and
// with its ctx; the other callers wait and may leave when their ctx ends. If
// the first caller's ctx ends mid-flight, the others do not inherit the
// cancellation: one of them flies again.
func (c *Cache[V]) getSlow(ctx context.Context, key string, load Loader[V]) (V, error) {
	group := &c.loads
	if load == nil {
		group = &c.lookup
	}
	e, err, _ := group.Do(ctx, key, func(ctx context.Context) (*l1.Entry[V], error) {
		return c.fetch(ctx, key, load)
	})
	if err != nil {
		var zero V
		return zero, err
	}
	return c.result(e)
}

// fetch reads key from L2 and, on a miss, loads it. It runs once per flight.
func (c *Cache[V]) fetch(ctx context.Context, key string, load Loader[V]) (*l1.Entry[V], error) {
	gen := c.guard.begin(key)
	if e := c.readL2(ctx, key); e != nil {
		c.stats.l2Hits.Add(1)
		c.observe(ctx, Event{Kind: EventHit, Tier: TierL2})
		c.installL1(key, gen, e)
		return e, nil
	}
	c.stats.misses.Add(1)
	c.observe(ctx, Event{Kind: EventMiss})
	if load == nil {
		return nil, ErrNotFound
	}
	return c.load(ctx, key, gen, load)
}

// readL2 returns key's fresh entry from L2, or nil on a miss, an expired
// entry, an L2 error (reported) or corrupt bytes (deleted and counted).
func (c *Cache[V]) readL2(ctx context.Context, key string) *l1.Entry[V] {
	store := c.client.l2
	if store == nil {
		return nil
	}
	b, err := store.Get(ctx, c.ns, key)
	if err != nil {
		c.reportL2(ctx, "get", err)
		return nil
	}
	if b == nil {
		return nil
	}
	e, err := c.decode(key, b)
	if err != nil {
		c.corrupt(ctx, key, err)
		return nil
	}
	if c.client.clock.NowNano() >= e.FreshUntil {
		return nil
	}
	return e
}

// decode turns L2 bytes into an entry.
func (c *Cache[V]) decode(key string, b []byte) (*l1.Entry[V], error) {
	env, err := l2.Decode(b)
	if err != nil {
		return nil, err
	}
	e := &l1.Entry[V]{
		Key: key, Negative: env.Negative, Version: env.Version, FreshUntil: env.FreshUntil,
		StaleUntil: env.StaleUntil, LoadDuration: env.LoadDuration, Size: len(env.Payload),
	}
	if !env.Negative {
		if e.Value, err = c.opts.Codec.Unmarshal(env.Payload); err != nil {
			return nil, errors.Join(l2.ErrCorrupt, err)
		}
	}
	return e, nil
}

// corrupt deletes an undecodable L2 entry so the next read reloads it.
func (c *Cache[V]) corrupt(ctx context.Context, key string, err error) {
	c.stats.corruptEntries.Add(1)
	c.observe(ctx, Event{Kind: EventCorrupt, Tier: TierL2, Err: err})
	c.client.cfg.Logger.Warn("strata: corrupt L2 entry deleted", "namespace", c.ns, "key", key, "err", err)
	if derr := c.client.l2.Delete(ctx, c.ns, key); derr != nil {
		c.reportL2(ctx, "delete", derr)
	}
}

func (c *Cache[V]) reportL2(ctx context.Context, op string, err error) {
	c.stats.l2Errors.Add(1)
	c.client.l2Error(ctx, c.ns, op, err)
}

// load calls the loader and caches its outcome: a value in both tiers, an
// ErrNotFound as a negative entry when NegativeTTL is set, an error not at all.
func (c *Cache[V]) load(ctx context.Context, key string, gen uint64, load Loader[V]) (*l1.Entry[V], error) {
	ctx, done, err := c.client.beginLoad(ctx)
	if err != nil {
		return nil, err
	}
	defer done()
	start := time.Now()
	v, err := callLoader(ctx, key, load)
	d := time.Since(start)
	c.stats.loads.Add(1)
	c.observe(ctx, Event{Kind: EventLoad, Tier: TierLoader, Duration: d, Err: err})
	switch {
	case errors.Is(err, ErrNotFound):
		if c.opts.NegativeTTL > 0 {
			c.store(ctx, key, gen, c.newEntry(key, v, true, c.opts.NegativeTTL, d), nil)
		}
		return nil, err
	case err != nil:
		c.stats.loadErrors.Add(1)
		return nil, err
	}
	e := c.newEntry(key, v, false, c.opts.TTL, d)
	payload, err := c.encode(v)
	if err != nil {
		// The load succeeded: the caller gets its value, the cache does not.
		c.stats.uncached.Add(1)
		c.client.cfg.Logger.Warn("strata: loaded value not cached", "namespace", c.ns, "key", key, "err", err)
		return e, nil
	}
	e.Size = len(payload)
	c.store(ctx, key, gen, e, payload)
	return e, nil
}

// callLoader runs load, turning a panic into a *PanicError.
func callLoader[V any](ctx context.Context, key string, load Loader[V]) (v V, err error) {
	defer recoverInto(&err)
	return load(ctx, key)
}

// newEntry builds an entry fresh for ttl (jittered) from now.
func (c *Cache[V]) newEntry(key string, v V, negative bool, ttl time.Duration, d time.Duration) *l1.Entry[V] {
	now := c.client.clock.NowNano()
	fresh := now + c.jitter(int64(ttl))
	e := &l1.Entry[V]{Key: key, Negative: negative, Version: uint64(now), FreshUntil: fresh, StaleUntil: fresh, LoadDuration: d}
	if !negative {
		e.Value = v
	}
	return e
}

// encode marshals v and enforces MaxValueSize.
func (c *Cache[V]) encode(v V) ([]byte, error) {
	b, err := c.opts.Codec.Marshal(v)
	if err != nil {
		return nil, fmt.Errorf("tiered: encode value: %w", err)
	}
	if len(b) > c.opts.MaxValueSize {
		return nil, fmt.Errorf("%w: %d bytes encoded, limit %d", ErrValueTooLarge, len(b), c.opts.MaxValueSize)
	}
	return b, nil
}

// envelope is e's L2 form around payload.
func envelope[V any](e *l1.Entry[V], payload []byte) []byte {
	env := l2.Envelope{
		Negative: e.Negative, Version: e.Version, Created: int64(e.Version),
		FreshUntil: e.FreshUntil, StaleUntil: e.StaleUntil, LoadDuration: e.LoadDuration, Payload: payload,
	}
	return env.Encode()
}

// store writes a loaded entry to L2, then to L1 unless a write to the key
// happened since gen. An L2 failure is reported, not returned: the value is
// still good for the caller and for L1.
func (c *Cache[V]) store(ctx context.Context, key string, gen uint64, e *l1.Entry[V], payload []byte) {
	if store := c.client.l2; store != nil {
		ttl := time.Duration(e.StaleUntil - c.client.clock.NowNano())
		if err := store.Set(ctx, c.ns, key, envelope(e, payload), ttl); err != nil {
			c.reportL2(ctx, "set", err)
		}
	}
	c.installL1(key, gen, e)
}

// installL1 puts e in L1 unless a write to key happened since gen.
func (c *Cache[V]) installL1(key string, gen uint64, e *l1.Entry[V]) {
	if c.l1 == nil {
		return
	}
	c.guard.install(key, gen, func() { c.l1.Set(e, c.client.clock.NowNano()) })
}
