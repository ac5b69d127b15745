package tiered

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/strata-cache/strata/coherence"
)

// Clear invalidates the whole namespace on every replica: it bumps the
// namespace's version in L2, so every key written before is unreachable at
// once (the old keys expire in Redis by their TTL), empties this replica's
// L1 and tells the others to do the same.
func (c *Cache[V]) Clear(ctx context.Context) error {
	if c.client.closed.Load() {
		return ErrClosed
	}
	v := c.version.Load() + 1
	if store := c.client.l2; store != nil {
		var err error
		if v, err = store.BumpVersion(ctx, c.ns); err != nil {
			c.stats.l2Errors.Add(1)
			return fmt.Errorf("tiered: clear %q in L2: %w", c.ns, err)
		}
	}
	c.setVersion(v)
	c.dropAll()
	return c.client.publish(ctx, coherence.KindClear, c.ns, nil, v)
}

// InvalidatePattern removes every key of the namespace matching pattern
// (Redis glob syntax: *, ?, [abc], \ to escape) from L2 on every shard or
// cluster master, and from every replica's L1.
//
// NOTE: L1 has no key index, so every replica drops its whole L1 for the
// namespace rather than only the matching keys. The pattern is matched
// against keys as L2 stores them: a key starting with '}' or '~' is stored
// with a '~' in front.
func (c *Cache[V]) InvalidatePattern(ctx context.Context, pattern string) error {
	if pattern == "" || len(pattern) > MaxKeyLength {
		return fmt.Errorf("%w: pattern of %d bytes", ErrInvalidKey, len(pattern))
	}
	if c.client.closed.Load() {
		return ErrClosed
	}
	var err error
	if store := c.client.l2; store != nil {
		if _, err = store.DeleteMatching(ctx, c.l2ns(), pattern); err != nil {
			c.stats.l2Errors.Add(1)
			err = fmt.Errorf("tiered: invalidate pattern %q in L2: %w", pattern, err)
		}
	}
	c.dropAll()
	return errors.Join(err, c.client.publish(ctx, coherence.KindPattern, c.ns, []string{pattern}, uint64(c.client.clock.NowNano())))
}

// l2ns is the namespace as L2 keys spell it at the current version.
func (c *Cache[V]) l2ns() string { return *c.l2name.Load() }

// setVersion moves the namespace to version v, if v is newer.
func (c *Cache[V]) setVersion(v uint64) {
	for {
		cur := c.version.Load()
		if v <= cur {
			return
		}
		if c.version.CompareAndSwap(cur, v) {
			name := c.ns + "#" + strconv.FormatUint(v, 10)
			c.l2name.Store(&name)
			return
		}
	}
}

// versionTimeout bounds reading the namespace version at start and on reset.
const versionTimeout = time.Second

// loadVersion reads the namespace's version from L2. A failure is logged:
// the version is read again at the next reset of L1.
func (c *Cache[V]) loadVersion(ctx context.Context) {
	store := c.client.l2
	if store == nil {
		return
	}
	ctx, cancel := context.WithTimeout(ctx, versionTimeout)
	defer cancel()
	v, err := store.NamespaceVersion(ctx, c.ns)
	if err != nil && !errors.Is(err, context.Canceled) {
		c.reportL2(ctx, "version", err)
		return
	}
	c.setVersion(v)
}
