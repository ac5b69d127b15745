package tiered

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/strata-cache/strata/coherence"
	"github.com/strata-cache/strata/l2"
)

// clear is Cache.Clear.
func (c *Cache[V]) clear(ctx context.Context) error {
	done, err := c.client.beginWrite()
	if err != nil {
		return err
	}
	defer done()
	if ctx, err = detach(ctx, "clear"); err != nil {
		return err
	}
	v := c.version() + 1
	if store := c.client.l2; store != nil {
		if v, err = store.BumpVersion(ctx, c.ns); err != nil {
			// The bump may have happened (its reply lost) or happened on
			// some shards: every replica reads the version again.
			c.stats.l2Errors.Add(1)
			c.dropAll()
			c.reloadVersion()
			perr := c.client.publish(ctx, coherence.KindClear, c.ns, nil, 0)
			return errors.Join(fmt.Errorf("tiered: clear %q in L2: %w", c.ns, err), perr)
		}
	}
	c.setVersion(v)
	c.versionKnown.Store(true)
	c.dropAll()
	return c.client.publish(ctx, coherence.KindClear, c.ns, nil, v)
}

// invalidatePattern is Cache.InvalidatePattern.
func (c *Cache[V]) invalidatePattern(ctx context.Context, pattern string) error {
	if pattern == "" || len(pattern) > MaxKeyLength {
		return fmt.Errorf("%w: pattern of %d bytes", ErrInvalidKey, len(pattern))
	}
	done, err := c.client.beginWrite()
	if err != nil {
		return err
	}
	defer done()
	if ctx, err = detach(ctx, "invalidate pattern"); err != nil {
		return err
	}
	if store := c.client.l2; store != nil {
		if err = c.versionReady(ctx); err != nil {
			c.stats.l2Errors.Add(1)
		} else if err = c.underVersion(ctx, unseen(func(l2ns string) error {
			_, err := store.DeleteMatching(ctx, l2ns, pattern)
			return err
		})); err != nil {
			c.stats.l2Errors.Add(1)
			err = fmt.Errorf("tiered: invalidate pattern %q in L2: %w", pattern, err)
		}
	}
	c.dropAll()
	return errors.Join(err, c.client.publish(ctx, coherence.KindPattern, c.ns, []string{pattern}, uint64(c.client.clock.NowNano())))
}

// underVersion runs op, an L2 write or invalidation, under the namespace's
// current L2 name, then reads the namespace version again. A Clear on
// another replica that this one has not heard of yet moves the namespace:
// op then ran where no reader looks, while a load of the data op replaces
// may be filling the new namespace. So the newer version is taken (L1
// dropped, as its Clear's message will) and op runs again under it.
//
// Once is enough: every Clear that returned before op began has a version
// the read sees. A later one is concurrent with op, which may be ordered
// before it: its bump voids what op wrote, and loads under its version
// start after op began, reading data op's caller had already changed.
//
// An op that read the version itself, atomically with its write (a Set on a
// single node), says so with seen, and no second read is needed.
func (c *Cache[V]) underVersion(ctx context.Context, op func(l2ns string) (version uint64, seen bool, err error)) error {
	v := c.version()
	now, seen, err := op(c.l2ns())
	if err != nil {
		return err
	}
	if !seen {
		if now, err = c.client.l2.LatestVersion(ctx, c.ns); err != nil {
			return fmt.Errorf("%w: %w", errVersionUnchecked, err)
		}
	}
	if now <= v {
		return nil
	}
	c.setVersion(now)
	c.dropAll()
	_, _, err = op(c.l2ns())
	return err
}

// unseen adapts an op that does not read the namespace version to
// underVersion.
func unseen(op func(l2ns string) error) func(string) (uint64, bool, error) {
	return func(l2ns string) (uint64, bool, error) { return 0, false, op(l2ns) }
}

// nsVersion is a namespace version and the namespace's name in L2 keys at
// that version.
type nsVersion struct {
	version uint64
	name    string
}

// l2ns is the namespace as L2 keys spell it at the current version.
func (c *Cache[V]) l2ns() string { return c.at.Load().name }

// version is the namespace version in use.
func (c *Cache[V]) version() uint64 { return c.at.Load().version }

// setVersion moves the namespace to version v, if v is newer.
func (c *Cache[V]) setVersion(v uint64) {
	next := &nsVersion{version: v, name: l2.NamespaceAt(c.ns, v)}
	for {
		cur := c.at.Load()
		if v <= cur.version || c.at.CompareAndSwap(cur, next) {
			return
		}
	}
}

// versionTimeout bounds one read of the namespace version.
const versionTimeout = time.Second

// Back-off of the background version reads after a failure: the first retry
// comes soon (a blip), later ones at most a second apart.
const (
	versionRetryMin = 10 * time.Millisecond
	versionRetryMax = time.Second
)

// ErrVersionUnknown is returned by writes and invalidations of a cache whose
// namespace version could not be read from L2 yet (Redis was unreachable
// when the cache was made): writing under a guessed version would miss the
// keys every other replica reads. L1 and the other replicas are updated; L2
// is not. The version is read again in the background until it is known.
var ErrVersionUnknown = fmt.Errorf("tiered: namespace version unknown: %w", l2.ErrUnavailable)

// errVersionUnchecked says a write or invalidation reached L2 but the
// namespace version could not be read after it: a Clear this replica has not
// heard of may have moved the namespace, the write then being where no
// reader looks. It marks no server dirty (the server took the write), and
// is returned to the caller, who may retry.
var errVersionUnchecked = fmt.Errorf("tiered: namespace version not checked after the write: %w", l2.ErrUnavailable)

// loadVersion reads the namespace's version from L2. A newer version than
// the one in use is taken, then L1 dropped: in that order, a read between
// the two cannot fill L1 from the old namespace after the drop.
func (c *Cache[V]) loadVersion(ctx context.Context) error {
	store := c.client.l2
	if store == nil {
		c.versionKnown.Store(true)
		return nil
	}
	if c.beforeVersion != nil {
		c.beforeVersion()
	}
	ctx, cancel := context.WithTimeout(ctx, versionTimeout)
	defer cancel()
	v, err := store.NamespaceVersion(ctx, c.ns)
	if err != nil {
		if !errors.Is(err, context.Canceled) {
			c.reportL2(ctx, "version", err)
		}
		return err
	}
	switch {
	case v > c.version():
		c.setVersion(v)
		c.dropAll()
	case !c.versionKnown.Load():
		// Writes made while it was unknown reached L1 but not L2.
		c.dropAll()
	}
	c.versionKnown.Store(true)
	return nil
}

// reloadVersion reads the namespace version again in the background, until
// a read that started after this call succeeds or the client closes: a lost
// Clear may have changed it. One goroutine serves the calls that come while
// it runs. It never blocks the caller (the bus's heartbeat goroutine, say).
func (c *Cache[V]) reloadVersion() {
	if c.client.l2 == nil {
		return
	}
	c.reloadWanted.Add(1)
	if !c.reloading.CompareAndSwap(false, true) {
		return // the running reload sees the request and reads again
	}
	ctx, done, err := c.client.beginLoad(context.Background())
	if err != nil {
		c.reloading.Store(false)
		return
	}
	go func() {
		defer done()
		for {
			want := c.reloadWanted.Load()
			for wait := versionRetryMin; c.loadVersion(ctx) != nil; wait = min(2*wait, versionRetryMax) {
				if sleep(ctx, wait) != nil {
					c.reloading.Store(false)
					return
				}
			}
			if c.reloadWanted.Load() != want {
				continue // asked again during the read
			}
			c.reloading.Store(false)
			// A request between the check and the store found the flag set
			// and left it to this goroutine.
			if c.reloadWanted.Load() == want || !c.reloading.CompareAndSwap(false, true) {
				return
			}
		}
	}()
}

// versionReady makes sure the namespace version is known before a write or
// invalidation names L2 keys, reading it once if not: ErrVersionUnknown if
// that fails.
func (c *Cache[V]) versionReady(ctx context.Context) error {
	if c.versionKnown.Load() {
		return nil
	}
	if err := c.loadVersion(context.WithoutCancel(ctx)); err != nil {
		return fmt.Errorf("%w: %w", ErrVersionUnknown, err)
	}
	return nil
}
