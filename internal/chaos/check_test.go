package chaos_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/strata-cache/strata/tiered"
)

// expLoads counts the loads of the expiring namespace, per key: with L2 up
// every expiry of a key costs one load for the whole fleet (guarantee 8).
type expLoads struct {
	mu    sync.Mutex
	byKey map[string][]expLoad
}

// expLoad is one load: when, whether it failed, and the fleet's count of
// the events that excuse a second load (an L2 error, a lease wait that
// timed out, a fill rejected) before it began.
type expLoad struct {
	start, end time.Time
	failed     bool
	excuses    uint64
	replica    string
}

func (e *expLoads) init(keys []string) {
	e.byKey = make(map[string][]expLoad, len(keys))
}

// load is the expiring namespace's loader.
func (e *expLoads) load(ctx context.Context, k, replica string, p *phase) (string, error) {
	l := expLoad{start: time.Now(), excuses: p.excuses(), replica: replica}
	err := p.loaders.apply(ctx)
	l.end, l.failed = time.Now(), err != nil
	e.mu.Lock()
	e.byKey[k] = append(e.byKey[k], l)
	e.mu.Unlock()
	if err != nil {
		return "", err
	}
	return "v", nil
}

// excuses sums, over the expiring namespace's caches, the events after
// which a key may be loaded again before it expires: L2 did not answer,
// a lease wait ran out, a fill lost its lease.
func (p *phase) excuses() uint64 {
	var n uint64
	for _, c := range p.allCaches(nsExp) {
		s := c.Stats()
		n += s.L2Errors + s.LeaseTimeouts + s.FillsRejected + s.CorruptEntries
	}
	return n
}

// loadsPerExpiry is the expiring namespace's result.
type loadsPerExpiry struct {
	Loads    int      `json:"loads"`
	Expiries int      `json:"expiries"`       // runs of loads of one key closer than TTL/2
	Max      int      `json:"max_per_expiry"` // unexcused loads in one expiry: must be 1
	Extra    int      `json:"extra_loads"`    // unexcused loads beyond one per expiry: must be 0
	Excused  int      `json:"excused_loads"`  // beyond one per expiry, while L2 or the loader was not up
	Examples []string `json:"examples,omitzero"`
}

// loadsPerExpiry groups each key's loads into expiries (loads less than
// TTL/2 apart are one expiry's) and counts the loads beyond the first of
// each, excused when L2 or the database was not up around them.
func (p *phase) loadsPerExpiry(events []faultEvent) loadsPerExpiry {
	p.exp.mu.Lock()
	defer p.exp.mu.Unlock()
	var r loadsPerExpiry
	for k, loads := range p.exp.byKey {
		slices.SortFunc(loads, func(a, b expLoad) int { return a.start.Compare(b.start) })
		r.Loads += len(loads)
		run := 0
		for i, l := range loads {
			if i == 0 || l.start.Sub(loads[i-1].end) >= expTTL/2 {
				r.Expiries++
				run = 1
				r.Max = max(r.Max, run)
				continue
			}
			prev := loads[i-1]
			excused := prev.failed || l.excuses != prev.excuses ||
				overlaps(events, prev.start, l.end, p.recovery+leaseTTL, classL2, classLoader, classReplica)
			if excused {
				r.Excused++
				continue
			}
			run++
			r.Max = max(r.Max, run)
			r.Extra++
			if len(r.Examples) < 5 {
				r.Examples = append(r.Examples, fmt.Sprintf("%s loaded by %s at %s-%s and again by %s at %s",
					k, prev.replica, prev.start.Format(timeFormat), prev.end.Format(timeFormat), l.replica, l.start.Format(timeFormat)))
			}
		}
	}
	return r
}

const timeFormat = "15:04:05.000"

// staleRead is a read beyond its bound, with the write it missed.
type staleRead struct {
	candidate
	Missed   dbWrite   `json:"missed"` // the newer write the database held
	Bound    string    `json:"bound"`  // which bound applied
	Deadline time.Time `json:"deadline"`
}

// deadline is when every replica must stop answering versions older than
// w, for the replica in slot reader: the bound that applies to w is the
// propagation bound, or the detection bound if a link of the writer or the
// reader was down (or a replica replaced) while w propagated, or a
// server's recovery bound if it was faulted then.
func (p *phase) deadline(w dbWrite, reader int, events []faultEvent) (time.Time, string) {
	dl, why := w.Ack.Add(propagationBound), "propagation"
	if !w.OK {
		why = "propagation (the write failed, outside any fault)"
	}
	from, to := w.Begin, w.Ack.Add(propagationBound)
	for _, e := range events {
		healed := e.Healed
		if healed.IsZero() {
			healed = e.End
		}
		var d time.Time
		var bound string
		switch e.Class {
		case classLink, classReplica:
			if e.Slot != allSlots && e.Slot != w.Slot && e.Slot != reader {
				continue
			}
			d, bound = w.Ack.Add(detectionBound+propagationBound), "link down: detection ("+e.Kind+")"
		case classL2:
			healed = later(healed, e.End.Add(p.recovery))
			d = later(w.Ack.Add(detectionBound+propagationBound), healed.Add(propagationBound))
			bound = "server fault: recovery (" + e.Kind + " of " + e.Target + ")"
		default:
			continue
		}
		if e.Start.After(to) || healed.Before(from) {
			continue
		}
		if d.After(dl) {
			dl, why = d, bound
		}
	}
	return dl, why
}

func later(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

// classify sorts the candidates into stale reads beyond their bound and
// reads within one (counted by the bound that covered them).
//
// linkOnly are examples of reads the detection bound covered while one
// channel was down: guarantee 4 says the other channel alone delivers
// within the propagation bound, so these are worth a look.
func (p *phase) classify(events []faultEvent) (stale []staleRead, within map[string]int, linkOnly []staleRead) {
	within = map[string]int{}
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, c := range p.cands {
		var worst string
		var first dbWrite
		var firstDeadline time.Time
		found := false
		for i, w := range c.Newer {
			dl, why := p.deadline(w, c.Slot, events)
			if i == 0 {
				first, firstDeadline = w, dl
			}
			if c.Start.After(dl) {
				c.History = p.db.history(c.Key, c.Got, 8)
				stale = append(stale, staleRead{candidate: c, Missed: w, Bound: why, Deadline: dl})
				found = true
				break
			}
			worst = why
		}
		if !found {
			within[worst]++
			if strings.HasPrefix(worst, "link down") && len(linkOnly) < 5 {
				c.History = p.db.history(c.Key, c.Got, 8)
				linkOnly = append(linkOnly, staleRead{candidate: c, Missed: first, Bound: worst, Deadline: firstDeadline})
			}
		}
	}
	return stale, within, linkOnly
}

// getErrors counts the failed reads that no loader fault explains: one
// that overlapped a loader fault, or that failed with the injected error,
// which only a load begun during one returns (a Get begun just after the
// fault ended may have joined that load's flight), is excused.
func (p *phase) getErrors(events []faultEvent) (unexcused, excused int, examples []string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, e := range p.getErrs {
		if overlaps(events, e.start, e.end, 0, classLoader) || strings.Contains(e.err, errLoaderFault.Error()) {
			excused++
			continue
		}
		unexcused++
		if len(examples) < 5 {
			examples = append(examples, e.start.Format(timeFormat)+" "+e.err)
		}
	}
	return unexcused, excused, examples
}

// divergent lists the (replica, key) pairs whose answer differs from what
// L2 holds (through a probe with L1 off), and the keys whose L2 value is
// not the database's.
func (p *phase) divergent(probe *tiered.Cache[string]) []string {
	ctx := context.Background()
	var out []string
	lookup := func(c *tiered.Cache[string], k string) (string, error) {
		v, err := c.Get(ctx, k, nil)
		if errors.Is(err, tiered.ErrNotFound) {
			return "", nil
		}
		return v, err
	}
	for _, k := range p.keys {
		inL2, err := lookup(probe, k)
		if err != nil {
			out = append(out, fmt.Sprintf("probe %s: %v", k, err))
			continue
		}
		if db := p.db.current(k); inL2 != "" && inL2 != db {
			out = append(out, fmt.Sprintf("L2 %s=%s, database %s", k, inL2, db))
		}
		for _, r := range p.replicas {
			r.mu.RLock()
			got, err := lookup(r.main, k)
			r.mu.RUnlock()
			if err != nil || got != inL2 {
				out = append(out, fmt.Sprintf("%s %s=%q (%v), L2 %q", r.name, k, got, err, inL2))
			}
		}
	}
	return out
}

// poll reports whether cond held within timeout, polling.
func poll(timeout time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(timeout)
	for delay := time.Millisecond; ; delay = min(2*delay, 100*time.Millisecond) {
		if cond() {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(delay) // polling interval
	}
}

// auditNines reports the auditor's samples over caches: how many L1 hits
// it checked against L2, how many disagreed, and the nines of agreement.
func auditNines(caches []*tiered.Cache[string]) (samples, inconsistent uint64, nines float64) {
	var sum tiered.AuditStats
	for _, c := range caches {
		a := c.Stats().Audit
		sum.Samples += a.Samples
		sum.Inconsistent += a.Inconsistent
	}
	return sum.Samples, sum.Inconsistent, sum.Nines()
}

// diagnose lists what every server holds of key k (its value keys, plain
// and stand-in, with their TTLs and the start of their bytes) and the
// tag sets that name it, for the first few stale reads of a phase.
func (p *phase) diagnose(k string) []string {
	if p.diagnosed.Add(1) > 3 {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	var out []string
	for i, c := range p.admin {
		keys, _ := c.Keys(ctx, "*{"+k+"}*").Result()
		for _, key := range keys {
			ttl, _ := c.PTTL(ctx, key).Result()
			v, err := c.Get(ctx, key).Result()
			if err != nil {
				v = "(" + err.Error() + ")"
			}
			out = append(out, fmt.Sprintf("server %d %s: ttl %v, %q", i, key, ttl, v[:min(len(v), 120)]))
		}
		tags, _ := c.Keys(ctx, "*#tag:{"+tagOf(k)+"}").Result()
		for _, tag := range tags {
			members, _ := c.SMembers(ctx, tag).Result()
			has := slices.ContainsFunc(members, func(m string) bool { return strings.Contains(m, k) })
			out = append(out, fmt.Sprintf("server %d %s: %d members, names %s: %v", i, tag, len(members), k, has))
		}
	}
	return out
}
