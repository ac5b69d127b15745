package l1

import "sync/atomic"

// Stats describe an L1 cache's contents and what its admission policy did,
// counted off the read path: ristretto's own metrics (Config.Metrics) would
// add a shared counter to every Get.
type Stats struct {
	Entries int64 `json:"entries"` // entries held now
	Cost    int64 `json:"cost"`    // their cost now: bytes of encoded value, key and overhead (Entry.Size)
	MaxCost int64 `json:"max_cost"`
	// Evicted counts entries the policy pushed out to make room; Expired
	// those dropped at their local deadline (LocalStaleUntil) by the cleanup.
	// Entries deleted, replaced or cleared are in neither.
	Evicted uint64 `json:"evicted"`
	Expired uint64 `json:"expired"`
	// Rejected counts Sets the TinyLFU admission policy refused (the key
	// was not worth what it would evict); Dropped those lost to contention
	// in ristretto's set buffer. Neither leaves an older copy behind.
	Rejected uint64 `json:"rejected"`
	Dropped  uint64 `json:"dropped"`
}

// Add returns s with o added: several caches' stats.
func (s Stats) Add(o Stats) Stats {
	return Stats{
		Entries: s.Entries + o.Entries, Cost: s.Cost + o.Cost, MaxCost: s.MaxCost + o.MaxCost,
		Evicted: s.Evicted + o.Evicted, Expired: s.Expired + o.Expired, Rejected: s.Rejected + o.Rejected, Dropped: s.Dropped + o.Dropped,
	}
}

type counts struct {
	entries                             atomic.Int64
	evicted, expired, rejected, dropped atomic.Uint64
	clearing                            atomic.Int32 // Clear's exits are not evictions
}

// Stats returns the cache's stats. Entries and Cost settle once the writes
// in flight are applied (the Otter engine applies its pending evictions
// first), and count an entry past its local deadline until the engine's
// cleanup (every second or few) drops it, though Get no longer returns it.
func (c *Cache[V]) Stats() Stats {
	c.life.RLock()
	defer c.life.RUnlock()
	var s Stats
	if !c.closed {
		s.MaxCost = c.st.maxCost()
		s.Cost = c.st.cost() // first: it may settle the counts below
	}
	s.Entries, s.Evicted, s.Expired = c.counts.entries.Load(), c.counts.evicted.Load(), c.counts.expired.Load()
	s.Rejected, s.Dropped = c.counts.rejected.Load(), c.counts.dropped.Load()
	return s
}

// exited follows an entry out of the cache (or a nil, which ristretto
// passes for a delete that found nothing).
func (c *Cache[V]) exited(e *Entry[V]) {
	if e == nil || e.gone.Swap(true) {
		return // an entry exits once, even if two paths report it
	}
	c.counts.entries.Add(-1)
	c.tags.remove(e)
	c.expiry.remove(e)
}

// evicted counts an eviction by why it happened; a Clear's are not.
func (c *Cache[V]) evicted(e *Entry[V]) {
	if c.counts.clearing.Load() == 0 && e != nil {
		c.counts.evicted.Add(1)
	}
}
