// Package l1 is Strata's in-process tier, usable on its own: a cache of
// decoded entries on ristretto or otter (Engine) that is synchronous (a
// write is visible to every Get when it returns), collision-safe (a hash
// collision is a miss, never another key's value), bounded in cost and in
// how long a copy may be served (MaxTTL: no entry's LocalStaleUntil is more
// than MaxTTL after its install, GetAt misses an entry past it, and the
// sweeper removes it within two seconds), with a tag index, and with a fill
// guard (Begin, SetIf) that keeps a fill read before a write or an
// invalidation from landing.
package l1

import (
	"errors"
	"sync"
	"sync/atomic"
	"time"
)

// Defaults used when a Config field is zero.
const (
	// DefaultMaxCost bounds the L1 at 64 MiB of encoded values: big enough for
	// the hot set of a typical service, small enough to leave the heap alone.
	DefaultMaxCost = 64 << 20
	// DefaultMaxTTL is the backstop on how long an L1 copy may be served
	// without looking at L2, whatever the entry's own TTL: it bounds staleness
	// if an invalidation is ever missed.
	DefaultMaxTTL = time.Minute
	// entryOverhead approximates the bytes an Entry and its ristretto item use
	// beyond the encoded value and the key.
	entryOverhead = 128
	// counterBytes is how many bytes of MaxCost get one admission counter by
	// default: ten counters for an entry of 160 bytes (the overhead, a short
	// key and a few bytes of value). Fewer counters per entry cost hit
	// ratio (issue 16's replays); each takes about 3.2 bytes (ristretto's
	// count-min sketch of 4 × 4 bits and its doorkeeper's 1.2 bytes), but
	// ristretto rounds both up to powers of two: 4 to 6 bytes each, so an
	// empty cache holds a quarter to two fifths of MaxCost in counters from
	// New on (16 MiB at the default 64 MiB), less with a smaller
	// NumCounters. TestDefaultCountersWithinDocumentedBound holds it.
	counterBytes = (entryOverhead + 32) / 10
)

// Entry is what L1 stores: a value, its key, its deadlines and its tags.
// Times are Unix nanoseconds, on whatever clock the caller passes to Set.
//
// An entry belongs to the cache once stored and must not be modified: it is
// shared between the goroutines that Get it.
type Entry[V any] struct {
	// Key is the entry's own key. Ristretto keeps only hashes, so Get compares
	// it to make a hash collision a miss instead of another key's value.
	Key string
	// LocalFreshUntil and LocalStaleUntil are FreshUntil and StaleUntil
	// capped at install time + MaxTTL: how long this process may serve the
	// entry without asking the tier behind it. Set fills them in; readers
	// check them. (The fields a hit reads, Key, LocalFreshUntil and Value,
	// come first, to share a cache line.)
	LocalFreshUntil int64
	// Value is the cached value.
	Value V
	// LocalStaleUntil: see LocalFreshUntil.
	LocalStaleUntil int64
	// FreshUntil is when the value stops being fresh.
	FreshUntil int64
	// StaleUntil is when the value may no longer be served even as stale
	// (for example while it is revalidated); the cache's sweeper removes
	// the entry within two seconds after LocalStaleUntil (GetAt misses it
	// from LocalStaleUntil on; Get returns it until it is removed).
	// A StaleUntil before FreshUntil counts as FreshUntil.
	StaleUntil int64
	// Tags are the value's invalidation tags (see KeysWithTag).
	Tags []string
	// Size is the value's size in bytes, as the caller measures it (encoded,
	// say): with the key and a fixed overhead, it is the entry's cost.
	Size int

	cost     int64       // Size + len(Key) + entryOverhead, set on install
	expireAt int64       // when the sweeper removes it (wall clock), set on install
	gone     atomic.Bool // it left the cache
}

// Config configures an L1 cache.
type Config struct {
	// MaxCost is the total cost (bytes of encoded value plus key and a fixed
	// per-entry overhead) the cache holds. Zero means DefaultMaxCost.
	MaxCost int64
	// MaxTTL bounds how long any entry is kept, from its install. Zero means
	// DefaultMaxTTL.
	MaxTTL time.Duration
	// NumCounters is the number of TinyLFU admission counters of the
	// Ristretto engine (Otter sizes its own). Zero means
	// max(MaxCost/counterBytes, 1000): ten counters per entry of the
	// smallest size L1 holds in numbers (see counterBytes), as ristretto
	// advises ten per entry.
	NumCounters int64
	// Engine is the cache library under L1. The zero value is Ristretto.
	Engine Engine

	keyToHash func(key string) (uint64, uint64) // tests force collisions with it
}

func (c *Config) setDefaults() error {
	if c.MaxCost < 0 || c.MaxTTL < 0 || c.NumCounters < 0 {
		return errors.New("l1: MaxCost, MaxTTL and NumCounters must not be negative")
	}
	if c.MaxCost == 0 {
		c.MaxCost = DefaultMaxCost
	}
	if c.MaxTTL == 0 {
		c.MaxTTL = DefaultMaxTTL
	}
	if c.NumCounters == 0 {
		c.NumCounters = max(c.MaxCost/counterBytes, 1000)
	}
	return nil
}

// Cache is the local tier for values of type V.
//
// Unlike a bare ristretto cache, writes are synchronous: when Set, Delete,
// InvalidateTags or Clear return, every Get on this process sees their
// effect. A Set that ristretto drops removes any older copy, so a Get never
// returns a value older than the last Set.
//
// Its fill guard keeps a stale fill from landing: a reader that fills L1
// from the tier behind it takes a Fence (Begin) before it reads, and
// installs with SetIf, which refuses data read before a write or an
// invalidation of the key or of one of its tags.
type Cache[V any] struct {
	st      store[V]
	maxTTL  time.Duration
	maxCost int64
	expiry  expiry[V]
	tags    tagIndex[V]
	guard   *Guard
	// life orders writes against Close: ristretto's Close is not safe
	// against a concurrent Set, Del or Wait (a Wait queued after its
	// processor stopped blocks forever; a send after it panics). Writes hold
	// it shared; Close holds it exclusively and sets closed.
	life   sync.RWMutex
	closed bool
	counts counts
}

// New returns an L1 cache configured by cfg.
func New[V any](cfg Config) (*Cache[V], error) {
	if err := cfg.setDefaults(); err != nil {
		return nil, err
	}
	c := &Cache[V]{maxTTL: cfg.MaxTTL, maxCost: cfg.MaxCost, guard: NewGuard()}
	st, err := newStore(c, cfg)
	if err != nil {
		return nil, err
	}
	c.st = st
	c.expiry.stop, c.expiry.done = make(chan struct{}), make(chan struct{})
	go c.sweep()
	return c, nil
}

// MaxTTL returns the backstop TTL in force.
func (c *Cache[V]) MaxTTL() time.Duration { return c.maxTTL }

// Get returns the entry stored for key. It checks no deadline, so that a
// hit reads no clock: it may return an entry past its LocalStaleUntil
// until the sweeper removes it (within two seconds). Callers compare
// LocalFreshUntil and LocalStaleUntil with their own clock, as tiered does,
// or use GetAt.
func (c *Cache[V]) Get(key string) (*Entry[V], bool) {
	e, ok := c.st.get(key)
	if !ok || e.Key != key {
		return nil, false
	}
	return e, true
}

// GetAt is Get at time now (Unix nanoseconds, on the clock passed to Set):
// it misses an entry whose LocalStaleUntil is not after now, so no copy is
// served more than MaxTTL after its install.
func (c *Cache[V]) GetAt(key string, now int64) (*Entry[V], bool) {
	e, ok := c.Get(key)
	if !ok || now >= e.LocalStaleUntil {
		return nil, false
	}
	return e, true
}

// Contains reports whether key has an entry, counting no access in the
// engine's admission policy. It is a hint: on the Ristretto engine it also
// reports true for a key whose 64-bit hash equals a stored key's (about
// one pair of keys in 2^64); Get, which compares keys, misses it.
func (c *Cache[V]) Contains(key string) bool { return c.st.contains(key) }

// entryCost is the cost of an entry of key with a value of size bytes.
func entryCost(key string, size int) int64 { return int64(size + len(key) + entryOverhead) }

// Guard returns the cache's fill guard.
func (c *Cache[V]) Guard() *Guard { return c.guard }

// Begin returns the fence for a read of key from the tier behind L1, to
// present to SetIf (or SetAfter) with what it read.
func (c *Cache[V]) Begin(key string) Fence { return c.guard.Begin(key) }

// SetIf installs e, a fill read at now after f was taken (Begin), unless
// e's key or one of its tags was written or invalidated on this cache since:
// by Set, SetAfter, Delete, InvalidateTags or Clear. It reports whether e
// was installed.
func (c *Cache[V]) SetIf(e *Entry[V], f Fence, now int64) bool {
	return c.guard.install(e.Key, f, e.Tags, false, func() { c.put(e, now) }, func() { c.remove(e.Key) })
}

// Set installs e, read at now, as a write: fills of its key read before it
// are refused. It sets e's local deadlines (FreshUntil and StaleUntil capped
// at now+MaxTTL): e belongs to the cache from here on and must not be
// changed. When Set returns, a Get sees e, or (if the engine dropped or
// rejected it) no entry for the key at all.
func (c *Cache[V]) Set(e *Entry[V], now int64) {
	c.guard.write(e.Key, func() { c.put(e, now) })
}

// SetAfter is Set for a write that reached the tier behind L1 after f was
// taken: if another write or invalidation of e's key (or of its tags) came
// in since, that tier may hold the other one's result, so e is not
// installed and the key is removed instead. It reports whether e was
// installed.
func (c *Cache[V]) SetAfter(e *Entry[V], f Fence, now int64) bool {
	return c.guard.install(e.Key, f, e.Tags, true, func() { c.put(e, now) }, func() { c.remove(e.Key) })
}

// Delete removes keys, and refuses fills of them read before. When it
// returns, no Get sees them, and no Set that returned before Delete was
// called can bring them back.
func (c *Cache[V]) Delete(keys ...string) {
	for _, k := range keys {
		c.guard.write(k, func() { c.remove(k) })
	}
}

// InvalidateTags removes the entries tagged with any of tags, and refuses
// fills of data tagged with them read before.
func (c *Cache[V]) InvalidateTags(tags ...string) {
	c.guard.InvalidateTags(tags...)
	for _, t := range tags {
		c.Delete(c.tags.keys(t)...)
	}
}

// Clear removes every entry, and refuses every fill read before.
func (c *Cache[V]) Clear() {
	c.guard.writeAll(func() {
		c.life.RLock()
		defer c.life.RUnlock()
		if !c.closed {
			c.counts.clearing.Add(1)
			defer c.counts.clearing.Add(-1)
			c.st.clear()
		}
	})
}

// put stores e, read at now.
func (c *Cache[V]) put(e *Entry[V], now int64) {
	c.life.RLock()
	defer c.life.RUnlock()
	if c.closed {
		return
	}
	limit := now + int64(c.maxTTL)
	e.LocalFreshUntil = min(e.FreshUntil, limit)
	e.LocalStaleUntil = min(max(e.StaleUntil, e.FreshUntil), limit)
	ttl := time.Duration(e.LocalStaleUntil - now)
	if ttl <= 0 {
		c.delete(e.Key)
		return
	}
	e.cost = entryCost(e.Key, e.Size)
	if e.cost > c.maxCost {
		// No engine would keep it: refused here alike by both, and no
		// older copy survives.
		c.counts.rejected.Add(1)
		c.delete(e.Key)
		return
	}
	// Indexed, filed and counted before the set: if the engine rejects e,
	// its exit (which may come before set returns) undoes all three.
	c.tags.add(e)
	c.expiry.add(e, ttl)
	c.counts.entries.Add(1)
	if !c.st.set(e) {
		// Dropped by contention (set removed any older copy): no exit comes.
		c.exited(e)
		c.counts.dropped.Add(1)
	}
}

// remove deletes key.
func (c *Cache[V]) remove(key string) {
	c.life.RLock()
	defer c.life.RUnlock()
	if !c.closed {
		c.delete(key)
	}
}

func (c *Cache[V]) delete(key string) { c.st.del(key) }

// Close stops the cache's goroutines, after the writes in progress. Writes
// after it do nothing; Gets miss.
//
// NOTE: a Get racing Close may, rarely, hit ristretto's own Get-during-Close
// hazard (Ristretto engine); callers stop reading before closing (tiered.Client.Close refuses
// new calls first).
func (c *Cache[V]) Close() {
	// The sweeper first, outside the lock: a sweep in progress takes it
	// shared, and would wait for Close while Close waited for it.
	c.expiry.halt()
	c.life.Lock()
	defer c.life.Unlock()
	if !c.closed {
		c.closed = true
		c.counts.clearing.Add(1)
		c.st.close()
	}
}
