package tiered

import (
	"context"
	"errors"
	"fmt"

	"github.com/strata-cache/strata/coherence"
)

// set is Set after validation: Writer, then L2, then L1.
func (c *Cache[V]) set(ctx context.Context, key string, v V, so setOptions) error {
	if so.ttl <= 0 {
		return fmt.Errorf("tiered: TTL %v of %q must be positive", so.ttl, key)
	}
	payload, err := c.encode(v)
	if err != nil {
		return err
	}
	if w := c.opts.Writer; w != nil {
		if err := w(ctx, key, v); err != nil {
			return fmt.Errorf("tiered: write-through of %q: %w", key, err)
		}
	}
	e := c.newEntry(key, v, false, so.ttl, 0)
	e.Size = len(payload)
	e.Tags = c.tagsOf(key, v, so.tags)
	if err := validateTags(e.Tags); err != nil {
		return err
	}
	var l2err error
	if store := c.client.l2; store != nil {
		// The L2 write finishes even if the caller gives up: half a write
		// would leave L2 and L1 disagreeing. Timeout bounds it.
		wctx := context.WithoutCancel(ctx)
		var err error
		if err = c.addTags(wctx, e); err != nil {
			// Without its tag memberships the value must not be in L2; the
			// old one must not stay either.
			err = store.Delete(wctx, c.l2ns(), key)
		} else {
			err = store.Write(wctx, c.l2ns(), key, envelope(e, payload), c.l2TTL(e))
		}
		if err != nil {
			c.reportL2(ctx, "set", err)
			l2err = fmt.Errorf("tiered: set %q in L2: %w", key, err)
			ctx = coherence.WithL2Missed(ctx)
		}
	}
	// The generation bump fences off fills that read L2 before the write
	// above; the install happens under the same lock.
	c.guard.write(key, func() {
		c.forgetFlights(key)
		if c.l1 != nil {
			c.l1.Set(e, c.client.clock.NowNano())
		}
	})
	return c.degraded(l2err, c.client.publish(ctx, coherence.KindKeys, c.ns, []string{key}, e.Version))
}

// delete is Delete after validation: L2, then L1 (even if L2 failed).
func (c *Cache[V]) delete(ctx context.Context, keys []string) error {
	var l2err error
	if store := c.client.l2; store != nil {
		if err := store.Delete(context.WithoutCancel(ctx), c.l2ns(), keys...); err != nil {
			c.reportL2(ctx, "delete", err)
			l2err = fmt.Errorf("tiered: delete in L2: %w", err)
			ctx = coherence.WithL2Missed(ctx)
		}
	}
	for _, k := range keys {
		c.dropL1(k)
	}
	return c.degraded(l2err, c.client.publish(ctx, coherence.KindKeys, c.ns, keys, uint64(c.client.clock.NowNano())))
}

// degraded is the result of a write whose L2 part failed with l2err (or
// succeeded: nil) and whose publication returned perr. L1 and the other
// replicas were updated either way. When the store heals (it keeps the
// server out of service until the keys are deleted from it), the write is
// complete and l2err is only reported to the Observer and the log;
// otherwise the old value may still be read from L2, and the caller learns.
func (c *Cache[V]) degraded(l2err, perr error) error {
	if l2err == nil || c.client.l2.Heals() {
		return perr
	}
	return errors.Join(l2err, perr)
}

// dropL1 removes key from L1 and fences off in-flight fills of it.
func (c *Cache[V]) dropL1(key string) {
	c.guard.write(key, func() {
		c.forgetFlights(key)
		if c.l1 != nil {
			c.l1.Delete(key)
		}
	})
}

// forgetFlights detaches the reads of key in flight: a Get starting after
// this write must not join a read that began before it.
func (c *Cache[V]) forgetFlights(key string) {
	c.loads.Forget(key)
	c.lookup.Forget(key)
}
