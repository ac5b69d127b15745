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

// GetMany returns the values of keys that exist: from L1, then from L2 in one
// pipeline (split per shard, shards in parallel), then from load with only the
// keys still missing. Keys that are not found are absent from the map.
//
// Loads coalesce per key with concurrent Get and GetMany calls on this
// replica: a key another call is loading is awaited, not loaded twice. Across
// replicas GetMany takes the load lease of each missing key; load receives
// only the keys whose lease this call holds (and, past LeaseWait, the keys
// still unfilled, whose results it then does not cache).
//
// A nil load makes GetMany a lookup. On a loader error the map holds what was
// found, and the error is returned.
func (c *Cache[V]) GetMany(ctx context.Context, keys []string, load BatchLoader[V]) (map[string]V, error) {
	for _, k := range keys {
		if err := c.check(k); err != nil {
			return nil, err
		}
	}
	out := make(map[string]V, len(keys))
	missing := c.getManyL1(ctx, keys, out)
	switch {
	case len(missing) == 0:
		return out, nil
	case load == nil:
		c.lookupMany(ctx, missing, out)
		return out, nil
	}
	return out, c.loadMany(ctx, missing, load, out)
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
			if c.opts.Sliding {
				c.slide(ctx, e, c.client.clock.NowNano())
			}
		}
	}
	return missing
}

// lookupMany fills out with the fresh L2 values of keys.
func (c *Cache[V]) lookupMany(ctx context.Context, keys []string, out map[string]V) {
	store := c.client.l2
	if store == nil {
		c.stats.misses.Add(uint64(len(keys)))
		return
	}
	fences := make([]fence, len(keys)) // before the read: writes after it win
	for i, k := range keys {
		fences[i] = c.guard.begin(k)
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
		f := fetcher[V]{c: c, key: k, fence: fences[i]}
		if vals[i] == nil && failed(i) {
			// Maybe not a miss: a fresh L1 copy answers, as Get's would.
			if r, ok := f.freshL1(ctx, true); ok {
				if !r.e.Negative {
					out[k] = r.e.Value
				}
				continue
			}
		}
		e := c.decodeOrDelete(ctx, k, vals[i])
		if e == nil || now >= e.FreshUntil {
			c.stats.misses.Add(1)
			continue
		}
		if r := f.hitL2(ctx, e); !r.e.Negative {
			out[k] = r.e.Value
		}
	}
}

// decodeOrDelete decodes b (nil for a miss), deleting it from L2 if corrupt.
func (c *Cache[V]) decodeOrDelete(ctx context.Context, key string, b []byte) *l1.Entry[V] {
	if b == nil {
		return nil
	}
	e, err := c.decode(key, b)
	if err != nil {
		c.corrupt(ctx, key, b, err)
		return nil
	}
	return e
}

// loadMany resolves keys missing from L1 with a loader: it leads the keys no
// other call on this replica is loading and waits for the others.
func (c *Cache[V]) loadMany(ctx context.Context, keys []string, load BatchLoader[V], out map[string]V) error {
	b := &batch[V]{c: c, load: load}
	waits := map[string]*flight.Call[result[V]]{}
	for _, k := range keys {
		call, leader := c.loads.Claim(k)
		if !leader {
			waits[k] = call
			continue
		}
		b.keys = append(b.keys, k)
		b.calls = append(b.calls, call)
	}
	var errs []error
	if len(b.keys) > 0 {
		errs = append(errs, b.run(ctx))
		b.collect(out)
	}
	for k, call := range waits {
		r, err, retry := call.Wait(ctx)
		if retry {
			r, err = c.getSlow(ctx, k, singleLoader(load))
		}
		switch {
		case err == nil && r.e != nil && !r.e.Negative:
			out[k] = r.e.Value
		case err != nil && !errors.Is(err, ErrNotFound):
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
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

// batch is the part of a GetMany this call leads: its keys, their flight
// calls, and per key the answer (res) or error (errs) handed to the callers
// waiting on them when the batch finishes.
type batch[V any] struct {
	c      *Cache[V]
	load   BatchLoader[V]
	keys   []string
	calls  []*flight.Call[result[V]]
	fences []fence
	res    []result[V]
	errs   []error
	done   []bool // key resolved
	token  string
}

// run resolves every key of the batch and finishes its flight calls.
func (b *batch[V]) run(ctx context.Context) (err error) {
	n := len(b.keys)
	b.fences, b.res, b.errs, b.done = make([]fence, n), make([]result[V], n), make([]error, n), make([]bool, n)
	for i, k := range b.keys {
		b.fences[i] = b.c.guard.begin(k)
		b.errs[i] = ErrNotFound
	}
	defer func() {
		for i, k := range b.keys {
			b.c.loads.Finish(k, b.calls[i], b.res[i], b.errs[i], b.errs[i] != nil && ctx.Err() != nil)
		}
	}()
	if b.c.client.l2 == nil {
		return b.loadAndCache(ctx, b.pending(), cacheL1)
	}
	if !b.c.versionKnown.Load() {
		return b.loadAndCache(ctx, b.pending(), cacheL1) // as without L2: see fetch
	}
	return b.leased(ctx)
}

// pending lists the indexes of unresolved keys.
func (b *batch[V]) pending() []int {
	var idx []int
	for i, d := range b.done {
		if !d {
			idx = append(idx, i)
		}
	}
	return idx
}

// leased reads L2 taking leases of absent keys, loads the keys it holds
// leases for, and waits for the fills of the others.
func (b *batch[V]) leased(ctx context.Context) error {
	c := b.c
	b.token = newToken()
	held, others, err := b.readOrLease(ctx, b.pending())
	if err != nil {
		return b.withoutL2(ctx, err)
	}
	c.stats.misses.Add(uint64(len(held) + len(others)))
	errs := []error{b.loadAndCache(ctx, held, fillLeased)}
	if len(others) > 0 {
		c.stats.leaseWaits.Add(uint64(len(others)))
		errs = append(errs, b.await(ctx, others))
	}
	return errors.Join(errs...)
}

// withoutL2 finishes the batch after an L2 failure: leases this batch may
// hold on pending keys are released (compare-and-delete on its token, so
// others' leases are safe), and the pending keys load into L1 only.
func (b *batch[V]) withoutL2(ctx context.Context, err error) error {
	b.c.reportL2(ctx, "getmany", err)
	pending := b.pending()
	keys := make([]string, len(pending))
	for j, i := range pending {
		keys[j] = b.keys[i]
	}
	b.release(ctx, keys)
	return b.loadAndCache(ctx, pending, cacheL1)
}

// readOrLease asks L2 for the keys idx, resolving those with a fresh (or
// revalidating stale) value and sorting the rest into keys whose lease this
// batch now holds and keys another caller holds.
func (b *batch[V]) readOrLease(ctx context.Context, idx []int) (held, others []int, err error) {
	c := b.c
	keys := make([]string, len(idx))
	for j, i := range idx {
		keys[j] = b.keys[i]
	}
	vals, granted, err := c.client.l2.GetOrLeaseMany(ctx, c.l2ns(), keys, b.token, c.opts.LeaseTTL)
	if err != nil {
		// Keys on servers that answered may be leased to this call now.
		c.abandon(c.l2ns(), keys, b.token)
		return nil, nil, err
	}
	for j, i := range idx {
		switch {
		case granted[j]:
			held = append(held, i)
		case vals[j] == nil:
			others = append(others, i)
		case b.present(ctx, i, vals[j]):
		default:
			// Present but expired or corrupt: lease it like an absent key.
			ok, err := c.client.l2.TryLease(ctx, c.l2ns(), b.keys[i], b.token, c.opts.LeaseTTL)
			if err != nil {
				// The leases granted so far are abandoned with this call.
				c.abandon(c.l2ns(), keys, b.token)
				return nil, nil, err
			}
			if ok {
				held = append(held, i)
			} else {
				others = append(others, i)
			}
		}
	}
	return held, others, nil
}

// present resolves key i from its L2 bytes if they answer it.
func (b *batch[V]) present(ctx context.Context, i int, data []byte) bool {
	f := fetcher[V]{c: b.c, key: b.keys[i], load: singleLoader(b.load), fence: b.fences[i]}
	r, done, _ := f.present(ctx, data)
	if done {
		b.resolve(i, r, nil)
	}
	return done
}

func (b *batch[V]) resolve(i int, r result[V], err error) {
	b.res[i], b.errs[i], b.done[i] = r, err, true
}

// await polls L2 for the fills of keys others hold leases for, with the same
// back-off as a single Get, taking over leases that end unfilled. Keys still
// unresolved after LeaseWait are loaded and not cached.
func (b *batch[V]) await(ctx context.Context, idx []int) error {
	c := b.c
	deadline := c.client.clock.NowNano() + int64(c.opts.LeaseWait) // on the injected clock, as TTLs are
	var errs []error
	for backoff := time.Millisecond; len(idx) > 0; backoff = min(2*backoff, maxPoll) {
		wait := min(backoff, time.Duration(deadline-c.client.clock.NowNano()))
		if wait <= 0 {
			c.stats.leaseTimeouts.Add(uint64(len(idx)))
			return errors.Join(append(errs, b.loadAndCache(ctx, idx, cacheNothing))...)
		}
		if err := sleep(ctx, wait); err != nil {
			return err
		}
		held, others, err := b.readOrLease(ctx, idx)
		if err != nil {
			return errors.Join(append(errs, b.withoutL2(ctx, err))...)
		}
		errs = append(errs, b.loadAndCache(ctx, held, fillLeased))
		idx = others
	}
	return errors.Join(errs...)
}

// sleep waits d or until ctx ends.
func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// caching says where loaded values go.
type caching uint8

const (
	fillLeased   caching = iota // L2 under the batch's leases, then L1 where the fill won
	cacheL1                     // L1 only: L2 is absent or unavailable
	cacheNothing                // nowhere: the lease wait timed out
)

// loadAndCache calls the batch loader once for keys idx, resolves them and
// caches the results as mode says. Keys the loader does not return are not
// found.
func (b *batch[V]) loadAndCache(ctx context.Context, idx []int, mode caching) error {
	if len(idx) == 0 {
		return nil
	}
	c := b.c
	keys := make([]string, len(idx))
	for j, i := range idx {
		keys[j] = b.keys[i]
	}
	var tf tagFence
	if mode == fillLeased {
		tf = c.readTagFence(context.WithoutCancel(ctx))
	}
	found, d, err := c.runBatchLoader(ctx, keys, b.load)
	if err != nil {
		if mode == fillLeased {
			b.release(ctx, keys)
		}
		for _, i := range idx {
			b.resolve(i, result[V]{}, err)
		}
		return err
	}
	entries, payloads := b.entries(idx, found, d)
	switch mode {
	case fillLeased:
		b.fill(ctx, idx, entries, payloads, tf)
	case cacheL1:
		for j, i := range idx {
			if entries[j] != nil {
				c.installL1(b.keys[i], b.fences[i], entries[j])
			}
		}
	}
	return nil
}

// entries builds the entry of each key idx from the loader's map and resolves
// the keys. An entry is nil when there is nothing to cache (not found without
// NegativeTTL, or a value too large); a payload is nil for negative entries.
// Each entry carries the batch's load duration d, which XFetch weighs: one
// key costs a refresh at most what the batch cost.
func (b *batch[V]) entries(idx []int, found map[string]V, d time.Duration) ([]*l1.Entry[V], [][]byte) {
	c := b.c
	entries, payloads := make([]*l1.Entry[V], len(idx)), make([][]byte, len(idx))
	for j, i := range idx {
		key := b.keys[i]
		v, ok := found[key]
		if !ok {
			b.resolve(i, result[V]{}, ErrNotFound)
			if c.opts.NegativeTTL > 0 {
				entries[j] = c.newEntry(key, v, true, c.opts.NegativeTTL, d)
			}
			continue
		}
		e := c.newEntry(key, v, false, c.opts.TTL, d)
		b.resolve(i, result[V]{e: e, info: Info{Tier: TierLoader}}, nil)
		payload, err := c.encode(v)
		if err == nil {
			e.Tags, err = c.tagsOf(key, v, nil)
		}
		if err != nil {
			c.stats.uncached.Add(1)
			c.client.cfg.Logger.Warn("strata: loaded value not cached", "namespace", c.ns, "key", key, "err", err)
			continue
		}
		e.Size = len(payload)
		entries[j], payloads[j] = e, payload
	}
	return entries, payloads
}

// fill writes leased entries to L2 with a compare-and-set on the batch's
// token and installs in L1 those that were stored. Keys with nothing to cache
// have their leases released.
func (b *batch[V]) fill(ctx context.Context, idx []int, entries []*l1.Entry[V], payloads [][]byte, tf tagFence) {
	c := b.c
	settle := context.WithoutCancel(ctx)
	var items []l2.FillItem
	var itemIdx []int
	var release []string
	var tagged *l1.Entry[V]
	for j, i := range idx {
		if entries[j] == nil {
			release = append(release, b.keys[i])
			continue
		}
		if c.addTags(settle, entries[j]) != nil {
			release = append(release, b.keys[i]) // L1 only: a tag invalidation could not find it in L2
			continue
		}
		if len(entries[j].Tags) > 0 {
			tagged = entries[j]
		}
		items = append(items, l2.FillItem{Key: b.keys[i], Data: envelope(entries[j], payloads[j]), TTL: c.l2TTL(entries[j])})
		itemIdx = append(itemIdx, j)
	}
	if tagged != nil && c.checkTagFence(settle, tf, tagged) != nil {
		// A tag invalidation ran during the load (or the fence cannot be
		// read): the values answer this call and are cached nowhere.
		for _, it := range items {
			release = append(release, it.Key)
		}
		c.stats.fillsRejected.Add(uint64(len(items)))
		items = nil
	}
	if len(release) > 0 {
		b.release(ctx, release)
	}
	if len(items) == 0 {
		return
	}
	filled, err := c.client.l2.FillMany(settle, c.l2ns(), b.token, items)
	if err != nil {
		c.reportL2(ctx, "fill", err)
		// Leases of fills that failed would make others wait LeaseTTL.
		var unfilled []string
		for n, it := range items {
			if !filled[n] {
				unfilled = append(unfilled, it.Key)
			}
		}
		b.release(ctx, unfilled)
	}
	for n, j := range itemIdx {
		i := idx[j]
		if !filled[n] {
			c.stats.fillsRejected.Add(1)
			continue
		}
		c.installL1(b.keys[i], b.fences[i], entries[j])
	}
}

func (b *batch[V]) release(ctx context.Context, keys []string) {
	if len(keys) > 0 {
		b.c.releaseMany(ctx, keys, b.token)
	}
}

// collect copies the batch's found values into out.
func (b *batch[V]) collect(out map[string]V) {
	for i, k := range b.keys {
		if r := b.res[i]; b.errs[i] == nil && r.e != nil && !r.e.Negative {
			out[k] = r.e.Value
		}
	}
}

// runBatchLoader calls load under the client's load tracking, turning a panic
// into a *PanicError, and counts it. It returns how long the load took.
func (c *Cache[V]) runBatchLoader(ctx context.Context, keys []string, load BatchLoader[V]) (map[string]V, time.Duration, error) {
	ctx, done, err := c.client.beginLoad(ctx)
	if err != nil {
		return nil, 0, err
	}
	defer done()
	elapsed := c.client.stopwatch()
	found, err := callBatchLoader(ctx, keys, load)
	d := elapsed()
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
