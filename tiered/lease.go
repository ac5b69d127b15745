package tiered

import (
	"context"
	"errors"
	"time"

	"github.com/strata-cache/strata/l1"
	"github.com/strata-cache/strata/l2"
)

// The load lease protocol, written once for every path that loads through
// L2: Get (one key), GetMany (the keys it leads on this replica) and the
// background refreshes (early refresh and stale-while-revalidate).
//
// A run reads its keys from L2 and takes the load lease of each absent one
// in the same round trip (GetOrLease); an expired or corrupt value is leased
// like an absent one (TryLease). It loads the keys whose lease it holds and
// fills L2 with a compare-and-set on its token (Fill): a write or
// invalidation that ended the lease meanwhile wins, and the value answers
// the caller but is cached nowhere. It polls for the fills of the keys
// another caller holds, taking over leases that end unfilled; past LeaseWait
// it loads them itself and caches nothing, as nginx's cache lock does. A
// lease whose fate is unknown (its request timed out) is released in the
// background until it would have expired.
//
// One key goes through the single-key commands; several go in one pipeline
// per shard (l2's *Many commands).

// leases is one run of the protocol over the keys one flight leads.
type leases[V any] struct {
	c     *Cache[V]
	load  Loader[V]      // one key: Get and the refreshes
	loadN BatchLoader[V] // several keys: GetMany
	token string
	slots []slot[V]
}

// slot is one key's state in a run.
type slot[V any] struct {
	key   string
	fence l1.Fence  // the fill guard, taken before the first read
	stale *entry[V] // newest stale copy seen, for stale-if-error (Get)
	res   result[V]
	err   error // the key's answer: ErrNotFound until resolved
	done  bool
	read  bool // L2 answered a read of it
	// foreign: L2 holds an entry of another value type or codec, which
	// the key is loaded around (not leased, nor filled over).
	foreign bool
}

// oneKey is the index list of a run's only key.
var oneKey = []int{0}

// leaseState is where a key stands after a lease request.
type leaseState uint8

const (
	answered leaseState = iota // L2's value answered it
	holding                    // this run holds its lease
	waiting                    // another caller holds its lease
	foreign                    // L2 holds another type's entry: load it into L1 only
)

// caching says where loaded values go.
type caching uint8

const (
	fillLeased   caching = iota // L2 under the run's leases, then L1 where the fill won
	cacheL1                     // L1 only: L2 is absent or unavailable
	cacheNothing                // nowhere: the lease wait timed out
)

// oneLease returns a run over key alone, its fill guard taken.
func (c *Cache[V]) oneLease(key string, load Loader[V]) leases[V] {
	return leases[V]{c: c, load: load, slots: []slot[V]{{key: key, fence: c.guard.Begin(key), err: ErrNotFound}}}
}

// manyLeases returns a run over keys loaded by load, their fill guards taken.
func (c *Cache[V]) manyLeases(keys []string, load BatchLoader[V]) *leases[V] {
	r := &leases[V]{c: c, loadN: load, slots: make([]slot[V], len(keys))}
	for i, k := range keys {
		r.slots[i] = slot[V]{key: k, fence: c.guard.Begin(k), err: ErrNotFound}
	}
	return r
}

// run resolves every key: through L2 under leases, or, without L2 or before
// the namespace version is known (L2 is as good as down then), by loading
// into L1.
func (r *leases[V]) run(ctx context.Context) error {
	if r.c.client.l2 == nil || !r.c.versionKnown.Load() {
		return r.loadKeys(ctx, r.pending(), cacheL1)
	}
	return r.leased(ctx)
}

// leased resolves the pending keys through L2: it reads them, taking the
// leases of absent ones, loads the keys it holds leases for and waits for the
// fills of the others. Keys whose server failed are answered without L2; the
// others go on under their leases, so one sick server costs only its keys.
func (r *leases[V]) leased(ctx context.Context) error {
	c := r.c
	r.token = newToken()
	held, others, lost := r.ask(ctx, r.pending())
	errL2 := r.withoutL2(ctx, lost)
	for range len(held) + len(others) {
		c.observe(ctx, Event{Kind: EventMiss})
	}
	err := r.loadKeys(ctx, held, fillLeased)
	if len(others) > 0 {
		c.stats.leaseWaits.Add(uint64(len(others)))
		err = errors.Join(err, r.await(ctx, others))
		for _, i := range others {
			r.slots[i].res.coalesced = true // waited on another caller's lease
		}
	}
	return errors.Join(errL2, err)
}

// ask reads the keys idx from L2 in one round trip, taking the lease of each
// absent one. Keys whose value answers (fresh, or stale inside the
// stale-while-revalidate window) are resolved; the others are sorted into the
// keys this run holds the lease of, the keys another caller holds, and the
// keys to answer without L2 (lost): those whose command failed, whose
// leases go to the background (see unsure), and those L2 holds another
// type's entry for.
func (r *leases[V]) ask(ctx context.Context, idx []int) (held, others, lost []int) {
	c := r.c
	var one [1][]byte
	var oneGranted [1]bool
	vals, granted, op := one[:], oneGranted[:], "get"
	var err error
	if len(idx) == 1 {
		vals[0], granted[0], err = c.client.l2.GetOrLease(ctx, c.l2ns(), r.slots[idx[0]].key, r.token, c.opts.LeaseTTL)
	} else {
		op = "getmany"
		vals, granted, err = c.client.l2.GetOrLeaseMany(ctx, c.l2ns(), r.keysOf(idx), r.token, c.opts.LeaseTTL)
	}
	failed := l2.KeyFailed(err)
	if err != nil {
		c.reportL2(ctx, op, err)
		for j, i := range idx {
			if failed(j) {
				lost = r.add(lost, i)
			}
		}
		r.unsure(lost, err)
	}
	for j, i := range idx {
		if failed(j) {
			continue
		}
		state, err := r.settle(ctx, i, vals[j], granted[j])
		if err != nil {
			c.reportL2(ctx, "lease", err)
			r.unsure(r.add(nil, i), err)
			lost = r.add(lost, i)
			continue
		}
		switch state {
		case holding:
			held = r.add(held, i)
		case waiting:
			others = r.add(others, i)
		case foreign:
			lost = r.add(lost, i) // loaded as if L2 were out: it has nothing of this cache's
		}
	}
	return held, others, lost
}

// settle places key i after its lease request returned b (nil when absent)
// and granted.
func (r *leases[V]) settle(ctx context.Context, i int, b []byte, granted bool) (leaseState, error) {
	c, s := r.c, &r.slots[i]
	s.read = true
	if b == nil {
		s.stale = nil // L2 has nothing: an L1 copy may have been deleted since
		if granted {
			return holding, nil
		}
		return waiting, nil
	}
	if r.present(ctx, i, b) {
		return answered, nil
	}
	if s.foreign {
		return foreign, nil
	}
	// Present but expired or corrupt: GetOrLease never grants on it, so the
	// lease is asked for apart, and a failed or dead holder is taken over.
	took, err := c.client.l2.TryLease(ctx, c.l2ns(), s.key, r.token, c.opts.LeaseTTL)
	switch {
	case err != nil:
		return 0, err
	case took:
		return holding, nil
	}
	return waiting, nil
}

// present resolves key i from the value b found in L2 if it answers: fresh,
// or stale inside the stale-while-revalidate window (a refresh starts). An
// expired value is kept as the stale-if-error fallback; a corrupt one is
// deleted.
func (r *leases[V]) present(ctx context.Context, i int, b []byte) bool {
	c, s := r.c, &r.slots[i]
	e, err := c.decode(s.key, b)
	if err != nil {
		s.foreign = errors.Is(err, errForeign)
		c.undecodable(ctx, s.key, b, err)
		return false
	}
	now := c.client.clock.NowNano()
	switch {
	case now < e.FreshUntil:
		r.answer(i, c.hitL2(ctx, s.key, s.fence, e, r.loader()), nil)
		return true
	case c.inSWR(e, now):
		c.installL1(s.key, s.fence, e)
		c.refreshAsync(ctx, s.key, e.Value.version, r.loader())
		r.answer(i, c.servedStale(ctx, e, TierL2, nil), nil)
		return true
	}
	if c.inSIE(e, now) && (s.stale == nil || e.Value.version >= s.stale.Value.version) {
		s.stale = e
	}
	return false
}

// tryLease asks for key i's lease alone, for a refresh of a value still
// present, and reports whether this run holds it.
func (r *leases[V]) tryLease(ctx context.Context, i int) bool {
	c := r.c
	if r.token == "" {
		r.token = newToken()
	}
	took, err := c.client.l2.TryLease(ctx, c.l2ns(), r.slots[i].key, r.token, c.opts.LeaseTTL)
	if err != nil {
		c.reportL2(ctx, "lease", err)
		r.unsure(r.add(nil, i), err)
	}
	return took
}

// unsure hands the leases of keys idx to the background after a lease
// request that failed with err: a request that timed out may still run when
// the server answers again, and grant a lease no caller holds, which others
// would wait on for a fill that never comes. Its release is tried until the
// lease would have expired (releasing a lease never granted does nothing). A
// request refused before it was sent (l2.ErrUnavailable) granted nothing.
func (r *leases[V]) unsure(idx []int, err error) {
	if unsent(err) {
		return
	}
	r.c.abandon(r.c.l2ns(), r.keysOf(idx), r.token)
}

// await polls L2 for the fills of the keys idx another caller holds the
// leases of, with a back-off that starts at a millisecond and doubles up to
// maxPoll, on the injected clock. A lease that ends without a fill (its
// holder failed, was cancelled or died) is taken over. Keys still unresolved
// after LeaseWait are loaded and not cached.
func (r *leases[V]) await(ctx context.Context, idx []int) error {
	c := r.c
	deadline := c.client.clock.NowNano() + int64(c.opts.LeaseWait)
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	var errs []error
	for backoff := time.Millisecond; len(idx) > 0; backoff = min(2*backoff, maxPoll) {
		wait := min(backoff, time.Duration(deadline-c.client.clock.NowNano()))
		if wait <= 0 {
			c.stats.leaseTimeouts.Add(uint64(len(idx)))
			return errors.Join(append(errs, r.loadKeys(ctx, idx, cacheNothing))...)
		}
		if err := sleepOn(ctx, timer, wait); err != nil {
			for _, i := range idx {
				r.answer(i, result[V]{}, err)
			}
			return err
		}
		held, others, lost := r.ask(ctx, idx)
		errs = append(errs, r.withoutL2(ctx, lost), r.loadKeys(ctx, held, fillLeased))
		idx = others
	}
	return errors.Join(errs...)
}

// maxPoll caps the lease-wait back-off: a fill is noticed at most this late.
const maxPoll = 32 * time.Millisecond

// sleep waits d or until ctx ends.
func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	return sleepOn(ctx, t, d)
}

// sleepOn is sleep on t, which a loop of waits reuses.
func sleepOn(ctx context.Context, t *time.Timer, d time.Duration) error {
	t.Reset(d)
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// withoutL2 answers the keys idx after an L2 failure: a key whose read
// failed from a fresh L1 copy even if no channel vouches for it (L2, the
// truth it would be checked against, is out of reach), else by loading into
// L1 only. A key L2 answered in this run (its lease request failed after,
// or a later poll did) is loaded.
func (r *leases[V]) withoutL2(ctx context.Context, idx []int) error {
	var rest []int
	for _, i := range idx {
		if s := &r.slots[i]; s.read {
			rest = append(rest, i)
		} else if res, ok := r.c.freshL1(ctx, s.key, true); ok {
			r.answer(i, res, nil)
		} else {
			rest = append(rest, i)
		}
	}
	return r.loadKeys(ctx, rest, cacheL1)
}

// loadKeys calls the loader once for the keys idx, answers them and caches
// the results as mode says. It returns the loader's error.
func (r *leases[V]) loadKeys(ctx context.Context, idx []int, mode caching) error {
	if len(idx) == 0 {
		return nil
	}
	c := r.c
	var tf tagFence
	if mode == fillLeased {
		// The caller's ctx may be over; the leases must still be settled.
		tf = c.readTagFence(context.WithoutCancel(ctx))
	}
	entries, payloads, err := r.loadEntries(ctx, idx)
	if entries == nil {
		if mode == fillLeased {
			r.release(ctx, idx)
		}
		return err
	}
	switch mode {
	case fillLeased:
		r.fill(ctx, idx, entries, payloads, tf)
	case cacheL1:
		for j, i := range idx {
			if entries[j] != nil {
				entries[j].Value.l1Only = true
				c.installL1(r.slots[i].key, r.slots[i].fence, entries[j])
			}
		}
	}
	return nil
}

// loadEntries calls the loader for the keys idx and answers them. Per key
// it returns the entry to cache, nil when there is none (not found without
// NegativeTTL, or a value too large or unencodable), and its payload, nil
// for a negative entry. Each entry carries the load's duration, which XFetch
// weighs (for a batch, the batch's: one key costs a refresh at most what the
// batch cost). When the load failed it returns no entries and the error,
// with which the keys are answered (Get's, under StaleIfError, with a stale
// copy instead).
func (r *leases[V]) loadEntries(ctx context.Context, idx []int) ([]*entry[V], [][]byte, error) {
	c := r.c
	if r.load != nil {
		s := &r.slots[idx[0]]
		v, d, err := c.runLoader(ctx, s.key, r.load)
		if err != nil && !errors.Is(err, ErrNotFound) || err != nil && c.opts.NegativeTTL == 0 {
			r.failed(ctx, idx[0], err)
			return nil, nil, err
		}
		e, payload := c.entry(s.key, v, err != nil, d)
		if e.Value.negative {
			r.answer(idx[0], result[V]{}, err)
		} else {
			r.answer(idx[0], result[V]{e: e, info: Info{Tier: TierLoader}}, nil)
			if payload == nil {
				e = nil
			}
		}
		return []*entry[V]{e}, [][]byte{payload}, nil
	}
	found, d, err := c.runBatchLoader(ctx, r.keysOf(idx), r.loadN)
	if err != nil {
		for _, i := range idx {
			r.answer(i, result[V]{}, err)
		}
		return nil, nil, err
	}
	entries, payloads := make([]*entry[V], len(idx)), make([][]byte, len(idx))
	for j, i := range idx {
		key := r.slots[i].key
		v, ok := found[key]
		if !ok {
			r.answer(i, result[V]{}, ErrNotFound)
			if c.opts.NegativeTTL > 0 {
				entries[j], _ = c.entry(key, v, true, d)
			}
			continue
		}
		e, payload := c.entry(key, v, false, d)
		r.answer(i, result[V]{e: e, info: Info{Tier: TierLoader}}, nil)
		if payload != nil {
			entries[j], payloads[j] = e, payload
		}
	}
	return entries, payloads, nil
}

// entry builds the entry to cache for a loaded v of key (negative: not
// found), loaded in d, with its payload: nil for a negative entry, and for a
// value that cannot be cached (too large or unencodable), which is counted
// and logged.
func (c *Cache[V]) entry(key string, v V, negative bool, d time.Duration) (*entry[V], []byte) {
	if negative {
		return c.newEntry(key, v, true, c.opts.NegativeTTL, d), nil
	}
	e := c.newEntry(key, v, false, c.opts.TTL, d)
	payload, err := c.encode(v)
	if err == nil {
		e.Tags, err = c.tagsOf(key, v, nil)
	}
	if err != nil {
		c.stats.uncached.Add(1)
		if n, ok := c.client.uncachedLog.allow(c.client.clock.NowNano()); ok {
			c.client.cfg.Logger.Warn("strata: loaded value not cached", "namespace", c.ns, "key", key, "err", err,
				"uncached_since_last_log", n)
		}
		return e, nil
	}
	e.Size = len(payload)
	return e, payload
}

// fill writes the loaded entries of the keys idx to L2 with a compare-and-set
// on the run's token and installs in L1 those that were stored. Keys with
// nothing to cache have their leases released. A tag invalidation that ran
// during the load (the tag fence moved) leaves the values answering the call,
// cached nowhere. Where L2 failed, the values go to L1 only, as they would
// without L2, and the leases are released in the background: the server that
// failed the fill would likely fail the release too, at the cost of another
// timeout.
func (r *leases[V]) fill(ctx context.Context, idx []int, entries []*entry[V], payloads [][]byte, tf tagFence) {
	c := r.c
	settle := context.WithoutCancel(ctx)
	var release []int     // keys, to release now
	var items, lost []int // positions in idx, to fill or to keep in L1 only
	var tagged *entry[V]
	var lostErr error
	for j, i := range idx {
		switch e := entries[j]; {
		case e == nil:
			release = append(release, i)
		case len(e.Tags) == 0:
			items = append(items, j)
		default:
			if err := c.addTags(settle, e); err != nil {
				lost, lostErr = append(lost, j), err
				continue
			}
			items, tagged = append(items, j), e
		}
	}
	if tagged != nil {
		switch err := c.checkTagFence(settle, tf, tagged); {
		case errors.Is(err, errTagFenceMoved):
			for _, j := range items {
				release = append(release, idx[j])
			}
			c.stats.fillsRejected.Add(uint64(len(items)))
			items = nil
		case err != nil:
			lost, lostErr, items = append(lost, items...), err, nil
		}
	}
	r.release(ctx, release)
	filled, err := r.fillL2(settle, idx, items, entries, payloads)
	failed := l2.KeyFailed(err)
	for n, j := range items {
		switch {
		case filled[n]:
			c.installL1(r.slots[idx[j]].key, r.slots[idx[j]].fence, entries[j])
		case failed(n):
			lost, lostErr = append(lost, j), err
		default:
			c.stats.fillsRejected.Add(1)
		}
	}
	if len(lost) == 0 {
		return
	}
	c.reportL2(ctx, "fill", lostErr)
	keys := make([]string, len(lost))
	for n, j := range lost {
		s := &r.slots[idx[j]]
		keys[n] = s.key
		entries[j].Value.l1Only = true
		c.installL1(s.key, s.fence, entries[j])
	}
	c.abandon(c.l2ns(), keys, r.token)
}

// fillL2 stores the entries at positions items of idx in L2 under the run's
// leases and reports per item whether it was stored.
func (r *leases[V]) fillL2(ctx context.Context, idx, items []int, entries []*entry[V], payloads [][]byte) ([]bool, error) {
	c := r.c
	switch len(items) {
	case 0:
		return nil, nil
	case 1:
		j := items[0]
		ok, err := c.client.l2.Fill(ctx, c.l2ns(), r.slots[idx[j]].key, r.token, c.envelope(entries[j], payloads[j]), c.l2TTL(entries[j]))
		return []bool{ok}, err
	}
	batch := make([]l2.Item, len(items))
	for n, j := range items {
		batch[n] = l2.Item{Key: r.slots[idx[j]].key, Data: c.envelope(entries[j], payloads[j]), TTL: c.l2TTL(entries[j])}
	}
	return c.client.l2.FillMany(ctx, c.l2ns(), r.token, batch)
}

// failed answers key i after its load failed with err: with the stale copy
// inside the stale-if-error window, or with the error.
func (r *leases[V]) failed(ctx context.Context, i int, err error) {
	c, s := r.c, &r.slots[i]
	// A write or invalidation since the flight began makes the copy void:
	// expiry is not invalidation, but this was one.
	if s.stale != nil && c.guard.Moved(s.key, s.fence, s.stale.Tags) {
		s.stale = nil
	}
	if s.stale != nil && !errors.Is(err, ErrNotFound) && c.inSIE(s.stale, c.client.clock.NowNano()) {
		r.answer(i, c.servedStale(ctx, s.stale, TierL2, err), nil)
		return
	}
	r.answer(i, result[V]{}, err)
}

// release ends the run's leases on the keys idx now; see releaseMany.
func (r *leases[V]) release(ctx context.Context, idx []int) {
	if len(idx) > 0 {
		r.c.releaseMany(ctx, r.keysOf(idx), r.token)
	}
}

// releaseMany ends the load leases token holds on keys. When that fails a
// lease would stay in L2, where other replicas wait for a fill that cannot
// land: the release is tried again (see retrier) until the lease expires.
func (c *Cache[V]) releaseMany(ctx context.Context, keys []string, token string) {
	settle := context.WithoutCancel(ctx)
	l2ns := c.l2ns()
	var err error
	if len(keys) == 1 {
		err = c.client.l2.Release(settle, l2ns, keys[0], token)
	} else {
		err = c.client.l2.ReleaseMany(settle, l2ns, token, keys)
	}
	if err == nil {
		return
	}
	c.reportL2(ctx, "release", err)
	failed := l2.KeyFailed(err)
	var left []string
	for i, k := range keys {
		if failed(i) {
			left = append(left, k)
		}
	}
	c.abandon(l2ns, left, token)
}

// abandon has the leases of keys under token (some perhaps never granted)
// released in the background, off the caller's path, until they expire.
func (c *Cache[V]) abandon(l2ns string, keys []string, token string) {
	c.client.retry.spoolReleases(l2ns, token, keys, c.client.clock.NowNano()+int64(c.opts.LeaseTTL))
}

// unsent reports whether every error in err is a refusal to send
// (l2.ErrUnavailable: breaker open, server out of service).
func unsent(err error) bool {
	if pe := (*l2.PartialError)(nil); errors.As(err, &pe) {
		err = pe.Err
	}
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		for _, e := range j.Unwrap() {
			if !unsent(e) {
				return false
			}
		}
		return len(j.Unwrap()) > 0
	}
	return errors.Is(err, l2.ErrUnavailable)
}

// answer resolves key i.
func (r *leases[V]) answer(i int, res result[V], err error) {
	s := &r.slots[i]
	s.res, s.err, s.done = res, err, true
}

// pending lists the unresolved keys.
func (r *leases[V]) pending() []int {
	if len(r.slots) == 1 {
		if r.slots[0].done {
			return nil
		}
		return oneKey
	}
	var idx []int
	for i := range r.slots {
		if !r.slots[i].done {
			idx = append(idx, i)
		}
	}
	return idx
}

// add appends key i to the index list idx; a run over one key shares oneKey,
// which nothing writes to.
func (r *leases[V]) add(idx []int, i int) []int {
	if len(r.slots) == 1 {
		return oneKey
	}
	return append(idx, i)
}

// keysOf returns the keys idx.
func (r *leases[V]) keysOf(idx []int) []string {
	keys := make([]string, len(idx))
	for j, i := range idx {
		keys[j] = r.slots[i].key
	}
	return keys
}

// loader is the run's loader for one key, for refreshes it starts.
func (r *leases[V]) loader() Loader[V] {
	if r.load != nil {
		return r.load
	}
	return singleLoader(r.loadN)
}
