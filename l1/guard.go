package l1

import (
	"hash/maphash"
	"sync"
	"sync/atomic"
)

// Guard is the fill guard: it refuses to install data read before a write
// or an invalidation of the same key, or of one of the data's tags. A Cache
// has one (its Begin, SetIf, Set, SetAfter, Delete, InvalidateTags and Clear
// use it); NewGuard makes one for a caller without a local tier that still
// needs to know whether a read was overtaken (Moved).
//
// Keys map onto stripes; a write or key invalidation bumps its stripe's
// generation, and an install goes ahead only if the generation is the one
// its reader saw when it began. The stripe lock makes check-and-install
// atomic against bump-and-write.
//
// Tags are fenced by a sequence: every tag invalidation takes the next
// number and records it on the stripes of its tags. An install whose read
// began before the number on one of its tags' stripes is refused. Tag
// invalidations do not take the key stripes' locks (they do not know the
// keys being filled), so an install checks its tags again after installing
// and undoes itself if one moved: the invalidation, which records its number
// before reading the tag index, then finds the entry or the install sees the
// number.
type Guard struct {
	seed    maphash.Seed
	stripes [guardStripes]struct {
		mu  sync.Mutex
		gen atomic.Uint64 // written under mu, read without it
	}
	tagSeq  atomic.Uint64
	tagLast [guardStripes]atomic.Uint64 // per tag stripe: the latest tagSeq that invalidated it
}

// guardStripes is the number of stripes: enough that unrelated keys rarely
// share one (a shared stripe costs a refused install, never a wrong one).
const guardStripes = 256

// NewGuard returns a fill guard.
func NewGuard() *Guard { return &Guard{seed: maphash.MakeSeed()} }

// Fence is what a reader takes (Begin) before it reads the tier behind L1,
// to present when it installs what it read (SetIf, SetAfter).
type Fence struct {
	gen  uint64 // the key's stripe generation
	tags uint64 // the tag sequence
}

func (g *Guard) stripe(s string) int {
	return int(maphash.String(g.seed, s) % guardStripes)
}

// Begin returns the fence for a read of key. It takes no lock: a write
// bumps the generation after it reached the tier behind, so a read that
// begins after the bump already sees the new data.
func (g *Guard) Begin(key string) Fence {
	return Fence{gen: g.stripes[g.stripe(key)].gen.Load(), tags: g.tagSeq.Load()}
}

// Moved reports whether key, or one of tags, was written or invalidated
// since f was taken.
func (g *Guard) Moved(key string, f Fence, tags []string) bool {
	return g.stripes[g.stripe(key)].gen.Load() != f.gen || g.tagsMoved(f, tags)
}

func (g *Guard) tagsMoved(f Fence, tags []string) bool {
	for _, t := range tags {
		if g.tagLast[g.stripe(t)].Load() > f.tags {
			return true
		}
	}
	return false
}

// install runs set if neither key nor one of tags was written or invalidated
// since f, and reports whether the value it set stands; drop undoes set if a
// tag invalidation overtook it.
//
// With write, install is itself a write of key: it bumps key's stripe, so
// reads that began before it cannot install what they read, and when
// refused it runs drop, since the copy held may be older than what the
// other write left behind. A refused fill leaves the copy alone: whatever
// refused it dropped the key already, or installed newer data.
func (g *Guard) install(key string, f Fence, tags []string, write bool, set, drop func()) bool {
	s := &g.stripes[g.stripe(key)]
	s.mu.Lock()
	defer s.mu.Unlock()
	current := s.gen.Load() == f.gen && !g.tagsMoved(f, tags)
	if write {
		s.gen.Add(1)
	}
	if !current {
		if write {
			drop()
		}
		return false
	}
	set()
	if g.tagsMoved(f, tags) {
		drop()
		return false
	}
	return true
}

// InvalidateTags fences off installs of data tagged with tags that was read
// before now.
func (g *Guard) InvalidateTags(tags ...string) {
	seq := g.tagSeq.Add(1)
	for _, t := range tags {
		last := &g.tagLast[g.stripe(t)]
		for cur := last.Load(); cur < seq && !last.CompareAndSwap(cur, seq); cur = last.Load() {
		}
	}
}

// WriteAll fences off installs of every key read before now.
func (g *Guard) WriteAll() { g.writeAll(func() {}) }

// writeAll bumps every stripe and runs fn under all their locks.
func (g *Guard) writeAll(fn func()) {
	for i := range g.stripes {
		g.stripes[i].mu.Lock()
		g.stripes[i].gen.Add(1)
	}
	defer func() {
		for i := range g.stripes {
			g.stripes[i].mu.Unlock()
		}
	}()
	fn()
}

// locked runs fn under key's stripe lock, without fencing anything off: fn
// is ordered against every install and write of key.
func (g *Guard) locked(key string, fn func()) {
	s := &g.stripes[g.stripe(key)]
	s.mu.Lock()
	defer s.mu.Unlock()
	fn()
}

// Write fences off installs of key read before now.
func (g *Guard) Write(key string) { g.write(key, func() {}) }

// write bumps key's stripe and runs fn under its lock.
func (g *Guard) write(key string, fn func()) {
	s := &g.stripes[g.stripe(key)]
	s.mu.Lock()
	defer s.mu.Unlock()
	s.gen.Add(1)
	fn()
}
