package l1

import (
	"fmt"
	"math"
	"sync/atomic"

	"github.com/dgraph-io/ristretto/v2"
	"github.com/dgraph-io/ristretto/v2/z"
	"github.com/maypok86/otter/v2"
)

// Engine selects the cache library under an L1 cache. Both give the same
// guarantees through Cache: writes visible when they return, a hash
// collision a miss, cost bounded by MaxCost, no copy served by GetAt past
// MaxTTL and none kept more than two seconds past it.
// They differ in admission and eviction, and so in hit ratio and speed:
// see BENCHMARKS.md for both measured on real traces.
type Engine int

const (
	// Ristretto is github.com/dgraph-io/ristretto/v2, the default: TinyLFU
	// admission over sampled LFU eviction, lock-free reads, a sketch sized
	// once (Config.NumCounters).
	Ristretto Engine = iota
	// Otter is github.com/maypok86/otter/v2: W-TinyLFU (an LRU window in
	// front of a segmented LRU), which keeps far more hits on traces with
	// recency, with a cheaper hit.
	Otter
)

// String returns the engine's name: "ristretto" or "otter".
func (e Engine) String() string {
	switch e {
	case Ristretto:
		return "ristretto"
	case Otter:
		return "otter"
	}
	return fmt.Sprintf("Engine(%d)", int(e))
}

// store is what a Cache needs of its engine. Every entry that leaves the
// store (deleted, replaced, evicted, expired, rejected, cleared) is passed
// to the cache's exited, so the tag index and the count follow the store.
type store[V any] interface {
	get(key string) (*Entry[V], bool)
	// contains reports whether key is stored, counting no access.
	contains(key string) bool
	// set stores e at e.cost, with no expiry (the cache's sweeper removes
	// it at its deadline). It reports false if the engine dropped the
	// write (contention); otherwise, when it returns, get sees e, or (if
	// the engine's admission refused it) nothing for the key.
	set(e *Entry[V]) bool
	// del removes key; when it returns, get misses it.
	del(key string)
	clear()
	close()
	maxCost() int64
	// cost is the cost held now, once the writes in flight are applied.
	cost() int64
}

func newStore[V any](c *Cache[V], cfg Config) (store[V], error) {
	switch cfg.Engine {
	case Ristretto:
		return newRistrettoStore(c, cfg)
	case Otter:
		return newOtterStore(c, cfg)
	}
	return nil, fmt.Errorf("l1: unknown Engine %d", int(cfg.Engine))
}

// ristrettoStore is the Ristretto engine.
type ristrettoStore[V any] struct {
	rc *ristretto.Cache[string, *Entry[V]]
	// dels counts the dels queued (del does not wait for them), applied
	// the count a Wait has seen applied: a set waits first if they differ.
	dels, applied atomic.Uint64
}

// keyHash is ristretto's key hash for L1: the runtime's string hash, as in
// ristretto's default, without its second (conflict) hash. Ristretto keeps
// that one only to tell apart keys whose 64-bit hashes collide; Cache
// compares the key of every entry it returns and stays correct with every
// key alike (TestHashCollisionIsAMiss and TestDeleteSetVisibilityStress
// force it), so a hit spends no time on an xxhash of the key.
func keyHash(key string) (uint64, uint64) { return z.MemHashString(key), 0 }

func newRistrettoStore[V any](c *Cache[V], cfg Config) (*ristrettoStore[V], error) {
	hash := cfg.keyToHash
	if hash == nil {
		hash = keyHash
	}
	rc, err := ristretto.NewCache(&ristretto.Config[string, *Entry[V]]{
		NumCounters:        cfg.NumCounters,
		MaxCost:            cfg.MaxCost,
		BufferItems:        64, // ristretto's recommended value
		KeyToHash:          hash,
		IgnoreInternalCost: true, // entryOverhead already counts it
		// Every way out (delete, overwrite, eviction, rejection, expiry,
		// Clear) passes here: the tag index and the count follow the cache.
		OnExit:   c.exited,
		OnEvict:  func(item *ristretto.Item[*Entry[V]]) { c.evicted(item.Value) },
		OnReject: func(*ristretto.Item[*Entry[V]]) { c.counts.rejected.Add(1) },
	})
	if err != nil {
		return nil, fmt.Errorf("l1: %w", err)
	}
	return &ristrettoStore[V]{rc: rc}, nil
}

func (s *ristrettoStore[V]) get(key string) (*Entry[V], bool) { return s.rc.Get(key) }

// contains uses GetTTL, which reads the store without the sketch; it
// cannot compare keys (see keyHash), so a colliding key is reported too.
func (s *ristrettoStore[V]) contains(key string) bool {
	_, ok := s.rc.GetTTL(key)
	return ok
}

func (s *ristrettoStore[V]) set(e *Entry[V]) bool {
	// A del that returned may still have its itemDelete queued. Ristretto
	// tells keys apart by (hash, conflict) only: if a colliding key's
	// pending itemNew lands first, Set would update that item in place and
	// the late itemDelete would then remove e. Apply the dels queued so far.
	if d := s.dels.Load(); s.applied.Load() < d {
		s.rc.Wait()
		for a := s.applied.Load(); a < d && !s.applied.CompareAndSwap(a, d); a = s.applied.Load() {
		}
	}
	ok := s.rc.Set(e.Key, e, e.cost)
	if !ok {
		s.rc.Del(e.Key) // dropped by contention: make sure no older copy survives
	}
	// Ristretto applies new keys asynchronously; waiting makes the write
	// visible (or its rejection final) before set returns.
	s.rc.Wait()
	if ok && !e.gone.Load() {
		if _, stored := s.rc.GetTTL(e.Key); !stored {
			// Refused without an exit: a key with e's hash but another
			// conflict hash holds the slot (ristretto's store checks the
			// conflict hash, its policy does not), so e was admitted and
			// not stored. Reported as dropped, so nothing stays indexed.
			// keyHash's conflict is always 0, so only a test's KeyToHash
			// gets here (TestPartialCollisionLeaksNoEntry).
			return false
		}
	}
	return ok
}

// del removes key from ristretto's store before it returns (Del deletes at
// once and queues the policy's part). It does not wait for the queue:
// every set of the key waits until its write is applied, under the key's
// guard stripe, as every del holds it, so no write of the key is queued
// behind which the delete could land (a key ristretto cannot tell from
// this one, on another stripe, is why set waits for queued dels first).
// Waiting cost every invalidation a hand-off to ristretto's goroutine, the
// tail of propagation on busy cores.
func (s *ristrettoStore[V]) del(key string) {
	s.rc.Del(key)
	s.dels.Add(1) // after the push: a set that sees it waits past it
}

func (s *ristrettoStore[V]) clear()         { s.rc.Clear() }
func (s *ristrettoStore[V]) close()         { s.rc.Close() }
func (s *ristrettoStore[V]) maxCost() int64 { return s.rc.MaxCost() }
func (s *ristrettoStore[V]) cost() int64 {
	s.rc.Wait() // apply the deletes queued for ristretto's policy
	return s.rc.MaxCost() - s.rc.RemainingCost()
}

// otterStore is the Otter engine. Otter writes its hash table before it
// returns, so Set and Delete are synchronous without waiting. Its eviction
// runs in its maintenance, which set runs before it returns (see run); the
// maintenance a read asks for runs on otter's goroutines, off the hit path,
// unless a set is in progress at the time (on any goroutine).
type otterStore[V any] struct {
	oc *otter.Cache[string, *Entry[V]]
	// setting counts the sets in progress: while one is, otter's
	// maintenance runs on the goroutine that asks for it (see run).
	setting atomic.Int64
}

// run is otter's Executor: inline while a set is in progress, on a
// goroutine of its own otherwise (otter's default). Left to otter's
// goroutines, the evictions a burst of Sets made due came after the
// writes: the cache held several times MaxCost in between, the extra
// entries were extra hits, and eviction judged them late (Strata's hit
// ratio measured 0.86-1.36 of raw otter's held to its capacity, below 0.98
// at 10 of 30 points). Run inline for reads too, every hit that fills
// otter's read buffer would apply the buffered reads: 115-118 ns a hit on
// one goroutine and 112-114 on two, against raw otter's 80-89 and 36-40 in
// the same runs (benchmarks' LocalHit), over the 1.5 times allowed. Left
// to a goroutine, the reads that come while the drain is pending are
// dropped, which costs where hits come in runs: LIRS LOOP at 500 entries
// keeps 0.95-0.96 of raw otter's hit ratio held to its capacity (0.92 with
// reads applied only by the sets' maintenance).
func (s *otterStore[V]) run(fn func()) {
	if s.setting.Load() > 0 {
		fn()
		return
	}
	go fn()
}

func newOtterStore[V any](c *Cache[V], cfg Config) (*otterStore[V], error) {
	s := &otterStore[V]{}
	oc, err := otter.New(&otter.Options[string, *Entry[V]]{
		Executor:      s.run,
		MaximumWeight: uint64(cfg.MaxCost),
		// Sizes otter's frequency sketch up front for the entries MaxCost
		// holds at the smallest entry size (as NumCounters does for
		// ristretto): weighted, otter would size it from the entry count
		// when the cache is first half full, and age it twice as often
		// (0.88-0.95 of otter's hit ratio on LIRS GLI and LOOP). The
		// hint also makes otter count accesses from the first, where it
		// would start at half full: otter's policy, the same for raw
		// otter given the hint (benchmarks/hitratio's otter-sized), and
		// worth 1.18-1.35 of unhinted otter on GLI at 500-1,000 entries
		// and 0.956 on ARC P3 at 100,000.
		InitialCapacity: int(cfg.MaxCost / (10 * counterBytes)),
		Weigher: func(_ string, e *Entry[V]) uint32 {
			return uint32(min(e.cost, math.MaxUint32))
		},
		// Under the entry's bucket lock, as part of its removal: the tag
		// index (its own lock, which never calls the cache) follows at once.
		OnAtomicDeletion: func(ev otter.DeletionEvent[string, *Entry[V]]) {
			c.exited(ev.Value)
			if ev.WasEvicted() {
				c.evicted(ev.Value)
			}
		},
	})
	if err != nil {
		return nil, fmt.Errorf("l1: %w", err)
	}
	s.oc = oc
	return s, nil
}

func (s *otterStore[V]) get(key string) (*Entry[V], bool) { return s.oc.GetIfPresent(key) }

func (s *otterStore[V]) contains(key string) bool {
	_, ok := s.oc.GetEntryQuietly(key)
	return ok
}

func (s *otterStore[V]) set(e *Entry[V]) bool {
	s.setting.Add(1)
	defer s.setting.Add(-1)
	s.oc.Set(e.Key, e)
	// Set's own maintenance is skipped while another (a read's, on otter's
	// goroutine) holds otter's eviction lock: CleanUp waits for it and
	// evicts what e made due, so that set returns within MaximumWeight.
	s.oc.CleanUp()
	return true
}

func (s *otterStore[V]) del(key string) { s.oc.Invalidate(key) }
func (s *otterStore[V]) clear()         { s.oc.InvalidateAll() }

func (s *otterStore[V]) close() {
	s.oc.InvalidateAll()
	s.oc.StopAllGoroutines()
}

func (s *otterStore[V]) maxCost() int64 { return int64(s.oc.GetMaximum()) }
func (s *otterStore[V]) cost() int64 {
	s.oc.CleanUp() // apply the evictions otter's maintenance has pending
	return int64(s.oc.WeightedSize())
}
