package tiered

import (
	"context"
	"fmt"
	"hash/maphash"
	"sync/atomic"

	"github.com/strata-cache/strata/internal/flight"
	"github.com/strata-cache/strata/l1"
)

// Loader loads the value of key from the source of truth. It returns
// ErrNotFound (or an error wrapping it) when there is no such record.
//
// Concurrent Gets of one key on a replica share one load, which runs with the
// ctx of the Get that started it (ended early by Client.Close). If that ctx
// ends and the load fails, the other callers are not failed with it: one of
// them loads again. Loaders should honour ctx.
type Loader[V any] func(ctx context.Context, key string) (V, error)

// BatchLoader loads several keys at once. Keys absent from the returned map
// are not found. The ctx is the caller's.
type BatchLoader[V any] func(ctx context.Context, keys []string) (map[string]V, error)

// Cache is a namespace of values of type V, cached in L1 and L2. It is safe
// for concurrent use. Make one with NewCache.
type Cache[V any] struct {
	client *Client
	ns     string
	opts   Options[V]
	l1     *l1.Cache[cached[V]] // nil when disabled

	loads      flight.Group[result[V]] // Gets with a loader
	lookup     flight.Group[result[V]] // Gets without one: they must not answer a loader's waiters
	refreshing keySet                  // keys with a background refresh running
	extensions extensionLog            // sliding expiration: next extension per key
	guard      *l1.Guard               // the fill guard: L1's, or its own when L1 is disabled
	stats      stats
	audits     auditCounters // the auditor's verdicts on this cache's hits
	longestTTL atomic.Int64  // the longest WithTTL a Set used (see longestLife)
	flusher    *flusher[V]   // with Options.WriteBehind; nil otherwise
	typeID     uint64        // the fingerprint of V and the codec in L2 entries (typeFingerprint)

	// at is the namespace's version and its name in L2 keys (ns, or ns#N
	// after the Clear that made version N), swapped together and only
	// upwards.
	at atomic.Pointer[nsVersion]
	// versionKnown is set once the version was read from L2 (at once
	// without L2). Until then reads bypass L2 and writes fail with
	// ErrVersionUnknown. reloading is set while a background read runs.
	versionKnown atomic.Bool
	reloading    atomic.Bool
	reloadWanted atomic.Uint64 // reloads asked for (see reloadVersion)

	// Test hooks (export_test.go), nil otherwise.
	beforeInstall    func(key string) // between a read and its L1 install
	betweenL2Writes  func(key string) // in Set, between the value's write and its tag memberships
	beforeSetInstall func(key string) // in Set, between L2 and the L1 install
	beforeVersion    func()           // before a read of the namespace version
}

// NewCache returns the cache of namespace on c. Two caches with the same
// namespace, on any replica, share L2 entries when they agree on V and Codec
// (or on Options.Schema); an entry of the other kind is a miss to them.
func NewCache[V any](c *Client, namespace string, opts Options[V]) (*Cache[V], error) {
	if err := validateNamespace(namespace); err != nil {
		return nil, err
	}
	if err := opts.setDefaults(); err != nil {
		return nil, err
	}
	cache := &Cache[V]{client: c, ns: namespace, opts: opts, typeID: typeFingerprint(opts.Codec, opts.Schema)}
	cache.at.Store(&nsVersion{name: namespace})
	cache.extensions.seed = maphash.MakeSeed()
	if !opts.L1.Disabled {
		local, err := l1.New[cached[V]](opts.l1Config())
		if err != nil {
			return nil, fmt.Errorf("tiered: %w", err)
		}
		cache.l1 = local
		cache.guard = local.Guard()
	} else {
		cache.guard = l1.NewGuard()
	}
	if opts.WriteBehind != nil {
		if err := cache.checkWriteBehind(); err != nil {
			cache.close()
			return nil, err
		}
		cache.flusher = newFlusher(cache)
	}
	if err := c.register(cache); err != nil {
		cache.drain()
		cache.close()
		return nil, err
	}
	if cache.loadVersion(context.Background()) != nil {
		cache.reloadVersion()
	}
	return cache, nil
}

// Namespace returns the cache's namespace.
func (c *Cache[V]) Namespace() string { return c.ns }

// Get returns the value of key: from L1 if fresh there, else from L2, else
// from load, whose result is then cached in both tiers.
//
// Concurrent Gets of one key on this replica share one L2 read and one load;
// across replicas, a load lease in L2 lets one replica load a missing key
// while the others wait for its fill. Near expiry a hit may start a
// background refresh (EarlyRefreshBeta). Past expiry, a stale value may be
// served inside the StaleWhileRevalidate and StaleIfError windows; use
// GetWithInfo to learn when that happened and why.
//
// A nil load makes Get a lookup: only a fresh value answers, and a miss
// returns ErrNotFound.
func (c *Cache[V]) Get(ctx context.Context, key string, load Loader[V]) (V, error) {
	if err := c.check(key); err != nil {
		c.client.failed(ctx, OpGet, c.ns, key, err)
		var zero V
		return zero, err
	}
	var seen *entry[V]
	looked := false
	if c.l1 != nil && c.client.trusted.Load() {
		looked = true
		if e, ok := c.l1.Get(key); ok {
			if now := c.client.clock.NowNano(); now < e.LocalFreshUntil {
				return c.hitL1(ctx, e, now, load)
			}
			seen = e
		}
	}
	var sp Span
	if c.client.spans != nil {
		ctx, sp = c.client.start(ctx, OpGet, c.ns, key, 1)
	}
	r, err := c.getSlow(ctx, key, load, seen, looked)
	end(sp, r.outcome(err))
	if err != nil {
		var zero V
		return zero, err
	}
	return c.result(r.e)
}

// GetWithInfo is Get that also tells where the value came from and whether it
// was stale, with the loader's error that made it so (Info.Cause).
func (c *Cache[V]) GetWithInfo(ctx context.Context, key string, load Loader[V]) (V, Info, error) {
	var zero V
	if err := c.check(key); err != nil {
		c.client.failed(ctx, OpGet, c.ns, key, err)
		return zero, Info{}, err
	}
	if e, now, ok := c.getL1(key); ok {
		v, err := c.hitL1(ctx, e, now, load)
		return v, Info{Tier: TierL1}, err
	}
	ctx, sp := c.client.start(ctx, OpGet, c.ns, key, 1)
	r, err := c.getSlow(ctx, key, load, nil, false)
	end(sp, r.outcome(err))
	if err != nil {
		return zero, Info{}, err
	}
	v, err := c.result(r.e)
	return v, r.info, err
}

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
	ctx, sp := c.client.start(ctx, OpGetMany, c.ns, "", len(keys))
	g, err := c.getMany(ctx, keys, load)
	end(sp, Outcome{Batch: g.n, Err: err})
	return g.out, err
}

// Set stores v under key in both tiers (after Writer, if any). When Set
// returns, Gets on this replica return v.
//
// NOTE: with a Writer, an error from Set may come after the Writer succeeded
// (L2 failed): the source of truth holds v, the cache does not, and this
// replica's L1 copy is dropped. Retrying Set writes v again.
func (c *Cache[V]) Set(ctx context.Context, key string, v V, opts ...SetOption) error {
	ctx, sp := c.client.start(ctx, OpSet, c.ns, key, 1)
	err := c.check(key)
	if err == nil {
		so := setOptions{ttl: c.opts.TTL}
		for _, o := range opts {
			o(&so)
		}
		err = c.set(ctx, key, v, so)
	}
	end(sp, Outcome{Err: err})
	return err
}

// Delete removes keys from both tiers. When it returns, Gets on this replica
// do not return the old values. L1 is cleared even when L2 fails; the L2
// error is returned.
func (c *Cache[V]) Delete(ctx context.Context, keys ...string) error {
	ctx, sp := c.client.start(ctx, OpDelete, c.ns, soleKey(keys), len(keys))
	err := c.checkAll(keys)
	if err == nil {
		err = c.delete(ctx, keys)
	}
	end(sp, Outcome{Err: err})
	return err
}

// InvalidateTags removes every key carrying one of tags (from Options.Tags
// or WithTags) from L2 and from every replica's L1.
func (c *Cache[V]) InvalidateTags(ctx context.Context, tags ...string) error {
	ctx, sp := c.client.start(ctx, OpInvalidateTags, c.ns, "", len(tags))
	err := c.invalidateTags(ctx, tags...)
	end(sp, Outcome{Err: err})
	return err
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
	ctx, sp := c.client.start(ctx, OpInvalidatePattern, c.ns, "", 1)
	err := c.invalidatePattern(ctx, pattern)
	end(sp, Outcome{Err: err})
	return err
}

// Clear invalidates the whole namespace on every replica: it bumps the
// namespace's version in L2, so every key written before is unreachable at
// once (the old keys expire in Redis by their TTL), empties this replica's
// L1 and tells the others to do the same.
func (c *Cache[V]) Clear(ctx context.Context) error {
	ctx, sp := c.client.start(ctx, OpClear, c.ns, "", 0)
	err := c.clear(ctx)
	end(sp, Outcome{Err: err})
	return err
}

// DeadLetters lists the write-behind writes given up after
// WriteBehind.MaxAttempts failed flushes (or undecodable), with why; nil
// without WriteBehind.
func (c *Cache[V]) DeadLetters(ctx context.Context) ([]DeadLetter[V], error) {
	return c.deadLetters(ctx)
}

// Redrive puts the dead-letter writes back to be flushed again, and
// returns how many it moved.
func (c *Cache[V]) Redrive(ctx context.Context) (int, error) { return c.redrive(ctx) }

// Stats returns the cache's counters since it was made.
func (c *Cache[V]) Stats() Stats { return c.counters() }
