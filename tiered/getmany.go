package tiered

import (
	"context"
	"fmt"
	"time"

	"github.com/strata-cache/strata/l1"
	"github.com/strata-cache/strata/l2"
)

// GetMany returns the values of keys that exist: from L1, then from L2 in one
// pipeline (split per shard, shards in parallel), then from one call of load
// with only the keys still missing. Keys that are not found are absent from
// the map. A nil load makes GetMany a lookup. On a loader error the map holds
// what was found before it, and the error is returned.
func (c *Cache[V]) GetMany(ctx context.Context, keys []string, load BatchLoader[V]) (map[string]V, error) {
	for _, k := range keys {
		if err := c.check(k); err != nil {
			return nil, err
		}
	}
	out := make(map[string]V, len(keys))
	missing := c.getManyL1(ctx, keys, out)
	if len(missing) == 0 {
		return out, nil
	}
	gens := make([]uint64, len(missing))
	for i, k := range missing {
		gens[i] = c.guard.begin(k)
	}
	missing, gens = c.getManyL2(ctx, missing, gens, out)
	if len(missing) == 0 {
		return out, nil
	}
	c.stats.misses.Add(uint64(len(missing)))
	c.observe(ctx, Event{Kind: EventMiss})
	if load == nil {
		return out, nil
	}
	return out, c.loadMany(ctx, missing, gens, load, out)
}

// getManyL1 fills out from L1 and returns the distinct keys it lacks.
func (c *Cache[V]) getManyL1(ctx context.Context, keys []string, out map[string]V) []string {
	missing := make([]string, 0, len(keys))
	seen := make(map[string]struct{}, len(keys))
	for _, k := range keys {
		if _, dup := seen[k]; dup {
			continue
		}
		seen[k] = struct{}{}
		e, ok := c.getL1(k)
		if !ok {
			missing = append(missing, k)
			continue
		}
		c.stats.l1Hits.add()
		c.observe(ctx, Event{Kind: EventHit, Tier: TierL1})
		if v, err := c.result(e); err == nil {
			out[k] = v
		}
	}
	return missing
}

// getManyL2 fills out from L2 and returns the keys (and their generations) it lacks.
func (c *Cache[V]) getManyL2(ctx context.Context, keys []string, gens []uint64, out map[string]V) ([]string, []uint64) {
	store := c.client.l2
	if store == nil {
		return keys, gens
	}
	vals, err := store.GetMany(ctx, c.ns, keys)
	if err != nil {
		c.reportL2(ctx, "getmany", err)
	}
	now := c.client.clock.NowNano()
	var corrupt []string
	n := 0
	for i, k := range keys {
		var e *l1.Entry[V]
		if vals[i] != nil {
			var derr error
			if e, derr = c.decode(k, vals[i]); derr != nil {
				c.stats.corruptEntries.Add(1)
				c.observe(ctx, Event{Kind: EventCorrupt, Tier: TierL2, Err: derr})
				corrupt = append(corrupt, k)
			}
		}
		if e == nil || now >= e.FreshUntil {
			keys[n], gens[n] = k, gens[i]
			n++
			continue
		}
		c.stats.l2Hits.Add(1)
		c.observe(ctx, Event{Kind: EventHit, Tier: TierL2})
		c.installL1(k, gens[i], e)
		if v, err := c.result(e); err == nil {
			out[k] = v
		}
	}
	if len(corrupt) > 0 {
		if err := store.Delete(ctx, c.ns, corrupt...); err != nil {
			c.reportL2(ctx, "delete", err)
		}
	}
	return keys[:n], gens[:n]
}

// loadMany calls load once for keys, fills out and caches the outcome: found
// values in both tiers, absent keys as negative entries when NegativeTTL is set.
func (c *Cache[V]) loadMany(ctx context.Context, keys []string, gens []uint64, load BatchLoader[V], out map[string]V) error {
	ctx, done, err := c.client.beginLoad(ctx)
	if err != nil {
		return err
	}
	defer done()
	start := time.Now()
	found, err := callBatchLoader(ctx, keys, load)
	d := time.Since(start)
	c.stats.loads.Add(1)
	c.observe(ctx, Event{Kind: EventLoad, Tier: TierLoader, Duration: d, Err: err})
	if err != nil {
		c.stats.loadErrors.Add(1)
		return err
	}
	entries := make([]*l1.Entry[V], 0, len(keys))
	entryGens := make([]uint64, 0, len(keys))
	items := make([]l2.Item, 0, len(keys))
	for i, k := range keys {
		if v, ok := found[k]; ok {
			out[k] = v
		}
		e, payload, ok := c.batchEntry(k, found, d)
		if !ok {
			continue
		}
		entries = append(entries, e)
		entryGens = append(entryGens, gens[i])
		items = append(items, l2.Item{Key: k, Data: envelope(e, payload), TTL: time.Duration(e.StaleUntil - c.client.clock.NowNano())})
	}
	if store := c.client.l2; store != nil && len(items) > 0 {
		if err := store.SetMany(ctx, c.ns, items); err != nil {
			c.reportL2(ctx, "setmany", err)
		}
	}
	for i, e := range entries {
		c.installL1(e.Key, entryGens[i], e)
	}
	return nil
}

// batchEntry builds the entry to cache for key after a batch load, and
// reports false when there is nothing to cache.
func (c *Cache[V]) batchEntry(key string, found map[string]V, d time.Duration) (*l1.Entry[V], []byte, bool) {
	v, ok := found[key]
	if !ok {
		if c.opts.NegativeTTL == 0 {
			return nil, nil, false
		}
		return c.newEntry(key, v, true, c.opts.NegativeTTL, d), nil, true
	}
	payload, err := c.encode(v)
	if err != nil {
		c.stats.uncached.Add(1)
		return nil, nil, false
	}
	e := c.newEntry(key, v, false, c.opts.TTL, d)
	e.Size = len(payload)
	return e, payload, true
}

// callBatchLoader runs load, turning a panic into a *PanicError.
func callBatchLoader[V any](ctx context.Context, keys []string, load BatchLoader[V]) (m map[string]V, err error) {
	defer recoverInto(&err)
	m, err = load(ctx, keys)
	if err != nil {
		return nil, fmt.Errorf("tiered: batch load: %w", err)
	}
	return m, nil
}
