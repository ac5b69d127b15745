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
	e         *entry[V]
	info      Info
	coalesced bool // the caller waited on another's flight or lease
	early     bool // the answer started an early refresh
}

// outcome is r, answered with err, as a span's outcome.
func (r result[V]) outcome(err error) Outcome {
	return Outcome{Tier: r.info.Tier, Stale: r.info.Stale, Negative: r.e != nil && r.e.Value.negative,
		Coalesced: r.coalesced, EarlyRefresh: r.early, Err: err}
}

// getSlow is Get past a fresh L1 hit. A stale L1 copy inside the
// stale-while-revalidate window is served at once while one refresh runs.
// Otherwise one flight per key on this replica reads L2 and, if needed,
// loads. The flight runs on the first caller's goroutine and with its ctx; the
// other callers wait and may leave when their ctx ends. If the first caller's
// ctx ends mid-flight, the others do not inherit the cancellation: one of them
// flies again.
func (c *Cache[V]) getSlow(ctx context.Context, key string, load Loader[V], seen *entry[V], looked bool) (result[V], error) {
	e, ok := c.staleFrom(seen)
	if !looked {
		e, ok = c.staleL1(key)
	}
	if ok {
		now := c.client.clock.NowNano()
		switch {
		case now < e.LocalFreshUntil:
			// Another caller's flight filled L1 after this one looked: a
			// fresh hit, not a stale one to refresh.
			early := c.countL1Hit(ctx, e, now, load)
			return result[V]{e: e, info: Info{Tier: TierL1}, early: early}, nil
		case load != nil && now >= e.FreshUntil && c.inSWR(e, now):
			c.refreshAsync(ctx, key, e.Value.version, load)
			r := c.servedStale(ctx, e, TierL1, nil)
			c.count(r, nil, false)
			return r, nil
		}
		// Past L1's own deadline (MaxTTL) but fresh in L2's terms: the
		// flight below asks L2.
	}
	group := &c.loads
	if load == nil {
		group = &c.lookup
	}
	r, err, shared := group.Do(ctx, key, func(ctx context.Context) (result[V], error) {
		return c.fetch(ctx, key, load)
	})
	c.count(r, err, shared)
	r.coalesced = r.coalesced || shared
	r.early = r.early && !shared // the leader started it
	return r, err
}

// answer is how one request was answered: Stats counts each in exactly one
// way.
type answer uint8

const (
	answerMiss  answer = iota // loaded, not found or failed
	answerL1                  // fresh from L1
	answerL2                  // fresh from L2
	answerStale               // stale, for either reason
)

// answerOf is how r, with err, answered a request.
func answerOf[V any](r result[V], err error) answer {
	switch {
	case r.info.Stale:
		return answerStale
	case err == nil && r.info.Tier == TierL1:
		return answerL1
	case err == nil && r.info.Tier == TierL2:
		return answerL2
	}
	return answerMiss
}

// count counts one caller's answer once, whether it led the flight or
// waited on it (shared): by the tier that answered, as a stale serve by why
// it was served, or as a miss (loaded, not found or failed). The flights and
// the lease protocol count no answers: a flight answers every caller
// waiting on it, and background refreshes answer none.
func (c *Cache[V]) count(r result[V], err error, shared bool) answer {
	if shared {
		c.stats.coalesced.Add(1)
	}
	a := answerOf(r, err)
	negative := r.e != nil && r.e.Value.negative
	switch {
	case a == answerStale && r.info.Cause == nil:
		c.stats.staleHits.Add(1)
	case a == answerStale:
		c.stats.staleOnError.Add(1)
	case a == answerL1:
		c.stats.l1Hit(negative)
		if au := c.client.audit; au != nil {
			au.sample(c, r.e, c.client.clock.NowNano())
		}
	case a == answerL2:
		if negative {
			c.stats.l2NegativeHits.Add(1)
		} else {
			c.stats.l2Hits.Add(1)
		}
	default:
		c.stats.misses.Add(1)
	}
	return a
}

// staleL1 returns key's L1 entry if it may still be served as stale.
func (c *Cache[V]) staleL1(key string) (*entry[V], bool) {
	if c.l1 == nil || !c.client.trusted.Load() {
		return nil, false
	}
	e, _ := c.l1.Get(key)
	return c.staleFrom(e)
}

func (c *Cache[V]) inSWR(e *entry[V], now int64) bool {
	return now < e.FreshUntil+int64(c.opts.StaleWhileRevalidate) && now < e.StaleUntil
}

func (c *Cache[V]) inSIE(e *entry[V], now int64) bool {
	return now < e.FreshUntil+int64(c.opts.StaleIfError) && now < e.StaleUntil
}

// servedStale reports a stale answer.
func (c *Cache[V]) servedStale(ctx context.Context, e *entry[V], tier Tier, cause error) result[V] {
	c.observe(ctx, Event{Kind: EventStale, Tier: tier, Err: cause})
	return result[V]{e: e, info: Info{Tier: tier, Stale: true, Cause: cause}}
}

// fetch is one flight of Get: L2 (taking the load lease on a miss), then
// the loader.
func (c *Cache[V]) fetch(ctx context.Context, key string, load Loader[V]) (result[V], error) {
	r := c.oneLease(key, load)
	s := &r.slots[0]
	cur := c.peekL1(key)
	if e, ok := c.staleFrom(cur); ok {
		s.stale = e
	}
	switch {
	case c.client.l2 == nil || !c.versionKnown.Load():
		// Without L2, only a vouched-for copy: with no L2 to fall back on
		// from a lost invalidation, an unvouched one is reloaded (as Get's
		// own L1 check would). Before the namespace version is known (its
		// read failed; it is retried), which keys are the namespace's is
		// not known: L2 is as good as down, and any fresh copy will do.
		if res, ok := c.freshFrom(ctx, cur, c.client.l2 != nil); ok {
			return res, nil
		}
		if load == nil {
			return c.miss()
		}
		_ = r.run(ctx)
	case load == nil:
		return c.lookupL2(ctx, key, s.fence)
	default:
		_ = r.leased(ctx)
	}
	return s.res, s.err
}

func (c *Cache[V]) miss() (result[V], error) {
	return result[V]{}, ErrNotFound
}

// lookupL2 reads L2 without a loader: a fresh value or ErrNotFound. When L2
// fails, a fresh L1 copy answers, as it would with a loader (see withoutL2).
func (c *Cache[V]) lookupL2(ctx context.Context, key string, f l1.Fence) (result[V], error) {
	e, _, err := c.readL2(ctx, key)
	if err != nil {
		if r, ok := c.freshL1(ctx, key, true); ok {
			return r, nil
		}
	}
	if e == nil || c.client.clock.NowNano() >= e.FreshUntil {
		c.observe(ctx, Event{Kind: EventMiss})
		return c.miss()
	}
	return c.hitL2(ctx, key, f, e, nil), nil
}

// hitL2 answers a fresh L2 value e of key, read after f was taken, starting
// an early refresh (with load) or a sliding extension where due.
func (c *Cache[V]) hitL2(ctx context.Context, key string, f l1.Fence, e *entry[V], load Loader[V]) result[V] {
	now := c.client.clock.NowNano()
	var early bool
	if load != nil && now >= e.Value.refreshFrom {
		early = c.earlyRefresh(ctx, e, now, load)
	}
	if c.opts.Sliding && !e.Value.negative {
		c.slide(ctx, e, now)
	}
	c.observe(ctx, Event{Kind: EventHit, Tier: TierL2})
	c.installL1(key, f, e)
	return result[V]{e: e, info: Info{Tier: TierL2}, early: early}
}

// freshL1 answers from a fresh L1 copy of key; unvouched tells whether one
// no channel vouches for will do. A flight that began just after an earlier
// one filled L1 finds that fill here.
func (c *Cache[V]) freshL1(ctx context.Context, key string, unvouched bool) (result[V], bool) {
	if c.l1 == nil || !unvouched && !c.client.trusted.Load() {
		return result[V]{}, false
	}
	e, _ := c.l1.Get(key)
	return c.freshFrom(ctx, e, unvouched)
}

// runLoader calls load under the client's load tracking (Close cancels and
// waits for it), turning a panic into a *PanicError, and counts it.
func (c *Cache[V]) runLoader(ctx context.Context, key string, load Loader[V]) (v V, d time.Duration, err error) {
	ctx, sp := c.client.start(ctx, OpLoad, c.ns, key, 1)
	defer func() { end(sp, Outcome{Tier: TierLoader, Err: err}) }()
	ctx, done, err := c.client.beginLoad(ctx)
	if err != nil {
		var zero V
		return zero, 0, err
	}
	defer done()
	elapsed := c.client.stopwatch()
	v, err = callLoader(ctx, key, load)
	d = elapsed()
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
// miss, an L2 error (reported and returned), corrupt bytes (deleted and
// counted) or another type's entry (foreign: left alone, counted).
func (c *Cache[V]) readL2(ctx context.Context, key string) (e *entry[V], foreign bool, err error) {
	b, err := c.client.l2.Get(ctx, c.l2ns(), key)
	if err != nil {
		c.reportL2(ctx, "get", err)
		return nil, false, err
	}
	e, foreign = c.decodeOrDelete(ctx, key, b)
	return e, foreign, nil
}

// decode turns L2 bytes into an entry. An entry of another value type or
// codec (its fingerprint is not c.typeID) is errForeign.
func (c *Cache[V]) decode(key string, b []byte) (*entry[V], error) {
	env, err := l2.Decode(b)
	if err != nil {
		return nil, err
	}
	if env.Type != 0 && env.Type != c.typeID {
		return nil, errForeign
	}
	e := &entry[V]{
		Key: key, FreshUntil: env.FreshUntil, StaleUntil: env.StaleUntil, Size: len(env.Payload), Tags: env.Tags,
		Value: cached[V]{negative: env.Negative, version: env.Version, loadDuration: env.LoadDuration},
	}
	if !env.Negative {
		if e.Value.v, err = unmarshal(c.opts.Codec, env.Payload); err != nil {
			return nil, errors.Join(l2.ErrCorrupt, err)
		}
		if c.opts.Sliding {
			// Redis's TTL, pushed out by accesses, is the value's life: being
			// there, it was read within TTL, and L1 keeps it at most TTL more.
			e.FreshUntil = c.client.clock.NowNano() + int64(c.opts.TTL)
			e.StaleUntil = e.FreshUntil + int64(max(c.opts.StaleWhileRevalidate, c.opts.StaleIfError))
		}
	}
	e.Value.refreshFrom = c.refreshFrom(e)
	return e, nil
}

// errForeign is decode's error for an entry written by a cache of another
// value type or codec (Options.Schema).
var errForeign = errors.New("tiered: L2 entry of another value type or codec")

// undecodable handles b, key's L2 bytes that decode failed on with err: an
// entry of another type (errForeign) is left alone, a corrupt one deleted.
func (c *Cache[V]) undecodable(ctx context.Context, key string, b []byte, err error) {
	if errors.Is(err, errForeign) {
		c.foreign(key)
		return
	}
	c.corrupt(ctx, key, b, err)
}

// foreign counts and logs (rate-limited) a read of key that found an entry
// of another value type or codec.
func (c *Cache[V]) foreign(key string) {
	c.stats.typeMismatches.Add(1)
	if n, ok := c.client.foreignLog.allow(c.client.clock.NowNano()); ok {
		c.client.cfg.Logger.Warn("strata: L2 entry of another value type or codec left alone and loaded around; do all replicas agree on V, Codec and Options.Schema?",
			"namespace", c.ns, "key", key, "mismatches_since_last_log", n)
	}
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
func (c *Cache[V]) newEntry(key string, v V, negative bool, ttl time.Duration, d time.Duration) *entry[V] {
	now := c.client.clock.NowNano()
	fresh := now + c.jitter(int64(ttl))
	e := &entry[V]{Key: key, FreshUntil: fresh, StaleUntil: fresh,
		Value: cached[V]{negative: negative, version: c.client.nextVersion(now), loadDuration: d}}
	if !negative {
		e.Value.v = v
		e.StaleUntil += int64(max(c.opts.StaleWhileRevalidate, c.opts.StaleIfError))
	}
	e.Value.refreshFrom = c.refreshFrom(e)
	return e
}

// xfetchHorizon: a hit more than this many delta·beta before expiry skips the
// XFetch draw, whose chance to fire there is below e^-30 (about 1e-13). This
// keeps the logarithm and the random draw off almost every hit.
const xfetchHorizon = 30

// refreshFrom is when hits on e start the XFetch draw.
func (c *Cache[V]) refreshFrom(e *entry[V]) int64 {
	beta := c.opts.EarlyRefreshBeta
	if beta == 0 || e.Value.negative || e.Value.loadDuration <= 0 {
		return math.MaxInt64
	}
	return e.FreshUntil - int64(xfetchHorizon*beta*float64(e.Value.loadDuration))
}

// earlyRefresh is XFetch on a fresh hit: refresh in the background when due.
// It reports whether it started a refresh.
func (c *Cache[V]) earlyRefresh(ctx context.Context, e *entry[V], now int64, load Loader[V]) bool {
	return c.xfetchDue(e, now) && c.refreshAsync(ctx, e.Key, e.Value.version, load)
}

// xfetchDue draws whether now - delta·beta·ln(rand) >= expiry: the chance is
// exp(-(expiry-now)/(delta·beta)), rising as expiry nears.
func (c *Cache[V]) xfetchDue(e *entry[V], now int64) bool {
	gap := -float64(e.Value.loadDuration) * c.opts.EarlyRefreshBeta * math.Log(c.client.cfg.Rand())
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
func (c *Cache[V]) envelope(e *entry[V], payload []byte) []byte {
	env := l2.Envelope{
		Negative: e.Value.negative, Type: c.typeID, Version: e.Value.version, Created: int64(e.Value.version),
		FreshUntil: e.FreshUntil, StaleUntil: e.StaleUntil, LoadDuration: e.Value.loadDuration, Tags: e.Tags, Payload: payload,
	}
	return env.Encode()
}

// l2TTL is how long Redis keeps e: until it may no longer be served at all.
func (c *Cache[V]) l2TTL(e *entry[V]) time.Duration {
	return time.Duration(e.StaleUntil - c.client.clock.NowNano())
}

// installL1 puts e, read after f was taken, in L1 unless key or one of e's
// tags was written or invalidated since.
func (c *Cache[V]) installL1(key string, f l1.Fence, e *entry[V]) {
	if c.l1 == nil {
		return
	}
	if c.beforeInstall != nil {
		c.beforeInstall(key)
	}
	if c.l1.SetIf(e, f, c.client.clock.NowNano()) {
		c.audited(key, "filled", e.Value.version)
	}
}

// peekL1 returns key's L1 entry, or nil, counting an access in the
// admission policy only when there is one (a flight that filled it since
// the caller looked).
func (c *Cache[V]) peekL1(key string) *entry[V] {
	if c.l1 == nil || !c.l1.Contains(key) {
		return nil
	}
	e, _ := c.l1.Get(key)
	return e
}

// staleFrom is staleL1 on an entry already looked up (nil: none).
func (c *Cache[V]) staleFrom(e *entry[V]) (*entry[V], bool) {
	if e == nil || !c.client.trusted.Load() || c.client.clock.NowNano() >= e.LocalStaleUntil {
		return nil, false
	}
	return e, true
}

// freshFrom is freshL1 on an entry already looked up (nil: none).
func (c *Cache[V]) freshFrom(ctx context.Context, e *entry[V], unvouched bool) (result[V], bool) {
	if e == nil || !unvouched && !c.client.trusted.Load() || c.client.clock.NowNano() >= e.LocalFreshUntil {
		return result[V]{}, false
	}
	c.observe(ctx, Event{Kind: EventHit, Tier: TierL1})
	return result[V]{e: e, info: Info{Tier: TierL1}}, true
}
