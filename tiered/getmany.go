package tiered

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/strata-cache/strata/internal/flight"
	"github.com/strata-cache/strata/l1"
	"github.com/strata-cache/strata/l2"
)

// getMany is Cache.GetMany.
func (c *Cache[V]) getMany(ctx context.Context, keys []string, load BatchLoader[V]) (*gathered[V], error) {
	for _, k := range keys {
		if err := c.check(k); err != nil {
			return &gathered[V]{}, err
		}
	}
	g := &gathered[V]{out: make(map[string]V, len(keys))}
	missing := c.getManyL1(ctx, keys, g)
	switch {
	case len(missing) == 0:
		return g, nil
	case load == nil:
		c.lookupMany(ctx, missing, g)
		return g, nil
	}
	return g, c.loadMany(ctx, missing, load, g)
}

// gathered is what a GetMany found so far, and how it answered each key.
type gathered[V any] struct {
	out map[string]V
	n   Batch
}

// tally counts one key's answer a.
func (g *gathered[V]) tally(a answer) {
	switch a {
	case answerL1:
		g.n.L1Hits++
	case answerL2:
		g.n.L2Hits++
	case answerStale:
		g.n.Stale++
	default:
		g.n.Misses++
	}
}

// getManyL1 fills g from L1 and returns the distinct keys it lacks.
func (c *Cache[V]) getManyL1(ctx context.Context, keys []string, g *gathered[V]) []string {
	missing := make([]string, 0, len(keys))
	seen := make(map[string]struct{}, len(keys))
	for _, k := range keys {
		if _, dup := seen[k]; dup {
			continue
		}
		seen[k] = struct{}{}
		e, now, ok := c.getL1(k)
		if !ok {
			missing = append(missing, k)
			continue
		}
		c.stats.l1Hit(e.Value.negative)
		if a := c.client.audit; a != nil {
			a.sample(c, e, now)
		}
		g.tally(answerL1)
		c.observe(ctx, Event{Kind: EventHit, Tier: TierL1})
		if v, err := c.result(e); err == nil {
			g.out[k] = v
			if c.opts.Sliding {
				c.slide(ctx, e, c.client.clock.NowNano())
			}
		}
	}
	return missing
}

// lookupMany fills g with the fresh L2 values of keys.
func (c *Cache[V]) lookupMany(ctx context.Context, keys []string, g *gathered[V]) {
	store := c.client.l2
	if store == nil {
		c.stats.misses.Add(uint64(len(keys)))
		g.n.Misses += len(keys)
		return
	}
	fences := make([]l1.Fence, len(keys)) // before the read: writes after it win
	for i, k := range keys {
		fences[i] = c.guard.Begin(k)
	}
	vals := make([][]byte, len(keys))
	err := ErrVersionUnknown
	if c.versionKnown.Load() {
		vals, err = store.GetMany(ctx, c.l2ns(), keys)
	}
	if err != nil {
		c.reportL2(ctx, "getmany", err)
	}
	failed := l2.KeyFailed(err)
	now := c.client.clock.NowNano()
	for i, k := range keys {
		if vals[i] == nil && failed(i) {
			// Maybe not a miss: a fresh L1 copy answers, as Get's would.
			if r, ok := c.freshL1(ctx, k, true); ok {
				c.collect(k, r, nil, false, g)
				continue
			}
		}
		e, _ := c.decodeOrDelete(ctx, k, vals[i])
		if e == nil || now >= e.FreshUntil {
			c.stats.misses.Add(1)
			g.tally(answerMiss)
			continue
		}
		c.collect(k, c.hitL2(ctx, k, fences[i], e, nil), nil, false, g)
	}
}

// collect counts the answer for key of one GetMany (see count) and puts its
// value in g if it has one.
func (c *Cache[V]) collect(key string, r result[V], err error, shared bool, g *gathered[V]) {
	g.tally(c.count(r, err, shared))
	g.put(key, r, err)
}

// put puts key's value in g.out if r, with err, has one.
func (g *gathered[V]) put(key string, r result[V], err error) {
	if err == nil && r.e != nil && !r.e.Value.negative {
		g.out[key] = r.e.Value.v
	}
}

// decodeOrDelete decodes b (nil for a miss), deleting it from L2 if corrupt;
// an entry of another type is a miss left in L2 (foreign).
func (c *Cache[V]) decodeOrDelete(ctx context.Context, key string, b []byte) (e *entry[V], foreign bool) {
	if b == nil {
		return nil, false
	}
	e, err := c.decode(key, b)
	if err != nil {
		c.undecodable(ctx, key, b, err)
		return nil, errors.Is(err, errForeign)
	}
	return e, false
}

// loadMany resolves keys missing from L1 with a loader: it leads the keys no
// other call on this replica is loading, under one run of the lease
// protocol, and waits for the others.
func (c *Cache[V]) loadMany(ctx context.Context, keys []string, load BatchLoader[V], g *gathered[V]) error {
	var led []string
	var calls []*flight.Call[result[V]]
	waits := map[string]*flight.Call[result[V]]{}
	for _, k := range keys {
		call, leader := c.loads.Claim(k)
		if !leader {
			waits[k] = call
			continue
		}
		led, calls = append(led, k), append(calls, call)
	}
	var errs []error
	if len(led) > 0 {
		errs = append(errs, c.leadMany(ctx, led, calls, load, g))
	}
	for k, call := range waits {
		r, err, retry := call.Wait(ctx)
		if retry {
			r, err = c.getSlow(ctx, k, singleLoader(load), nil, false) // counted there
			g.tally(answerOf(r, err))
			g.put(k, r, err)
		} else {
			c.collect(k, r, err, true, g)
		}
		if err != nil && !errors.Is(err, ErrNotFound) {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// leadMany resolves the keys this call leads, finishes their flight calls
// and copies the values found into g.
func (c *Cache[V]) leadMany(ctx context.Context, keys []string, calls []*flight.Call[result[V]], load BatchLoader[V], g *gathered[V]) error {
	r := c.manyLeases(keys, load)
	defer func() {
		for i, s := range r.slots {
			c.loads.Finish(s.key, calls[i], s.res, s.err, s.err != nil && ctx.Err() != nil)
		}
	}()
	err := r.run(ctx)
	for _, s := range r.slots {
		c.collect(s.key, s.res, s.err, false, g)
	}
	return err
}

// singleLoader adapts a batch loader to one key.
func singleLoader[V any](load BatchLoader[V]) Loader[V] {
	return func(ctx context.Context, key string) (V, error) {
		m, err := load(ctx, []string{key})
		if err != nil {
			var zero V
			return zero, err
		}
		v, ok := m[key]
		if !ok {
			return v, ErrNotFound
		}
		return v, nil
	}
}

// runBatchLoader calls load under the client's load tracking, turning a panic
// into a *PanicError, and counts it. It returns how long the load took.
func (c *Cache[V]) runBatchLoader(ctx context.Context, keys []string, load BatchLoader[V]) (found map[string]V, d time.Duration, err error) {
	ctx, sp := c.client.start(ctx, OpLoad, c.ns, "", len(keys))
	defer func() { end(sp, Outcome{Tier: TierLoader, Err: err}) }()
	ctx, done, err := c.client.beginLoad(ctx)
	if err != nil {
		return nil, 0, err
	}
	defer done()
	elapsed := c.client.stopwatch()
	found, err = callBatchLoader(ctx, keys, load)
	d = elapsed()
	c.stats.loads.Add(1)
	if err != nil {
		c.stats.loadErrors.Add(1)
	}
	c.observe(ctx, Event{Kind: EventLoad, Tier: TierLoader, Duration: d, Err: err})
	return found, d, err
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
