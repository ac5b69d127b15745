package bus

// maxTracked bounds the sequences tracked per origin; a jump beyond it is a
// gap at once.
const maxTracked = 1 << 16

// firstContactWindow is how many sequences below the first one heard from a
// sender are still applied if they arrive, for one GapGrace: the two
// channels deliver out of order by up to a few milliseconds, and 1024 is
// more than any sender publishes in that time. They are never counted as
// missing: a message sent before this node listened cannot be required.
const firstContactWindow = 1024

// origin is what a receiver knows of one sender epoch: every sequence up to
// contig was seen; above it, seen lists the ones that arrived early and
// missing the ones known to exist (a later sequence or a heartbeat named
// them) but not seen yet, with when they were first missed. Sequences in
// (contig, optional] were sent before this node first heard the sender: they
// are applied if they arrive before the window closes, and never missed.
type origin struct {
	epoch    uint64
	contig   uint64
	optional uint64
	opened   int64 // Unix ns the optional window opened
	seen     map[uint64]struct{}
	missing  map[uint64]int64
	heard    [2]int64 // per Channel, Unix ns of the last message
	overrun  bool     // a jump too large to track: report a gap
}

// newOrigin starts tracking a sender epoch first heard at now through
// sequence first, which exists; known says whether it was seen (a message)
// or only named (a heartbeat).
func newOrigin(epoch, first uint64, known bool, now int64) *origin {
	o := &origin{epoch: epoch, seen: map[uint64]struct{}{}, missing: map[uint64]int64{}, opened: now}
	o.optional = first
	if known {
		o.optional--
	}
	o.contig = o.optional - min(o.optional, firstContactWindow)
	return o
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
// and not optional become missing from now.
func (o *origin) announce(latest uint64, now int64) {
	from := max(o.contig, o.optional)
	if latest <= from {
		return
	}
	if latest-from > maxTracked {
		o.overrun = true
		o.contig = latest
		clear(o.seen)
		clear(o.missing)
		return
	}
	for s := from + 1; s <= latest; s++ {
		if _, ok := o.seen[s]; ok {
			continue
		}
		if _, ok := o.missing[s]; !ok {
			o.missing[s] = now
		}
	}
}

// expire gives up on sequences missing since before deadline: they are lost.
// It returns how many, and skips past them. It also closes the optional
// window once it opened before deadline: what has not arrived by then is
// not waited for.
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
	if o.optional > o.contig && o.opened <= deadline {
		o.closeWindow()
	}
	if lost > 0 {
		o.advance()
	}
	return lost
}

// closeWindow moves contig over the optional sequences, seen or not.
func (o *origin) closeWindow() {
	o.contig = o.optional
	for s := range o.seen {
		if s <= o.contig {
			delete(o.seen, s)
		}
	}
	o.advance()
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
