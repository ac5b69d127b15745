package tiered

import (
	"hash/maphash"
	"sync"
	"sync/atomic"
)

// fillGuard refuses an L1 install of data read before a write or an
// invalidation of the same key, or of one of the data's tags, on this
// replica.
//
// Keys map onto stripes; a write or key invalidation bumps its stripe's
// generation, and an install goes ahead only if the generation is the one
// it saw when its read started. The stripe lock makes check-and-install
// atomic against bump-and-write.
//
// Tags are fenced by a sequence: every tag invalidation takes the next
// number and records it on the stripes of its tags. An install whose read
// started before the number on one of its tags' stripes is refused. Tag
// invalidations do not take the key stripes' locks (they do not know the
// keys being filled), so an install checks its tags again after installing
// and undoes itself if one moved: the invalidation, which records its number
// before reading L1's tag index, then finds the entry or the install sees the
// number.
type fillGuard struct {
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

// fence is what a read records before it starts, to present at install.
type fence struct {
	gen  uint64 // the key's stripe generation
	tags uint64 // the tag sequence
}

func (g *fillGuard) stripe(s string) int {
	return int(maphash.String(g.seed, s) % guardStripes)
}

// begin returns the fence to pass to install. It takes no lock: a write
// bumps the generation after its L2 write, so a read that starts after the
// bump already sees the new data.
func (g *fillGuard) begin(key string) fence {
	return fence{gen: g.stripes[g.stripe(key)].gen.Load(), tags: g.tagSeq.Load()}
}

// moved reports whether key, or one of tags, was written or invalidated since
// f was taken.
func (g *fillGuard) moved(key string, f fence, tags []string) bool {
	return g.stripes[g.stripe(key)].gen.Load() != f.gen || g.tagsMoved(f, tags)
}

func (g *fillGuard) tagsMoved(f fence, tags []string) bool {
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
// With write, install is itself a write of key (a Set): it bumps key's
// stripe, so reads that began before it cannot install what they read, and
// when refused it runs drop, since the copy L1 holds may be older than what
// the other write left in L2. A refused fill leaves L1 alone: whatever
// refused it dropped the key already, or installed newer data.
func (g *fillGuard) install(key string, f fence, tags []string, write bool, set, drop func()) bool {
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

// invalidateTags fences off installs of data tagged with tags that was read
// before now. The caller then drops the tagged keys L1 holds.
func (g *fillGuard) invalidateTags(tags []string) {
	seq := g.tagSeq.Add(1)
	for _, t := range tags {
		last := &g.tagLast[g.stripe(t)]
		for cur := last.Load(); cur < seq && !last.CompareAndSwap(cur, seq); cur = last.Load() {
		}
	}
}

// writeAll bumps every stripe and runs fn under all their locks.
func (g *fillGuard) writeAll(fn func()) {
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

// write bumps key's stripe and runs fn under its lock.
func (g *fillGuard) write(key string, fn func()) {
	s := &g.stripes[g.stripe(key)]
	s.mu.Lock()
	defer s.mu.Unlock()
	s.gen.Add(1)
	fn()
}
