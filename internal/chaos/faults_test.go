package chaos_test

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/strata-cache/strata/internal/redistest"
)

// What a fault takes away, which decides the staleness bound of the writes
// it overlaps (see phase.bound).
const (
	classLink    = "link"    // an invalidation channel of one replica (or all): detection bound
	classL2      = "l2"      // a Redis server: until it serves again, plus recovery
	classLoader  = "loader"  // the database: Get may fail, nothing may go stale
	classReplica = "replica" // a replica replaced: every replica's membership moves
)

// allSlots marks a fault that touches every replica.
const allSlots = -1

// faultEvent is one injected fault, from its start to the moment the
// system answered again (a server answered PING, a cut ended).
type faultEvent struct {
	Kind   string    `json:"kind"`
	Class  string    `json:"class"`
	Target string    `json:"target"`
	Slot   int       `json:"-"` // the replica slot it touches, allSlots for every one
	Start  time.Time `json:"start"`
	End    time.Time `json:"end"` // zero while it lasts
	Healed time.Time `json:"healed"`
}

// faultLog records the faults of a phase.
type faultLog struct {
	mu     sync.Mutex
	events []*faultEvent
}

func (l *faultLog) begin(kind, class, target string, slot int) *faultEvent {
	e := &faultEvent{Kind: kind, Class: class, Target: target, Slot: slot, Start: time.Now()}
	l.mu.Lock()
	l.events = append(l.events, e)
	l.mu.Unlock()
	return e
}

func (l *faultLog) end(e *faultEvent) {
	l.mu.Lock()
	e.End = time.Now()
	l.mu.Unlock()
}

func (l *faultLog) healed(e *faultEvent) {
	l.mu.Lock()
	e.Healed = time.Now()
	l.mu.Unlock()
}

// snapshot copies the events, an open one ending now.
func (l *faultLog) snapshot() []faultEvent {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := make([]faultEvent, 0, len(l.events))
	for _, e := range l.events {
		c := *e
		if c.End.IsZero() {
			c.End = time.Now()
		}
		out = append(out, c)
	}
	return out
}

// serverFaultSince reports whether a server fault was on at some moment
// since t.
func (l *faultLog) serverFaultSince(t time.Time) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.ContainsFunc(l.events, func(e *faultEvent) bool {
		return e.Class == classL2 && (e.Healed.IsZero() || e.Healed.After(t))
	})
}

func (l *faultLog) counts() map[string]int {
	out := map[string]int{}
	for _, e := range l.snapshot() {
		out[e.Kind]++
	}
	return out
}

// overlaps reports whether any fault of one of classes was on (or within
// slack after its end) at some moment of [from, to].
func overlaps(events []faultEvent, from, to time.Time, slack time.Duration, classes ...string) bool {
	return slices.ContainsFunc(events, func(e faultEvent) bool {
		return slices.Contains(classes, e.Class) && !e.Start.After(to) && !e.End.Add(slack).Before(from)
	})
}

// faultKinds are the faults the scheduler picks from, with weights.
var faultKinds = []struct {
	kind   string
	weight int
}{
	{"shard-pause", 3}, {"shard-kill", 2}, {"pubsub-kill", 3},
	{"gossip-stop", 2}, {"gossip-loss", 2}, {"gossip-delay", 2},
	{"loader-slow", 2}, {"loader-fail", 2}, {"replica-restart", 1},
}

func pickFault(rng *rand.Rand) string {
	total := 0
	for _, k := range faultKinds {
		total += k.weight
	}
	n := rng.IntN(total)
	for _, k := range faultKinds {
		if n -= k.weight; n < 0 {
			return k.kind
		}
	}
	return faultKinds[0].kind
}

// between is a random duration in [lo, hi).
func between(rng *rand.Rand, lo, hi time.Duration) time.Duration {
	return lo + time.Duration(rng.Int64N(int64(hi-lo)))
}

// schedule injects faults one at a time until deadline, each at a random
// moment after the system healed from the previous one, on the test's
// goroutine (a Restart fails the test from there). One at a time keeps the
// system able to heal: at most one server down, and links whole again
// before the next fault.
func (p *phase) schedule(deadline time.Time) {
	for {
		time.Sleep(between(p.rng, 200*time.Millisecond, 2*time.Second)) // the fault scheduler's random delay
		if time.Now().After(deadline) {
			return
		}
		kind := pickFault(p.rng)
		e := p.inject(kind)
		p.faults.end(e)
		if !p.waitHealed(30 * time.Second) {
			p.t.Errorf("%s: the system did not heal within 30 s after %s of %s: %s", p.name, kind, e.Target, p.unhealthy())
			p.healFailures++
		}
		p.faults.healed(e)
	}
}

// inject runs one fault of kind to its end (the server answers again, the
// cut is over) and returns its record.
func (p *phase) inject(kind string) *faultEvent {
	rng := p.rng
	switch kind {
	case "shard-pause", "shard-kill":
		srv := p.servers[rng.IntN(len(p.servers))]
		e := p.faults.begin(kind, classL2, srv.Addr(), allSlots)
		if kind == "shard-pause" {
			srv.Pause()
			time.Sleep(between(rng, 300*time.Millisecond, p.maxPause)) // how long the fault lasts
			srv.Resume()
		} else {
			srv.Kill()
			time.Sleep(between(rng, 200*time.Millisecond, p.maxDown)) // how long the fault lasts
			srv.Restart()
			p.waitClusterOK()
		}
		return e
	case "pubsub-kill":
		e := p.faults.begin(kind, classLink, "every server", allSlots)
		for _, srv := range p.servers {
			srv.Do(p.t, "CLIENT", "KILL", "TYPE", "pubsub")
		}
		return e
	case "gossip-stop", "gossip-loss", "gossip-delay":
		slot := rng.IntN(len(p.replicas))
		f := p.replicas[slot].gossip
		e := p.faults.begin(kind, classLink, fmt.Sprintf("slot %d", slot), slot)
		switch kind {
		case "gossip-stop":
			f.Cut(true)
			time.Sleep(between(rng, 300*time.Millisecond, 3*time.Second)) // how long the fault lasts
			f.Cut(false)
		case "gossip-loss":
			loss := 0.2 + 0.6*rng.Float64()
			e.Target += fmt.Sprintf(" (%.0f%% loss)", 100*loss)
			f.SetLoss(loss)
			time.Sleep(between(rng, time.Second, 4*time.Second)) // how long the fault lasts
			f.SetLoss(0)
		default:
			d := between(rng, 10*time.Millisecond, 150*time.Millisecond)
			e.Target += fmt.Sprintf(" (%v delay)", d.Round(time.Millisecond))
			f.SetDelay(d)
			time.Sleep(between(rng, time.Second, 4*time.Second)) // how long the fault lasts
			f.SetDelay(0)
		}
		return e
	case "loader-slow", "loader-fail":
		mode, lo, hi := int32(loaderSlow), time.Second, 3*time.Second
		if kind == "loader-fail" {
			mode, lo, hi = loaderFailing, 300*time.Millisecond, 2*time.Second
		}
		e := p.faults.begin(kind, classLoader, "database", allSlots)
		p.loaders.mode.Store(mode)
		time.Sleep(between(rng, lo, hi)) // how long the fault lasts
		p.loaders.mode.Store(loaderNormal)
		return e
	default: // replica-restart
		slot := rng.IntN(len(p.replicas))
		e := p.faults.begin(kind, classReplica, fmt.Sprintf("slot %d", slot), allSlots)
		p.replace(slot)
		return e
	}
}

// waitClusterOK waits, on a Redis Cluster, until every master reports
// cluster_state:ok after a restart.
func (p *phase) waitClusterOK() {
	if p.cluster == nil {
		return
	}
	redistest.WaitFor(p.t, 30*time.Second, func() bool {
		for _, m := range p.servers {
			info, _ := m.Do(p.t, "CLUSTER", "INFO").(string)
			if !strings.Contains(info, "cluster_state:ok") {
				return false
			}
		}
		return true
	}, "every master reports cluster_state:ok")
}
