package tiered

import (
	"context"

	"github.com/strata-cache/strata/l2"
)

// SetBeforeInstall makes c call f between reading a value (L2 or loader) and
// installing it in L1, so tests can land an invalidation in between.
func SetBeforeInstall[V any](c *Cache[V], f func(key string)) { c.beforeInstall = f }

// Bus returns the client's invalidation bus, or nil.
func (c *Client) Bus() interface{ Trusted() bool } { return c.bus }

// GetPastL1 runs Get's path after its L1 check came up empty, as when another
// caller's fill lands between that check and the flight.
func GetPastL1[V any](c *Cache[V], ctx context.Context, key string, load Loader[V]) (V, Info, error) {
	r, err := c.getSlow(ctx, key, load, nil, false)
	if err != nil {
		var zero V
		return zero, Info{}, err
	}
	v, err := c.result(r.e)
	return v, r.info, err
}

// SetSetHooks makes c's Set call betweenWrites between writing the value to
// L2 and adding its tag memberships, and beforeInstall between L2 and the L1
// install. Either may be nil.
func SetSetHooks[V any](c *Cache[V], betweenWrites, beforeInstall func(key string)) {
	c.betweenL2Writes, c.beforeSetInstall = betweenWrites, beforeInstall
}

// SetBeforeVersion makes c call f before each read of its namespace version.
func SetBeforeVersion[V any](c *Cache[V], f func()) { c.beforeVersion = f }

// Reset runs what a lost invalidation makes the bus do to c.
func Reset[V any](c *Cache[V]) { c.reset() }

// VersionKnown reports whether c has read its namespace version, and which.
func VersionKnown[V any](c *Cache[V]) (uint64, bool) { return c.version(), c.versionKnown.Load() }

// SetVersionForTest runs c's setVersion(v) (review hook).
func SetVersionForTest[V any](c *Cache[V], v uint64) { c.setVersion(v) }

// L2NameForTest returns the namespace name c's L2 keys use now (review hook).
func L2NameForTest[V any](c *Cache[V]) string { return c.l2ns() }

// ReloadingForTest reports whether a background version reload runs (review hook).
func ReloadingForTest[V any](c *Cache[V]) bool { return c.reloading.Load() }

// L2 returns the client's Redis tier, or nil.
func (c *Client) L2() *l2.Store { return c.l2 }

// FlusherLooked reports whether c's write-behind flusher finished its first
// pass over the streams.
func FlusherLooked[V any](c *Cache[V]) bool { return c.flusher != nil && c.flusher.looked.Load() }

// DefaultCodec returns the codec a Cache[V] uses when Options.Codec is nil.
func DefaultCodec[V any]() Codec[V] { return defaultCodec[V]() }
