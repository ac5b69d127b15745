package health

// The rules, as the l2 package doc promises them:
//
//   - Two failed checks in a row, a failed write, a new run ID or (on a Ring)
//     another replica's out marker take a server out of service; on a Ring
//     its keys move to stand-in shards under a new epoch.
//   - A server that is out returns only after two good checks in a row (so
//     the decision rests on epochs read after it answered again), with no
//     live marker (a replica that reaches it again removes its own at once,
//     so markers hold it out only while some replica cannot reach it), and
//     only once it is safe: a single node has the keys whose writes failed
//     deleted from it (replay), or everything it holds under the prefix
//     when they are not all known or it restarted (flush); a Ring shard is
//     always flushed, and then stamped with the current epoch.
//   - The replica that finds a shard unreachable opens the new epoch and
//     stamps it on the serving shards, so other replicas, and replicas
//     started later, see the absent shard behind and flush it before it
//     serves again.

// Decide is one health round: from the state before it and a check of each
// server (probes[i] of st.Servers[i]) it returns the state after it and the
// actions that take the servers there. In the first round, at start, a
// server that answers may serve at once; later it needs two good checks.
func Decide(st State, probes []Probe, first bool) (State, []Action) {
	d := newDecision(st)
	top, heldOut := d.survey(probes)
	d.adopt(top)
	for i, p := range probes {
		if p.Err != nil {
			d.failed(i, p)
		} else {
			d.answered(i, p, top, heldOut[i], first)
		}
	}
	if len(d.mark) > 0 || len(d.unmark) > 0 {
		d.emit(HoldOut{Mark: d.mark, Unmark: d.unmark, Epoch: d.st.Epoch})
	}
	return d.st, d.acts
}

// WriteFailed takes server i out of service because a write to it failed
// (between rounds, usually): it must be cleaned before it serves again. A
// server already out is left as it is.
func WriteFailed(st State, i int) (State, []Action) {
	d := newDecision(st)
	d.fence(i, "a write failed", true)
	return d.st, d.acts
}

// Cleaned returns server i to service after a cleaning that stamped it with
// epoch e (see Clean) and left nothing more to delete, unless the routing
// epoch moved on meanwhile: then a later round decides.
func Cleaned(st State, i int, e uint64) (State, []Action) {
	d := newDecision(st)
	if d.st.Epoch <= e {
		d.join(i, "cleaned")
	}
	return d.st, d.acts
}

// decision is a State being changed, and the actions that change it.
type decision struct {
	st           State
	acts         []Action
	forgot       []bool // Forget emitted for the server: once is enough
	mark, unmark []int
}

func newDecision(st State) *decision {
	return &decision{st: st.clone(), forgot: make([]bool, len(st.Servers))}
}

func (d *decision) emit(a ...Action) { d.acts = append(d.acts, a...) }

// survey returns the largest routing epoch known, this replica's or a
// server's, and per server whether one of the servers that answered holds a
// live out marker for it.
func (d *decision) survey(probes []Probe) (top uint64, heldOut []bool) {
	top = d.st.Epoch
	heldOut = make([]bool, len(probes))
	for _, p := range probes {
		if p.Err != nil {
			continue
		}
		top = max(top, p.Epoch)
		for j, out := range p.Out {
			heldOut[j] = heldOut[j] || out
		}
	}
	return top, heldOut
}

// adopt routes with a later epoch another replica opened.
func (d *decision) adopt(top uint64) {
	if d.st.Ring && top > d.st.Epoch {
		d.st.Epoch = top
		d.emit(SetEpoch{Epoch: top}, Reroute{}, Report{Reason: "routing epoch advanced"})
	}
}

// failed counts a failed check of server i: the second in a row takes it
// out, and on a Ring this replica marks it out every round while it cannot
// reach it.
func (d *decision) failed(i int, p Probe) {
	s := &d.st.Servers[i]
	s.OKs = 0
	s.Fails++
	if s.Serving && s.Fails >= 2 {
		d.fence(i, "unreachable: "+p.Err.Error(), true)
	}
	if d.st.Ring && !s.Serving && s.Fails >= 2 {
		d.mark = append(d.mark, i)
		s.Marked = true
	}
}

// answered counts a good check of server i, read with the largest epoch top.
func (d *decision) answered(i int, p Probe, top uint64, heldOut, first bool) {
	s := &d.st.Servers[i]
	s.Fails = 0
	s.OKs++
	if s.Marked {
		// Reached again: this replica's marker would only hold the server
		// out until it lapses. A replica that still cannot reach it keeps
		// its own.
		s.Marked = false
		d.unmark = append(d.unmark, i)
	}
	if s.RunID != "" && p.RunID != "" && p.RunID != s.RunID {
		// Restarted: it may have reloaded a snapshot older than writes it
		// acknowledged, or missed writes while down.
		d.forget(i)
		d.fence(i, "restarted", true)
	}
	if p.RunID != "" {
		s.RunID = p.RunID
	}
	behind := d.st.Ring && p.Epoch < top
	if s.Serving {
		d.check(i, behind, heldOut)
	} else {
		d.rejoin(i, top, behind, heldOut, first)
	}
}

// check decides whether serving server i, which answered, must leave.
func (d *decision) check(i int, behind, heldOut bool) {
	s := &d.st.Servers[i]
	// Behind twice in a row: the shard missed a routing change (once may be
	// another replica's stamps still on their way).
	if s.Behind++; !behind {
		s.Behind = 0
	}
	switch {
	case s.Dirt != NoDirt:
		d.fence(i, "a write failed", true)
	case s.Behind >= 2:
		d.forget(i)
		d.fence(i, "missed a routing change", false)
	case heldOut:
		d.fence(i, "another replica cannot reach it", false)
	}
}

// rejoin decides whether server i, out of service and answering, returns:
// at once when it is clean, else through a cleaning, which is a flush when
// it is behind epoch top (it missed a routing change).
func (d *decision) rejoin(i int, top uint64, behind, heldOut, first bool) {
	s := &d.st.Servers[i]
	if s.Cleaning || (!first && s.OKs < 2) || heldOut {
		return
	}
	if s.Dirt == NoDirt && !behind {
		d.join(i, "answering again")
		return
	}
	if behind {
		s.Dirt = DirtyAll
	}
	s.Cleaning = true
	d.emit(Clean{Server: i, Epoch: top, Flush: s.Dirt == DirtyAll})
}

// fence takes server i out of service for reason, unless it is out. On a
// Ring it forgets the server's data (its keys go to stand-ins, which it
// never sees: every return is a flush) and, with advance, opens a new
// routing epoch first, so keys moved to stand-ins never meet copies of an
// earlier outage, and stamps it on the serving shards for the other
// replicas. advance is false when another replica already opened the epoch
// for this outage (the server is behind, or held out by a marker):
// advancing again would only make every replica flush it once more.
func (d *decision) fence(i int, reason string, advance bool) {
	s := &d.st.Servers[i]
	if !s.Serving {
		return
	}
	s.Serving, s.Behind = false, 0
	d.emit(Fence{Server: i, Reason: reason})
	if !d.st.Ring {
		return // a single node: no routing to change, L1 stays
	}
	d.forget(i)
	var serving []int
	for j, o := range d.st.Servers {
		if o.Serving {
			serving = append(serving, j)
		}
	}
	if len(serving) == 0 || !advance {
		d.emit(Reroute{}) // every shard is out (no key has a stand-in), or the epoch moved already
		return
	}
	d.st.Epoch++
	d.emit(SetEpoch{Epoch: d.st.Epoch}, Reroute{}, Stamp{Servers: serving, Epoch: d.st.Epoch})
}

// join returns server i to service. On a Ring, values read while it was out
// may have come from a stand-in another replica no longer uses: the change
// is reported (Strata's tiered client drops its L1).
func (d *decision) join(i int, reason string) {
	s := &d.st.Servers[i]
	if s.Serving {
		return
	}
	s.Serving, s.Behind = true, 0
	d.emit(Join{Server: i})
	if d.st.Ring {
		d.emit(Reroute{}, Report{Reason: s.Name + " back in service: " + reason})
	}
}

// forget marks server i's data unknown.
func (d *decision) forget(i int) {
	d.st.Servers[i].Dirt = DirtyAll
	if !d.forgot[i] {
		d.forgot[i] = true
		d.emit(Forget{Server: i})
	}
}
