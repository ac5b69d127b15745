package tiered

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/strata-cache/strata/coherence"
	"github.com/strata-cache/strata/internal/bus"
	"github.com/strata-cache/strata/l1"
	"github.com/strata-cache/strata/l2"
)

// detach returns ctx for the L2 commands and messages of a write or
// invalidation: once begun, one finishes even if its caller gives up (half
// of one could leave a Redis server needing a flush, and a message not sent
// makes every replica drop its L1), each command bounded by l2's Timeout.
// A ctx that ended before the call begins it not: detach returns its error.
// A WithAck wait still ends with the caller's ctx (see publish).
func detach(ctx context.Context, op string) (context.Context, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("tiered: %s: %w", op, err)
	}
	return detached(ctx), nil
}

// detached is ctx without its cancellation, remembering it for the waits
// its caller may end (callerOf).
func detached(ctx context.Context) context.Context {
	if _, ok := ctx.Value(callerKey{}).(context.Context); ok {
		return ctx // detached already
	}
	return context.WithValue(context.WithoutCancel(ctx), callerKey{}, ctx)
}

type callerKey struct{}

// callerOf returns the caller's ctx that detached ctx was made from, or ctx.
func callerOf(ctx context.Context) context.Context {
	if c, ok := ctx.Value(callerKey{}).(context.Context); ok {
		return c
	}
	return ctx
}

// set is Set after validation: Writer, then L2, then L1.
func (c *Cache[V]) set(ctx context.Context, key string, v V, so setOptions) error {
	if err := validateTTL(key, so.ttl); err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("tiered: set %q: %w", key, err)
	}
	done, err := c.client.beginWrite()
	if err != nil {
		return err
	}
	defer done()
	payload, err := c.encode(v)
	if err != nil {
		return err
	}
	for t := c.longestTTL.Load(); int64(so.ttl) > t; t = c.longestTTL.Load() {
		if c.longestTTL.CompareAndSwap(t, int64(so.ttl)) {
			break
		}
	}
	e := c.newEntry(key, v, false, so.ttl, 0)
	e.Size = len(payload)
	if e.Tags, err = c.tagsOf(key, v, so.tags); err != nil {
		return err
	}
	if err := c.write(ctx, key, v); err != nil {
		return err
	}
	caller := ctx // a write-behind Set blocked on back-pressure waits for it (writeL2)
	ctx = detached(ctx)
	// Taken before the L2 write: a write or invalidation of the key (or of
	// its tags) on this replica after it may have reached L2 after this one.
	f := c.guard.Begin(key)
	var l2err, cause error
	var servers []string
	if store := c.client.l2; store != nil {
		servers = c.client.serversOf([]string{key})
		if l2err = c.versionReady(ctx); l2err == nil {
			var l2ns string
			cause = c.underVersion(ctx, func(ns string) (uint64, bool, error) { l2ns = ns; return c.writeL2(caller, ns, e, payload) })
			if errors.Is(cause, ErrBackpressure) || errors.Is(cause, errNothingWritten) {
				return cause // nothing was written
			}
			if u := (*uncachedError)(nil); errors.As(cause, &u) {
				// L2 holds nothing of the key: not a failure of its server.
				c.reportL2(ctx, "tags", u.err)
				e.Value.l1Only, cause = true, nil
			}
			if cause != nil {
				e.Value.l1Only = true // L2 may hold nothing of it
				c.reportL2(ctx, "set", cause)
				l2err = fmt.Errorf("tiered: set %q in L2: %w", key, cause)
			}
			c.spoolFailed(l2ns, []string{key}, cause)
		}
	}
	if c.beforeSetInstall != nil {
		c.beforeSetInstall(key)
	}
	if c.flusher != nil && l2err != nil {
		c.dropL1(key) // not recorded for the database: no replica may serve it
	} else {
		c.installWritten(f, e)
	}
	return c.degraded(l2err, c.client.publishWrite(ctx, c.ns, []string{key}, servers, cause, e.Value.version))
}

// installWritten installs e, just written to L2, in L1. The install bumps
// the key's generation, fencing off fills that read L2 before the write. If
// another write or invalidation of the key (or of e's tags) came in since f,
// L2 may hold its result instead: the L1 copy is dropped, and the next read
// asks L2. Without L2, L1 is the truth, and the last install wins.
func (c *Cache[V]) installWritten(f l1.Fence, e *entry[V]) {
	defer c.forgetFlights(e.Key) // after L1 changed: see forgetFlights
	c.audited(e.Key, "written here", e.Value.version)
	switch {
	case c.l1 == nil:
		c.guard.Write(e.Key)
	case c.client.l2 == nil:
		c.l1.Set(e, c.client.clock.NowNano())
	default:
		c.l1.SetAfter(e, f, c.client.clock.NowNano())
	}
}

// write calls Options.Writer, if any, turning a panic into a *PanicError.
func (c *Cache[V]) write(ctx context.Context, key string, v V) (err error) {
	w := c.opts.Writer
	if w == nil {
		return nil
	}
	defer func() {
		if err != nil {
			err = fmt.Errorf("tiered: write-through of %q: %w", key, err)
		}
	}()
	defer recoverCallback("Writer", &err)
	return w(ctx, key, v)
}

// writeL2 writes e to L2, then adds it to its tag sets: a tag invalidation
// that pops a set in between does not see the key, but its new membership
// lands after and the next invalidation finds it. If the memberships fail,
// the value must not stay in L2, where a tag invalidation could not find it.
// The write finishes even if the caller gives up: half a write would leave
// L2 and L1 disagreeing. Timeout bounds it.
//
// It returns the namespace version the write saw, when the store can read it
// with the write (see l2.Store.WriteSeeing).
func (c *Cache[V]) writeL2(ctx context.Context, l2ns string, e *entry[V], payload []byte) (uint64, bool, error) {
	caller := ctx // a write-behind Set blocked on back-pressure waits for it
	ctx = context.WithoutCancel(ctx)
	store := c.client.l2
	if len(e.Tags) > 0 {
		if version, seen, err := c.tagsUnserved(ctx, l2ns, e); err != nil {
			return version, seen, err
		}
	}
	var version uint64
	var seen bool
	var err error
	if c.flusher != nil {
		rec := l2.Record{Key: e.Key, Payload: payload, At: int64(e.Value.version)}
		err = c.backpressured(caller, func() error {
			version, seen, err = store.WriteAppend(ctx, l2ns, e.Key, c.envelope(e, payload), c.l2TTL(e), c.ns, rec, c.opts.WriteBehind.MaxPending)
			return err
		})
	} else {
		version, seen, err = store.WriteSeeing(ctx, l2ns, e.Key, c.envelope(e, payload), c.l2TTL(e), c.ns)
	}
	if err != nil {
		return 0, false, err
	}
	if c.betweenL2Writes != nil {
		c.betweenL2Writes(e.Key)
	}
	if err := c.addTagsIn(ctx, l2ns, e); err != nil {
		if derr := store.Delete(ctx, l2ns, e.Key); derr != nil {
			return 0, false, errors.Join(err, derr)
		}
		return 0, false, &uncachedError{err} // a write-behind record stands: the write is accepted
	}
	return version, seen, nil
}

// tagsUnserved reports why e cannot be cached in L2 under l2ns, before
// anything is written: a tag whose set lives on a Ring shard out of
// service (see l2.Store.AddTags). Without write-behind the key's old value
// is deleted, so L2 holds nothing stale (an uncachedError, or the delete's
// error); with it the Set fails with errNothingWritten, as nothing can
// record the write.
func (c *Cache[V]) tagsUnserved(ctx context.Context, l2ns string, e *entry[V]) (uint64, bool, error) {
	err := c.client.l2.TagsServing(l2ns, e.Tags)
	switch {
	case err == nil:
		return 0, false, nil
	case c.flusher != nil:
		return 0, false, fmt.Errorf("tiered: set %q: %w: %w", e.Key, errNothingWritten, err)
	}
	version, seen, derr := c.client.l2.DeleteSeeing(ctx, l2ns, c.ns, e.Key)
	if derr != nil {
		return 0, false, errors.Join(err, derr)
	}
	return version, seen, &uncachedError{err}
}

// uncachedError is a Set's value kept out of L2 (its tags' sets could not
// take it) once L2 held nothing of the key: the write is no failure of the
// key's server, and the value lives in L1 alone.
type uncachedError struct{ err error }

func (u *uncachedError) Error() string { return "tiered: value kept out of L2: " + u.err.Error() }
func (u *uncachedError) Unwrap() error { return u.err }

// errNothingWritten: a write-behind Set refused before anything was
// recorded.
var errNothingWritten = errors.New("nothing written")

// delete is Delete after validation: L2, then L1 (even if L2 failed).
func (c *Cache[V]) delete(ctx context.Context, keys []string) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("tiered: delete: %w", err)
	}
	done, err := c.client.beginWrite()
	if err != nil {
		return err
	}
	defer done()
	var l2err, cause error
	var servers []string
	if store := c.client.l2; store != nil {
		servers = c.client.serversOf(keys)
		if l2err = c.versionReady(ctx); l2err == nil {
			wctx := context.WithoutCancel(ctx)
			var l2ns string
			del := func(ns string) (uint64, bool, error) { l2ns = ns; return store.DeleteSeeing(wctx, ns, c.ns, keys...) }
			if c.flusher != nil {
				del = func(ns string) (uint64, bool, error) { l2ns = ns; return 0, false, c.deleteAppend(ctx, wctx, ns, keys) }
			}
			if cause = c.underVersion(wctx, del); cause != nil {
				c.reportL2(ctx, "delete", cause)
				l2err = fmt.Errorf("tiered: delete in L2: %w", cause)
			}
			c.spoolFailed(l2ns, keys, cause)
		}
	}
	for _, k := range keys {
		c.dropL1(k)
	}
	return c.degraded(l2err, c.client.publishWrite(detached(ctx), c.ns, keys, servers, cause, uint64(c.client.clock.NowNano())))
}

// deleteAppend deletes keys from L2 under ns and records a tombstone of
// each for the database, key by key.
func (c *Cache[V]) deleteAppend(caller, ctx context.Context, ns string, keys []string) error {
	var errs []error
	for _, k := range keys {
		now := c.client.clock.NowNano()
		rec := l2.Record{Key: k, Deleted: true, At: now}
		errs = append(errs, c.backpressured(caller, func() error {
			return c.client.l2.DeleteAppend(ctx, ns, k, c.ns, rec, c.opts.WriteBehind.MaxPending)
		}))
	}
	return errors.Join(errs...)
}

// spoolFailed hands the keys whose write under l2ns failed with cause (nil:
// none failed) to the client's retries, when the store does not heal: their
// old values stay readable in L2 until a delete lands (see retrier). A key
// whose write landed needs no delete still waiting.
func (c *Cache[V]) spoolFailed(l2ns string, keys []string, cause error) {
	if c.client.l2.Heals() || l2ns == "" {
		return
	}
	if cause == nil || errors.Is(cause, errVersionUnchecked) {
		for _, k := range keys {
			c.client.retry.forgetDelete(l2ns, k)
		}
		return
	}
	failed := l2.KeyFailed(cause)
	var spooled []string
	for i, k := range keys {
		if failed(i) {
			spooled = append(spooled, k)
		} else {
			c.client.retry.forgetDelete(l2ns, k)
		}
	}
	var until int64
	if !c.opts.Sliding { // reads of a sliding value keep it alive: no expiry bounds it
		until = c.client.clock.NowNano() + int64(c.longestLife())
	}
	c.client.retry.spoolDeletes(c.ns, l2ns, c.l2ns, spooled, until)
}

// longestLife bounds how long a value this cache wrote stays in L2: the
// longest TTL it used (jittered), plus its stale windows.
func (c *Cache[V]) longestLife() time.Duration {
	ttl := time.Duration(max(c.longestTTL.Load(), int64(c.opts.TTL), int64(c.opts.NegativeTTL)))
	jitter := max(c.opts.Jitter, 0)
	return time.Duration(float64(ttl)*(1+jitter)) + max(c.opts.StaleWhileRevalidate, c.opts.StaleIfError) + time.Second
}

// degraded is the result of a write whose L2 part failed with l2err (or
// succeeded: nil) and whose publication returned perr. L1 and the other
// replicas were updated either way. When the store heals (it keeps the
// server out of service until the keys are deleted from it), the write is
// complete and l2err is only reported to the Observer and the log;
// otherwise (or when the write did not reach L2 at all, ErrVersionUnknown,
// or its namespace could not be checked after it) the old value may still
// be read from L2, and the caller learns. A write-behind write always
// fails with its L2 error: it was not recorded for the database.
func (c *Cache[V]) degraded(l2err, perr error) error {
	if l2err == nil || c.flusher == nil && c.client.l2.Heals() && !errors.Is(l2err, ErrVersionUnknown) && !errors.Is(l2err, errVersionUnchecked) {
		return perr
	}
	return errors.Join(l2err, perr)
}

// serversOf returns the server each key is sent to now, taken before a
// write: a failed write may reroute its key at once (its server taken out
// of service), and the invalidation must name the server that missed it.
func (c *Client) serversOf(keys []string) []string {
	if !c.l2.Heals() {
		return nil // nothing to name: receivers' stores do not l1.Fence
	}
	servers := make([]string, len(keys))
	for i, k := range keys {
		servers[i] = c.l2.Server(k)
	}
	return servers
}

// publishWrite publishes a write or deletion of keys of ns whose L2 part
// failed with cause (nil: it succeeded). Keys whose write failed go out
// marked L2Missed, one message per server that missed them (servers, from
// serversOf, names it; receivers fence only that server, and only if they
// route the key there); the others, and all of them when the write reached
// L2 and only its namespace check failed, go out plain.
func (c *Client) publishWrite(ctx context.Context, ns string, keys, servers []string, cause error, version uint64) error {
	if cause == nil || errors.Is(cause, errVersionUnchecked) {
		return c.publish(ctx, coherence.KindKeys, ns, keys, version)
	}
	failed := l2.KeyFailed(cause)
	groups := map[string][]string{} // server -> keys that failed there
	var plain []string
	for i, k := range keys {
		switch {
		case !failed(i):
			plain = append(plain, k)
		case servers == nil:
			groups[""] = append(groups[""], k)
		default:
			groups[servers[i]] = append(groups[servers[i]], k)
		}
	}
	var errs []error
	if len(plain) > 0 {
		errs = append(errs, c.publish(ctx, coherence.KindKeys, ns, plain, version))
	}
	for server, ks := range groups {
		errs = append(errs, c.publish(bus.WithL2MissedOn(ctx, server), coherence.KindKeys, ns, ks, version))
	}
	return errors.Join(errs...)
}

// dropL1 removes key from L1 and fences off in-flight fills of it.
func (c *Cache[V]) dropL1(key string) {
	defer c.forgetFlights(key) // after L1 changed: see forgetFlights
	c.audited(key, "dropped (a write or invalidation)", 0)
	if c.l1 == nil {
		c.guard.Write(key)
		return
	}
	c.l1.Delete(key)
}

// forgetFlights detaches the reads of key in flight: a Get starting after
// this write must not join a read that began before it. Every write or
// invalidation calls it after changing L1 (and after its L2 effect): a read
// that began before the change may answer from the old L1 copy (with L2 down,
// unvouched), and a read that begins after it sees L1 and L2 changed. Callers
// that join in between are concurrent with the write and may get either.
func (c *Cache[V]) forgetFlights(key string) {
	c.loads.Forget(key)
	c.lookup.Forget(key)
}

// forgetAllFlights is forgetFlights for every key.
func (c *Cache[V]) forgetAllFlights() {
	c.loads.ForgetAll()
	c.lookup.ForgetAll()
}
