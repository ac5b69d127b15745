package tiered

import (
	"context"
	"errors"
	"fmt"
	"math"
	"strconv"
	"time"

	mathrand "math/rand/v2"

	"github.com/strata-cache/strata/l1"
	"github.com/strata-cache/strata/l2"
)

// Info tells how a GetWithInfo call was answered.
type Info struct {
	// Tier is where the value came from.
	Tier Tier
	// Stale reports a value past its TTL, served under StaleWhileRevalidate
	// (Cause is nil) or StaleIfError (Cause is the loader's error).
	Stale bool
	// Cause is the loader's error that made a stale value the answer. It is
	// kept whole for errors.Is and errors.As.
	Cause error
}

// result is what a flight hands to every caller waiting on it.
type result[V any] struct {
	e    *l1.Entry[V]
	info Info
}

// getSlow is Get past a fresh L1 hit. A stale L1 copy inside the
// stale-while-revalidate window is served at once while one refresh runs.
// Otherwise one flight per key on this replica reads L2 and, if needed,
// loads. The flight runs on the first caller's goroutine and with its ctx; the
// other callers wait and may leave when their ctx ends. If the first caller's
// ctx ends mid-flight, the others do not inherit the cancellation: one of them
// flies again.
func (c *Cache[V]) getSlow(ctx context.Context, key string, load Loader[V]) (result[V], error) {
	if e, ok := c.staleL1(key); ok {
		now := c.client.clock.NowNano()
		switch {
		case now < e.LocalFreshUntil:
			// Another caller's flight filled L1 after this one looked: a
			// fresh hit, not a stale one to refresh.
			c.countL1Hit(ctx, e, now, load)
			return result[V]{e: e, info: Info{Tier: TierL1}}, nil
		case load != nil && now >= e.FreshUntil && c.inSWR(e, now):
			c.refreshAsync(ctx, key, e.Version, load)
			return c.servedStale(ctx, e, TierL1, nil), nil
		}
		// Past L1's own deadline (MaxTTL) but fresh in L2's terms: the
		// flight below asks L2.
	}
	group := &c.loads
	if load == nil {
		group = &c.lookup
	}
	r, err, _ := group.Do(ctx, key, func(ctx context.Context) (result[V], error) {
		return c.fetch(ctx, key, load)
	})
	return r, err
}

// staleL1 returns key's L1 entry if it may still be served as stale.
func (c *Cache[V]) staleL1(key string) (*l1.Entry[V], bool) {
	if c.l1 == nil || !c.client.trusted.Load() {
		return nil, false
	}
	e, ok := c.l1.Get(key)
	if !ok || c.client.clock.NowNano() >= e.LocalStaleUntil {
		return nil, false
	}
	return e, true
}

func (c *Cache[V]) inSWR(e *l1.Entry[V], now int64) bool {
	return now < e.FreshUntil+int64(c.opts.StaleWhileRevalidate) && now < e.StaleUntil
}

func (c *Cache[V]) inSIE(e *l1.Entry[V], now int64) bool {
	return now < e.FreshUntil+int64(c.opts.StaleIfError) && now < e.StaleUntil
}

// servedStale counts and reports a stale answer.
func (c *Cache[V]) servedStale(ctx context.Context, e *l1.Entry[V], tier Tier, cause error) result[V] {
	if cause == nil {
		c.stats.staleHits.Add(1)
	} else {
		c.stats.staleOnError.Add(1)
	}
	c.observe(ctx, Event{Kind: EventStale, Tier: tier, Err: cause})
	return result[V]{e: e, info: Info{Tier: tier, Stale: true, Cause: cause}}
}

// fetch is one flight: L2 (taking the load lease on a miss), then the loader.
func (c *Cache[V]) fetch(ctx context.Context, key string, load Loader[V]) (result[V], error) {
	f := fetcher[V]{c: c, key: key, load: load, fence: c.guard.begin(key)}
	if e, ok := c.staleL1(key); ok {
		f.stale = e
	}
	if c.client.l2 == nil {
		// Only a vouched-for copy: with no L2 to fall back on from a lost
		// invalidation, an unvouched one is reloaded (as Get's own L1 check
		// would).
		if r, ok := f.freshL1(ctx, false); ok {
			return r, nil
		}
		if load == nil {
			return f.miss()
		}
		return f.loadLocal(ctx)
	}
	if !c.versionKnown.Load() {
		// Which keys are the namespace's is not known yet (the version
		// read failed; it is retried): L2 is as good as down.
		if load == nil {
			if r, ok := f.freshL1(ctx, true); ok {
				return r, nil
			}
			return f.miss()
		}
		return f.withoutL2(ctx)
	}
	if load == nil {
		return f.lookup(ctx)
	}
	return f.leased(ctx)
}

// fetcher carries one flight's state through its steps.
type fetcher[V any] struct {
	c     *Cache[V]
	key   string
	load  Loader[V]
	fence fence        // fill guard at the start
	stale *l1.Entry[V] // newest stale copy seen, for stale-if-error
	token string       // lease token, once one is asked for
}

func (f *fetcher[V]) miss() (result[V], error) {
	f.c.stats.misses.Add(1)
	return result[V]{}, ErrNotFound
}

// lookup reads L2 without a loader: a fresh value or ErrNotFound. When L2
// fails, a fresh L1 copy answers, as it would with a loader (see withoutL2).
func (f *fetcher[V]) lookup(ctx context.Context) (result[V], error) {
	e, err := f.c.readL2(ctx, f.key)
	if err != nil {
		if r, ok := f.freshL1(ctx, true); ok {
			return r, nil
		}
	}
	if e == nil || f.c.client.clock.NowNano() >= e.FreshUntil {
		f.c.observe(ctx, Event{Kind: EventMiss})
		return f.miss()
	}
	return f.hitL2(ctx, e), nil
}

func (f *fetcher[V]) hitL2(ctx context.Context, e *l1.Entry[V]) result[V] {
	now := f.c.client.clock.NowNano()
	if f.load != nil && now >= e.RefreshFrom {
		f.c.earlyRefresh(ctx, e, now, f.load)
	}
	if f.c.opts.Sliding && !e.Negative {
		f.c.slide(ctx, e, now)
	}
	f.c.stats.l2Hits.Add(1)
	f.c.observe(ctx, Event{Kind: EventHit, Tier: TierL2})
	f.c.installL1(f.key, f.fence, e)
	return result[V]{e: e, info: Info{Tier: TierL2}}
}

// leased reads L2 and takes the key's load lease in one step when the key is
// absent, then loads as the lease holder or waits for the holder's fill.
func (f *fetcher[V]) leased(ctx context.Context) (result[V], error) {
	c := f.c
	f.token = newToken()
	b, granted, err := c.client.l2.GetOrLease(ctx, c.l2ns(), f.key, f.token, c.opts.LeaseTTL)
	if err != nil {
		c.reportL2(ctx, "get", err)
		c.leaseUnsure(c.l2ns(), []string{f.key}, f.token, err)
		return f.withoutL2(ctx)
	}
	if b == nil {
		// L2 has nothing: an L1 copy may have been deleted since.
		f.stale = nil
	} else {
		if r, done, err := f.present(ctx, b); done {
			return r, err
		}
		if granted, err = c.client.l2.TryLease(ctx, c.l2ns(), f.key, f.token, c.opts.LeaseTTL); err != nil {
			c.reportL2(ctx, "lease", err)
			c.leaseUnsure(c.l2ns(), []string{f.key}, f.token, err)
			return f.loadLocal(ctx)
		}
	}
	c.stats.misses.Add(1)
	c.observe(ctx, Event{Kind: EventMiss})
	if granted {
		return f.loadAsHolder(ctx)
	}
	return f.awaitFill(ctx)
}

// present handles a value found in L2. It reports done when the value
// answers the call: fresh, or stale inside the stale-while-revalidate window.
// Otherwise the value is expired (kept as a stale-if-error fallback) or was
// corrupt (deleted), and the caller must load.
func (f *fetcher[V]) present(ctx context.Context, b []byte) (result[V], bool, error) {
	c := f.c
	e, err := c.decode(f.key, b)
	if err != nil {
		c.corrupt(ctx, f.key, b, err)
		return result[V]{}, false, nil
	}
	now := c.client.clock.NowNano()
	switch {
	case now < e.FreshUntil:
		return f.hitL2(ctx, e), true, nil
	case c.inSWR(e, now):
		c.installL1(f.key, f.fence, e)
		c.refreshAsync(ctx, f.key, e.Version, f.load)
		return c.servedStale(ctx, e, TierL2, nil), true, nil
	}
	if c.inSIE(e, now) && (f.stale == nil || e.Version >= f.stale.Version) {
		f.stale = e
	}
	return result[V]{}, false, nil
}

// loadAsHolder loads while holding the lease and fills L2 with a
// compare-and-set on the lease token: if a Set or Delete removed the lease
// meanwhile, the value goes back to this caller but is cached nowhere.
func (f *fetcher[V]) loadAsHolder(ctx context.Context) (result[V], error) {
	c := f.c
	// The caller's ctx may be over; the lease must still be settled.
	settle := context.WithoutCancel(ctx)
	tf := c.readTagFence(settle)
	e, payload, err := c.loadEntry(ctx, f.key, f.load)
	if e == nil || payload == nil && !e.Negative {
		c.release(ctx, f.key, f.token)
		if e == nil {
			return f.failed(ctx, err)
		}
		return result[V]{e: e, info: Info{Tier: TierLoader}}, nil
	}
	var filled bool
	ferr := c.addTags(settle, e)
	if ferr == nil {
		ferr = c.checkTagFence(settle, tf, e)
	}
	if errors.Is(ferr, errTagFenceMoved) {
		// A tag invalidation ran while this loaded: the value may predate
		// it. It answers this caller and is cached nowhere.
		c.release(ctx, f.key, f.token)
		c.stats.fillsRejected.Add(1)
		return f.loaded(e, err)
	}
	if ferr == nil {
		filled, ferr = c.client.l2.Fill(settle, c.l2ns(), f.key, f.token, envelope(e, payload), c.l2TTL(e))
	}
	switch {
	case ferr != nil:
		c.reportL2(ctx, "fill", ferr)
		// The server that failed the fill would likely fail the release
		// too, at the cost of another timeout: it goes to the background.
		c.abandon(c.l2ns(), []string{f.key}, f.token)
		c.installL1(f.key, f.fence, e)
	case !filled:
		c.stats.fillsRejected.Add(1)
	default:
		c.installL1(f.key, f.fence, e)
	}
	return f.loaded(e, err)
}

// release ends the load lease token holds on key. When that fails the
// lease would stay in L2, where other replicas wait for a fill that cannot
// land: the release is tried again (see retrier) until the lease expires.
func (c *Cache[V]) release(ctx context.Context, key, token string) {
	c.releaseMany(ctx, []string{key}, token)
}

// releaseMany is release for several keys under one token.
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

// leaseUnsure handles a lease request for keys under token that failed
// with err: a request that timed out may still run when the server
// answers again, and grant a lease no caller holds, which others would
// wait on for a fill that never comes. Its release is tried until the
// lease would have expired (a release of a lease never granted does
// nothing). A request refused before it was sent needs none.
func (c *Cache[V]) leaseUnsure(l2ns string, keys []string, token string, err error) {
	if unsent(err) {
		return
	}
	c.abandon(l2ns, keys, token)
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

// loaded turns a loaded entry into the call's answer.
func (f *fetcher[V]) loaded(e *l1.Entry[V], err error) (result[V], error) {
	if e.Negative {
		return result[V]{}, err
	}
	return result[V]{e: e, info: Info{Tier: TierLoader}}, nil
}

// failed answers a failed load: the stale copy inside the stale-if-error
// window, or the error.
func (f *fetcher[V]) failed(ctx context.Context, err error) (result[V], error) {
	// A write or invalidation since the flight began makes the copy void:
	// expiry is not invalidation, but this was one.
	if f.stale != nil && f.c.guard.moved(f.key, f.fence, f.stale.Tags) {
		f.stale = nil
	}
	if f.stale != nil && !errors.Is(err, ErrNotFound) && f.c.inSIE(f.stale, f.c.client.clock.NowNano()) {
		return f.c.servedStale(ctx, f.stale, TierL2, err), nil
	}
	return result[V]{}, err
}

// awaitFill waits for the lease holder's fill, polling with a back-off that
// starts at a millisecond and doubles up to maxPoll. A lease that ends without
// a fill (holder failed, cancelled or died) is taken over. Past LeaseWait the
// caller loads itself and caches nothing, as nginx's cache lock does.
func (f *fetcher[V]) awaitFill(ctx context.Context) (result[V], error) {
	c := f.c
	c.stats.leaseWaits.Add(1)
	deadline := c.client.clock.NowNano() + int64(c.opts.LeaseWait) // on the injected clock, as TTLs are
	timer := time.NewTimer(0)
	defer timer.Stop()
	<-timer.C
	for backoff := time.Millisecond; ; backoff = min(2*backoff, maxPoll) {
		wait := min(backoff, time.Duration(deadline-c.client.clock.NowNano()))
		if wait <= 0 {
			break
		}
		timer.Reset(wait)
		select {
		case <-ctx.Done():
			return result[V]{}, ctx.Err()
		case <-timer.C:
		}
		b, granted, err := c.client.l2.GetOrLease(ctx, c.l2ns(), f.key, f.token, c.opts.LeaseTTL)
		switch {
		case err != nil:
			c.reportL2(ctx, "get", err)
			c.leaseUnsure(c.l2ns(), []string{f.key}, f.token, err)
			return f.loadLocal(ctx)
		case granted:
			return f.loadAsHolder(ctx)
		case b != nil:
			if r, done, err := f.present(ctx, b); done {
				return r, err
			}
			// Present but expired: GetOrLease never grants on it, so a
			// failed or dead holder is taken over here.
			took, err := c.client.l2.TryLease(ctx, c.l2ns(), f.key, f.token, c.opts.LeaseTTL)
			if err != nil {
				c.reportL2(ctx, "lease", err)
				c.leaseUnsure(c.l2ns(), []string{f.key}, f.token, err)
				return f.loadLocal(ctx)
			}
			if took {
				return f.loadAsHolder(ctx)
			}
		default:
			f.stale = nil // L2 has nothing: an L1 copy may have been deleted since
		}
	}
	c.stats.leaseTimeouts.Add(1)
	e, _, err := c.loadEntry(ctx, f.key, f.load)
	if e == nil {
		return f.failed(ctx, err)
	}
	return f.loaded(e, err)
}

// maxPoll caps the lease-wait back-off: a fill is noticed at most this late.
const maxPoll = 32 * time.Millisecond

// withoutL2 answers when L2 failed: from L1 even if no channel vouches for
// it (L2, the truth it would be checked against, is out of reach), else by
// loading.
func (f *fetcher[V]) withoutL2(ctx context.Context) (result[V], error) {
	if r, ok := f.freshL1(ctx, true); ok {
		return r, nil
	}
	return f.loadLocal(ctx)
}

// freshL1 answers from a fresh L1 copy; unvouched tells whether one no
// channel vouches for will do. A flight that began just after an earlier
// one filled L1 finds that fill here.
func (f *fetcher[V]) freshL1(ctx context.Context, unvouched bool) (result[V], bool) {
	c := f.c
	if c.l1 == nil || !unvouched && !c.client.trusted.Load() {
		return result[V]{}, false
	}
	e, ok := c.l1.Get(f.key)
	if !ok || c.client.clock.NowNano() >= e.LocalFreshUntil {
		return result[V]{}, false
	}
	c.stats.l1Hits.add()
	c.observe(ctx, Event{Kind: EventHit, Tier: TierL1})
	return result[V]{e: e, info: Info{Tier: TierL1}}, true
}

// loadLocal loads without L2 (none configured, or it failed) and caches in L1.
func (f *fetcher[V]) loadLocal(ctx context.Context) (result[V], error) {
	c := f.c
	e, payload, err := c.loadEntry(ctx, f.key, f.load)
	if e == nil {
		return f.failed(ctx, err)
	}
	if payload != nil || e.Negative { // too large or unencodable: not cached
		c.installL1(f.key, f.fence, e)
	}
	return f.loaded(e, err)
}

// loadEntry calls the loader and builds the entry to cache: a value entry
// with its encoded payload, or a negative entry for ErrNotFound when
// NegativeTTL is set (err is then the loader's). A nil entry means nothing to
// answer with: err says why. A value entry with a nil payload is not
// cacheable (too large or not encodable) but answers the caller.
func (c *Cache[V]) loadEntry(ctx context.Context, key string, load Loader[V]) (*l1.Entry[V], []byte, error) {
	v, d, err := c.runLoader(ctx, key, load)
	switch {
	case errors.Is(err, ErrNotFound):
		if c.opts.NegativeTTL == 0 {
			return nil, nil, err
		}
		return c.newEntry(key, v, true, c.opts.NegativeTTL, d), nil, err
	case err != nil:
		return nil, nil, err
	}
	e := c.newEntry(key, v, false, c.opts.TTL, d)
	payload, perr := c.encode(v)
	if perr == nil {
		e.Tags, perr = c.tagsOf(key, v, nil)
	}
	if perr != nil {
		c.stats.uncached.Add(1)
		c.client.cfg.Logger.Warn("strata: loaded value not cached", "namespace", c.ns, "key", key, "err", perr)
		return e, nil, nil
	}
	e.Size = len(payload)
	return e, payload, nil
}

// runLoader calls load under the client's load tracking (Close cancels and
// waits for it), turning a panic into a *PanicError, and counts it.
func (c *Cache[V]) runLoader(ctx context.Context, key string, load Loader[V]) (V, time.Duration, error) {
	ctx, done, err := c.client.beginLoad(ctx)
	if err != nil {
		var zero V
		return zero, 0, err
	}
	defer done()
	elapsed := c.client.stopwatch()
	v, err := callLoader(ctx, key, load)
	d := elapsed()
	c.stats.loads.Add(1)
	if err != nil && !errors.Is(err, ErrNotFound) {
		c.stats.loadErrors.Add(1)
	}
	c.observe(ctx, Event{Kind: EventLoad, Tier: TierLoader, Duration: d, Err: err})
	return v, d, err
}

// callLoader runs load, turning a panic into a *PanicError.
func callLoader[V any](ctx context.Context, key string, load Loader[V]) (v V, err error) {
	defer recoverInto(&err)
	return load(ctx, key)
}

// newToken returns a lease token: random, so that a holder's compare-and-set
// cannot succeed with another holder's lease.
func newToken() string {
	return strconv.FormatUint(mathrand.Uint64(), 36) + strconv.FormatUint(mathrand.Uint64(), 36)
}

// readL2 returns key's entry from L2 whatever its freshness, or nil on a
// miss, an L2 error (reported and returned) or corrupt bytes (deleted and
// counted).
func (c *Cache[V]) readL2(ctx context.Context, key string) (*l1.Entry[V], error) {
	b, err := c.client.l2.Get(ctx, c.l2ns(), key)
	if err != nil {
		c.reportL2(ctx, "get", err)
		return nil, err
	}
	return c.decodeOrDelete(ctx, key, b), nil
}

// decode turns L2 bytes into an entry.
func (c *Cache[V]) decode(key string, b []byte) (*l1.Entry[V], error) {
	env, err := l2.Decode(b)
	if err != nil {
		return nil, err
	}
	e := &l1.Entry[V]{
		Key: key, Negative: env.Negative, Version: env.Version, FreshUntil: env.FreshUntil,
		StaleUntil: env.StaleUntil, LoadDuration: env.LoadDuration, Size: len(env.Payload), Tags: env.Tags,
	}
	if !env.Negative {
		if e.Value, err = unmarshal(c.opts.Codec, env.Payload); err != nil {
			return nil, errors.Join(l2.ErrCorrupt, err)
		}
		if c.opts.Sliding {
			// Redis's TTL, pushed out by accesses, is the value's life: being
			// there, it was read within TTL, and L1 keeps it at most TTL more.
			e.FreshUntil = c.client.clock.NowNano() + int64(c.opts.TTL)
			e.StaleUntil = e.FreshUntil + int64(max(c.opts.StaleWhileRevalidate, c.opts.StaleIfError))
		}
	}
	e.RefreshFrom = c.refreshFrom(e)
	return e, nil
}

// corrupt deletes an undecodable L2 entry so the next read reloads it.
func (c *Cache[V]) corrupt(ctx context.Context, key string, b []byte, err error) {
	c.stats.corruptEntries.Add(1)
	c.observe(ctx, Event{Kind: EventCorrupt, Tier: TierL2, Err: err})
	c.client.cfg.Logger.Warn("strata: corrupt L2 entry deleted", "namespace", c.ns, "key", key, "err", err)
	// Only these bytes go: a write that replaced them, or another caller's
	// load lease, must not be wiped with them.
	if _, derr := c.client.l2.DeleteIf(ctx, c.l2ns(), key, b); derr != nil {
		c.reportL2(ctx, "delete", derr)
	}
}

func (c *Cache[V]) reportL2(ctx context.Context, op string, err error) {
	c.stats.l2Errors.Add(1)
	c.client.l2Error(ctx, c.ns, op, err)
}

// newEntry builds an entry fresh for ttl (jittered) from now. A value entry
// may be served stale for max(StaleWhileRevalidate, StaleIfError) after; a
// negative entry never is.
func (c *Cache[V]) newEntry(key string, v V, negative bool, ttl time.Duration, d time.Duration) *l1.Entry[V] {
	now := c.client.clock.NowNano()
	fresh := now + c.jitter(int64(ttl))
	e := &l1.Entry[V]{Key: key, Negative: negative, Version: uint64(now), FreshUntil: fresh, StaleUntil: fresh, LoadDuration: d}
	if !negative {
		e.Value = v
		e.StaleUntil += int64(max(c.opts.StaleWhileRevalidate, c.opts.StaleIfError))
	}
	e.RefreshFrom = c.refreshFrom(e)
	return e
}

// xfetchHorizon: a hit more than this many delta·beta before expiry skips the
// XFetch draw, whose chance to fire there is below e^-30 (about 1e-13). This
// keeps the logarithm and the random draw off almost every hit.
const xfetchHorizon = 30

// refreshFrom is when hits on e start the XFetch draw.
func (c *Cache[V]) refreshFrom(e *l1.Entry[V]) int64 {
	beta := c.opts.EarlyRefreshBeta
	if beta == 0 || e.Negative || e.LoadDuration <= 0 {
		return math.MaxInt64
	}
	return e.FreshUntil - int64(xfetchHorizon*beta*float64(e.LoadDuration))
}

// earlyRefresh is XFetch on a fresh hit: refresh in the background when due.
func (c *Cache[V]) earlyRefresh(ctx context.Context, e *l1.Entry[V], now int64, load Loader[V]) {
	if c.xfetchDue(e, now) {
		c.refreshAsync(ctx, e.Key, e.Version, load)
	}
}

// xfetchDue draws whether now - delta·beta·ln(rand) >= expiry: the chance is
// exp(-(expiry-now)/(delta·beta)), rising as expiry nears.
func (c *Cache[V]) xfetchDue(e *l1.Entry[V], now int64) bool {
	gap := -float64(e.LoadDuration) * c.opts.EarlyRefreshBeta * math.Log(c.client.cfg.Rand())
	return float64(now)+gap >= float64(e.FreshUntil)
}

// encode marshals v and enforces MaxValueSize.
func (c *Cache[V]) encode(v V) ([]byte, error) {
	b, err := marshal(c.opts.Codec, v)
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
		FreshUntil: e.FreshUntil, StaleUntil: e.StaleUntil, LoadDuration: e.LoadDuration, Tags: e.Tags, Payload: payload,
	}
	return env.Encode()
}

// l2TTL is how long Redis keeps e: until it may no longer be served at all.
func (c *Cache[V]) l2TTL(e *l1.Entry[V]) time.Duration {
	return time.Duration(e.StaleUntil - c.client.clock.NowNano())
}

// installL1 puts e, read after f was taken, in L1 unless key or one of e's
// tags was written or invalidated since.
func (c *Cache[V]) installL1(key string, f fence, e *l1.Entry[V]) {
	if c.l1 == nil {
		return
	}
	if c.beforeInstall != nil {
		c.beforeInstall(key)
	}
	c.guard.install(key, f, e.Tags, false,
		func() { c.l1.Set(e, c.client.clock.NowNano()) },
		func() { c.l1.Delete(key) })
}
