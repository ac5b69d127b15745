package tiered

import (
	"github.com/strata-cache/strata/coherence"
	"github.com/strata-cache/strata/l1"

	"sync/atomic"
	"unsafe"
)

// Stats are a cache's counters since it was made.
//
// Every call counts once per key: a Get (or a distinct key of a GetMany: a
// key it names twice is one request) is counted
// in exactly one of L1Hits, L2Hits, StaleHits, StaleOnError and Misses, also
// when it waited on another caller's read or load of the key (Coalesced
// counts those as well). Requests and the ratios add them up.
type Stats struct {
	L1Hits         uint64 `json:"l1_hits"`          // answered from L1, fresh
	L2Hits         uint64 `json:"l2_hits"`          // answered from L2, fresh
	Misses         uint64 `json:"misses"`           // answered by a load, not found or failed: no tier had a fresh value
	StaleHits      uint64 `json:"stale_hits"`       // answered with a stale value under StaleWhileRevalidate
	StaleOnError   uint64 `json:"stale_on_error"`   // answered with a stale value under StaleIfError, the loader having failed
	Coalesced      uint64 `json:"coalesced"`        // of those, calls that waited on another caller's read or load of the key on this replica
	L1NegativeHits uint64 `json:"l1_negative_hits"` // of L1Hits, hits on a cached "not found"
	L2NegativeHits uint64 `json:"l2_negative_hits"` // of L2Hits, hits on a cached "not found"
	Loads          uint64 `json:"loads"`            // loader calls (a BatchLoader call counts once)
	LoadErrors     uint64 `json:"load_errors"`      // loader calls that failed (ErrNotFound excluded)
	L2Errors       uint64 `json:"l2_errors"`        // L2 commands that failed; the call went on without L2
	CorruptEntries uint64 `json:"corrupt_entries"`  // undecodable L2 entries, deleted and treated as misses
	TypeMismatches uint64 `json:"type_mismatches"`  // L2 entries of another value type or codec (Options.Schema): left alone, treated as misses
	Uncached       uint64 `json:"uncached"`         // loaded values not cached: too large, not encodable or with tags an entry cannot hold
	Refreshes      uint64 `json:"refreshes"`        // background refreshes started (early refresh and stale-while-revalidate)
	LeaseWaits     uint64 `json:"lease_waits"`      // keys whose load waited for another caller's lease instead of loading
	LeaseTimeouts  uint64 `json:"lease_timeouts"`   // waits that outlasted LeaseWait and loaded without caching
	FillsRejected  uint64 `json:"fills_rejected"`   // loads whose lease a write or invalidation ended first: not cached
	Extensions     uint64 `json:"extensions"`       // sliding-expiration PEXPIREs sent to L2
	// L1 is the local tier's contents and what its admission policy did
	// (zero with L1 disabled).
	L1 l1.Stats `json:"l1"`
	// WriteBehind counts the flushing of a write-behind cache on this
	// replica (zero without Options.WriteBehind).
	WriteBehind WriteBehindStats `json:"write_behind"`
	// Audit is the consistency auditor's verdicts on this namespace's L1
	// hits (zero with Config.Audit off).
	Audit AuditStats `json:"audit"`
}

// Add returns s with o's counters added: the counters of several caches (or
// replicas) of one namespace.
func (s Stats) Add(o Stats) Stats {
	return Stats{
		L1Hits: s.L1Hits + o.L1Hits, L2Hits: s.L2Hits + o.L2Hits, Misses: s.Misses + o.Misses,
		StaleHits: s.StaleHits + o.StaleHits, StaleOnError: s.StaleOnError + o.StaleOnError,
		Coalesced:      s.Coalesced + o.Coalesced,
		L1NegativeHits: s.L1NegativeHits + o.L1NegativeHits, L2NegativeHits: s.L2NegativeHits + o.L2NegativeHits,
		Loads: s.Loads + o.Loads, LoadErrors: s.LoadErrors + o.LoadErrors, L2Errors: s.L2Errors + o.L2Errors,
		CorruptEntries: s.CorruptEntries + o.CorruptEntries, TypeMismatches: s.TypeMismatches + o.TypeMismatches,
		Uncached:  s.Uncached + o.Uncached,
		Refreshes: s.Refreshes + o.Refreshes, LeaseWaits: s.LeaseWaits + o.LeaseWaits,
		LeaseTimeouts: s.LeaseTimeouts + o.LeaseTimeouts, FillsRejected: s.FillsRejected + o.FillsRejected,
		Extensions: s.Extensions + o.Extensions, L1: s.L1.Add(o.L1),
		WriteBehind: s.WriteBehind.add(o.WriteBehind), Audit: s.Audit.add(o.Audit),
	}
}

// ClientStats are a Client's counters: each namespace's (Cache.Stats,
// summed over the caches of one namespace), the invalidation bus's
// (Client.BusStats) and the retrier's (Client.RetryStats).
type ClientStats struct {
	Caches map[string]Stats `json:"caches"`
	Bus    coherence.Stats  `json:"bus"`
	Retry  RetryStats       `json:"retry"`
	// RouteFlushes counts the drops of the whole L1 because L2's routing
	// changed (its epoch advanced, or a Ring shard came back): the bus's
	// Resets count the drops for a possibly missed invalidation.
	RouteFlushes uint64 `json:"route_flushes"`
}

// clientStats is Client.Stats.
func (c *Client) clientStats() ClientStats {
	out := ClientStats{Caches: map[string]Stats{}, Bus: c.busStats(), Retry: c.retryStats(), RouteFlushes: c.routeFlushes.Load()}
	c.mu.Lock()
	counted := c.counted
	c.mu.Unlock()
	for _, cache := range counted { // closed ones too: counters never go down
		out.Caches[cache.namespace()] = out.Caches[cache.namespace()].Add(cache.counters())
	}
	return out
}

// Requests is how many calls (keys of a GetMany) the counters cover.
func (s Stats) Requests() uint64 {
	return s.L1Hits + s.L2Hits + s.StaleHits + s.StaleOnError + s.Misses
}

// HitRatio is the share of requests answered fresh from either tier; 0
// before the first.
func (s Stats) HitRatio() float64 { return ratio(s.L1Hits+s.L2Hits, s.Requests()) }

// L1HitRatio is the share of requests answered fresh from L1.
func (s Stats) L1HitRatio() float64 { return ratio(s.L1Hits, s.Requests()) }

// L2HitRatio is the share of requests answered fresh from L2.
func (s Stats) L2HitRatio() float64 { return ratio(s.L2Hits, s.Requests()) }

func ratio(n, of uint64) float64 {
	if of == 0 {
		return 0
	}
	return float64(n) / float64(of)
}

// stats holds the counters. L1 hits are striped: every other path pays a
// network round trip or a load anyway, but the L1 hit is the hot path and a
// single shared counter would make every core fight over one cache line.
type stats struct {
	l1Hits         stripedCounter // on values; L1Hits adds l1NegativeHits
	l2Hits         atomic.Uint64  // on values; L2Hits adds l2NegativeHits
	misses         atomic.Uint64
	l1NegativeHits atomic.Uint64
	l2NegativeHits atomic.Uint64
	loads          atomic.Uint64
	loadErrors     atomic.Uint64
	l2Errors       atomic.Uint64
	corruptEntries atomic.Uint64
	typeMismatches atomic.Uint64
	uncached       atomic.Uint64
	staleHits      atomic.Uint64
	staleOnError   atomic.Uint64
	refreshes      atomic.Uint64
	leaseWaits     atomic.Uint64
	leaseTimeouts  atomic.Uint64
	fillsRejected  atomic.Uint64
	extensions     atomic.Uint64
	coalesced      atomic.Uint64
}

// l1Hit counts a fresh L1 hit, on a cached "not found" if negative. The
// hits on values and on "not found"s are two counters, so that each
// series a snapshot yields only grows.
func (s *stats) l1Hit(negative bool) {
	if negative {
		s.l1NegativeHits.Add(1)
		return
	}
	s.l1Hits.add()
}

func (s *stats) snapshot() Stats {
	l1Neg, l2Neg := s.l1NegativeHits.Load(), s.l2NegativeHits.Load()
	return Stats{
		L1Hits:         s.l1Hits.sum() + l1Neg,
		L2Hits:         s.l2Hits.Load() + l2Neg,
		Misses:         s.misses.Load(),
		L1NegativeHits: l1Neg,
		L2NegativeHits: l2Neg,
		Loads:          s.loads.Load(),
		LoadErrors:     s.loadErrors.Load(),
		L2Errors:       s.l2Errors.Load(),
		CorruptEntries: s.corruptEntries.Load(),
		TypeMismatches: s.typeMismatches.Load(),
		Uncached:       s.uncached.Load(),
		StaleHits:      s.staleHits.Load(),
		StaleOnError:   s.staleOnError.Load(),
		Refreshes:      s.refreshes.Load(),
		LeaseWaits:     s.leaseWaits.Load(),
		LeaseTimeouts:  s.leaseTimeouts.Load(),
		FillsRejected:  s.fillsRejected.Load(),
		Extensions:     s.extensions.Load(),
		Coalesced:      s.coalesced.Load(),
	}
}

// stripedCounter spreads increments over cache-line-padded cells, picked by
// the address of a local variable: goroutines have separate stacks, so
// concurrent hits (even on one hot key) rarely touch the same cell, and the
// pick costs nothing. A single shared counter cost about 50 ns per hit under
// contention on the CI machine; a random pick cost 10 ns.
type stripedCounter struct {
	cells [64]struct {
		n atomic.Uint64
		_ [56]byte
	}
}

func (c *stripedCounter) add() {
	var local byte
	// Stacks are at least 2 KiB apart: drop the bits within one, then fold
	// higher bits in so stacks 64 KiB apart do not share a cell.
	p := uintptr(unsafe.Pointer(&local)) >> 11
	c.cells[(p^p>>6)%uintptr(len(c.cells))].n.Add(1)
}

func (c *stripedCounter) sum() uint64 {
	var n uint64
	for i := range c.cells {
		n += c.cells[i].n.Load()
	}
	return n
}
