package coherence

// maxTracked bounds the sequences tracked per origin; a jump beyond it is a
// gap at once.
const maxTracked = 1 << 16

// origin is what a receiver knows of one sender epoch: every sequence up to
// contig was seen; above it, seen lists the ones that arrived early and
// missing the ones known to exist (a later sequence or a heartbeat named
// them) but not seen yet, with when they were first missed.
type origin struct {
	epoch   uint64
	contig  uint64
	seen    map[uint64]struct{}
	missing map[uint64]int64
	heard   [2]int64 // per Channel, Unix ns of the last message
	overrun bool     // a jump too large to track: report a gap
}

func newOrigin(epoch, contig uint64) *origin {
	return &origin{epoch: epoch, contig: contig, seen: map[uint64]struct{}{}, missing: map[uint64]int64{}}
}

func (o *origin) lastHeard() int64 { return max(o.heard[0], o.heard[1]) }

// accept records seq at now and reports whether it is new.
func (o *origin) accept(seq uint64, now int64) bool {
	if seq <= o.contig {
		return false
	}
	if _, dup := o.seen[seq]; dup {
		return false
	}
	o.announce(seq-1, now)
	delete(o.missing, seq)
	o.seen[seq] = struct{}{}
	o.advance()
	return true
}

// announce records that every sequence up to latest exists: those not seen
// become missing from now.
func (o *origin) announce(latest uint64, now int64) {
	if latest <= o.contig {
		return
	}
	if latest-o.contig > maxTracked {
		o.overrun = true
		o.contig = latest
		clear(o.seen)
		clear(o.missing)
		return
	}
	for s := o.contig + 1; s <= latest; s++ {
		if _, ok := o.seen[s]; ok {
			continue
		}
		if _, ok := o.missing[s]; !ok {
			o.missing[s] = now
		}
	}
}

// expire gives up on sequences missing since before deadline: they are lost.
// It returns how many, and skips past them.
func (o *origin) expire(deadline int64) int {
	lost := 0
	if o.overrun {
		o.overrun = false
		lost++
	}
	for s, since := range o.missing {
		if since <= deadline {
			delete(o.missing, s)
			o.seen[s] = struct{}{} // skip it: its effect is covered by the reset
			lost++
		}
	}
	if lost > 0 {
		o.advance()
	}
	return lost
}

// advance moves contig over the sequences seen right after it.
func (o *origin) advance() {
	for {
		if _, ok := o.seen[o.contig+1]; !ok {
			return
		}
		delete(o.seen, o.contig+1)
		o.contig++
	}
}
