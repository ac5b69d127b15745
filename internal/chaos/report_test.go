package chaos_test

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/strata-cache/strata/tiered"
)

// report is the soak's result, printed and written as JSON.
type report struct {
	Seed       uint64        `json:"seed"`
	Duration   string        `json:"duration"`
	Phases     []phaseReport `json:"phases"`
	Goroutines struct {
		Start int `json:"start"`
		End   int `json:"end"`
	} `json:"goroutines"`
	HeapBytes struct {
		Start uint64 `json:"start"`
		End   uint64 `json:"end"`
	} `json:"heap_bytes"`
}

// phaseReport is one topology's result. The must-be-0 numbers:
// StaleBeyondBounds, Divergent, LoadsPerExpiry.Extra, GetErrors,
// WriteBehind.Lost (and LostByTrim), Unclassified, HealFailures.
type phaseReport struct {
	Name              string         `json:"name"`
	Ran               string         `json:"ran"`
	Reads             int64          `json:"reads"`
	Writes            int64          `json:"writes"`
	WriteErrors       int64          `json:"write_errors"` // failed after retrying for writeRetryLimit
	WriteRetries      int64          `json:"write_retries"`
	TagInvalidations  int64          `json:"tag_invalidations"`
	DatabaseLoads     int64          `json:"database_loads"`
	Faults            map[string]int `json:"faults"`
	FaultLog          []faultEvent   `json:"fault_log"`
	HealFailures      int            `json:"heal_failures"`
	StaleBeyondBounds int            `json:"stale_beyond_bounds"`
	StaleExamples     []staleRead    `json:"stale_examples,omitzero"`
	StaleWithin       map[string]int `json:"stale_within_bounds"` // older than the propagation bound, covered by a fault's bound
	LinkBoundExamples []staleRead    `json:"link_bound_examples,omitzero"`
	Unclassified      int            `json:"unclassified"` // candidates beyond the memory cap
	Divergent         int            `json:"divergent"`
	DivergentExamples []string       `json:"divergent_examples,omitzero"`
	LoadsPerExpiry    loadsPerExpiry `json:"loads_per_expiry"`
	GetErrors         int            `json:"get_errors"`
	GetErrorsExcused  int            `json:"get_errors_during_loader_faults"`
	GetErrorExamples  []string       `json:"get_error_examples,omitzero"`
	WriteBehind       wbReport       `json:"write_behind"`
	Audit             auditReport    `json:"audit"`
	Hits              tiered.Stats   `json:"stats"`
	L1Resets          uint64         `json:"l1_resets"`
	RouteFlushes      uint64         `json:"route_flushes"`
}

type wbReport struct {
	Sets         int64    `json:"sets"`
	SetErrors    int64    `json:"set_errors"`
	Flushes      int64    `json:"flush_calls"`
	Lost         int      `json:"lost"`
	LostExamples []string `json:"lost_examples,omitzero"`
	LostByTrim   uint64   `json:"lost_by_trim"`
	DeadLettered uint64   `json:"dead_lettered"`
}

type auditReport struct {
	Samples      uint64  `json:"samples"`
	Inconsistent uint64  `json:"inconsistent"`
	Nines        float64 `json:"nines"`
}

// finish heals and checks the phase once the workload stopped.
func (p *phase) finish(ran time.Duration) phaseReport {
	t := p.t
	if !p.waitHealed(30 * time.Second) {
		t.Errorf("%s: not healthy 30 s after the workload stopped: %s", p.name, p.unhealthy())
		p.healFailures++
	}
	r := phaseReport{Name: p.name, Ran: ran.Round(time.Millisecond).String(), Reads: p.reads.Load(),
		Writes: p.writes.Load(), WriteErrors: p.writeErrors.Load(), WriteRetries: p.writeRetries.Load(), TagInvalidations: p.tagWrites.Load(),
		DatabaseLoads: p.db.loads.Load(), Faults: p.faults.counts(), HealFailures: p.healFailures}
	// Convergence: every replica answers what L2 holds, L2 what the
	// database holds (or nothing).
	probe := p.probe()
	var diverged []string
	poll(15*time.Second, func() bool { diverged = p.divergent(probe); return len(diverged) == 0 })
	r.Divergent, r.DivergentExamples = len(diverged), diverged[:min(len(diverged), 5)]
	// Write-behind: every acknowledged Set reaches the database.
	var lost []string
	poll(30*time.Second, func() bool { lost = p.wbdb.lost(); return len(lost) == 0 })
	r.WriteBehind = wbReport{Sets: p.wbWrites.Load(), SetErrors: p.wbErrors.Load(), Flushes: p.wbdb.flushes.Load(),
		Lost: len(lost), LostExamples: lost[:min(len(lost), 5)]}
	for _, c := range p.allCaches(nsWB) {
		s := c.Stats().WriteBehind
		r.WriteBehind.LostByTrim += s.LostByTrim
		r.WriteBehind.DeadLettered += s.DeadLettered
	}
	events := p.faults.snapshot()
	r.FaultLog = events
	stale, within, linkOnly := p.classify(events)
	r.StaleBeyondBounds, r.StaleWithin, r.LinkBoundExamples = len(stale), within, linkOnly
	r.StaleExamples = stale[:min(len(stale), 5)]
	p.mu.Lock()
	r.Unclassified = p.candsDropped
	p.mu.Unlock()
	r.GetErrors, r.GetErrorsExcused, r.GetErrorExamples = p.getErrors(events)
	r.LoadsPerExpiry = p.loadsPerExpiry(events)
	all := p.allCaches(nsMain)
	r.Audit.Samples, r.Audit.Inconsistent, r.Audit.Nines = auditNines(all)
	for _, c := range all {
		r.Hits = r.Hits.Add(c.Stats())
	}
	for _, rep := range p.replicas {
		rep.mu.RLock()
		cs := rep.client.Stats()
		rep.mu.RUnlock()
		r.L1Resets += cs.Bus.Resets
		r.RouteFlushes += cs.RouteFlushes
	}
	p.closeAll()
	p.fail(r)
	p.release()
	return r
}

// release drops what the checks kept, so the heap at the end of the soak
// measures what the library left behind.
func (p *phase) release() {
	p.mu.Lock()
	p.cands, p.getErrs = nil, nil
	p.mu.Unlock()
	p.exp.mu.Lock()
	p.exp.byKey = nil
	p.exp.mu.Unlock()
	p.madeMu.Lock()
	p.caches = [3][]*tiered.Cache[string]{}
	p.madeMu.Unlock()
	p.db, p.wbdb = nil, nil
	for _, r := range p.replicas {
		r.mu.Lock()
		r.client, r.main, r.exp, r.wb = nil, nil, nil, nil
		r.mu.Unlock()
	}
}

// probe returns a cache of the versioned namespace with L1 off, on a
// client of its own: what L2 holds.
func (p *phase) probe() *tiered.Cache[string] {
	c, err := tiered.NewClient(context.Background(), tiered.Config{NodeID: p.name + "-probe", Redis: p.redis, Logger: quietLogger})
	if err != nil {
		p.t.Fatalf("%s: probe: %v", p.name, err)
	}
	p.t.Cleanup(func() { _ = c.Close() })
	return p.newCache(c, "users", tiered.Options[string]{TTL: mainTTL, L1: tiered.L1Options{Disabled: true},
		Tags: func(key, _ string) []string { return []string{tagOf(key)} }})
}

// fail fails the test for every must-be-0 number that is not 0.
func (p *phase) fail(r phaseReport) {
	t := p.t
	if r.StaleBeyondBounds > 0 {
		b, _ := json.MarshalIndent(r.StaleExamples, "", "  ")
		t.Errorf("%s: %d stale reads beyond the bounds of DESIGN.md, the first:\n%s", p.name, r.StaleBeyondBounds, b)
	}
	if r.Unclassified > 0 {
		t.Errorf("%s: %d candidate stale reads past the memory cap were not classified", p.name, r.Unclassified)
	}
	if r.WriteErrors > 0 {
		t.Errorf("%s: %d writes still failed after %v of retries", p.name, r.WriteErrors, writeRetryLimit)
	}
	if r.HealFailures > 0 {
		t.Errorf("%s: %d times the system did not heal", p.name, r.HealFailures)
	}
	if r.Divergent > 0 {
		t.Errorf("%s: %d (replica, key) pairs disagree with L2 15 s after the workload stopped: %q", p.name, r.Divergent, r.DivergentExamples)
	}
	if r.LoadsPerExpiry.Extra > 0 {
		t.Errorf("%s: %d loads beyond one per key per expiry while L2 was up: %q", p.name, r.LoadsPerExpiry.Extra, r.LoadsPerExpiry.Examples)
	}
	if r.GetErrors > 0 {
		t.Errorf("%s: %d reads failed while the loader worked: %q", p.name, r.GetErrors, r.GetErrorExamples)
	}
	if r.WriteBehind.Lost > 0 || r.WriteBehind.LostByTrim > 0 {
		t.Errorf("%s: write-behind lost %d acknowledged writes (%d by trim): %q", p.name, r.WriteBehind.Lost, r.WriteBehind.LostByTrim, r.WriteBehind.LostExamples)
	}
}

// publish prints the report as a table and writes it as JSON.
func (rep *report) publish(t *testing.T) {
	var b strings.Builder
	fmt.Fprintf(&b, "chaos soak, seed %d (-soak.seed=%d), %s\n", rep.Seed, rep.Seed, rep.Duration)
	row := func(name string, f func(phaseReport) any) {
		fmt.Fprintf(&b, "  %-44s", name)
		for _, ph := range rep.Phases {
			fmt.Fprintf(&b, " %14v", f(ph))
		}
		b.WriteByte('\n')
	}
	row("phase", func(r phaseReport) any { return r.Name })
	row("ran", func(r phaseReport) any { return r.Ran })
	row("reads served", func(r phaseReport) any { return r.Reads })
	row("writes (retries)", func(r phaseReport) any { return fmt.Sprintf("%d (%d)", r.Writes, r.WriteRetries) })
	row("writes failed after retries (must be 0)", func(r phaseReport) any { return r.WriteErrors })
	row("database loads", func(r phaseReport) any { return r.DatabaseLoads })
	row("L1 / L2 hit ratio", func(r phaseReport) any {
		return fmt.Sprintf("%.0f%% / %.0f%%", 100*r.Hits.L1HitRatio(), 100*r.Hits.L2HitRatio())
	})
	row("L1 resets / route flushes", func(r phaseReport) any { return fmt.Sprintf("%d / %d", r.L1Resets, r.RouteFlushes) })
	for _, k := range faultKinds {
		row("faults: "+k.kind, func(r phaseReport) any { return r.Faults[k.kind] })
	}
	row("stale reads beyond bounds (must be 0)", func(r phaseReport) any { return r.StaleBeyondBounds })
	row("stale candidates within a fault's bound", func(r phaseReport) any {
		n := 0
		for _, v := range r.StaleWithin {
			n += v
		}
		return n
	})
	row("divergent (replica, key) pairs (must be 0)", func(r phaseReport) any { return r.Divergent })
	row("max loads per key per expiry (must be 1)", func(r phaseReport) any { return r.LoadsPerExpiry.Max })
	row("  extra loads, L2 up (must be 0)", func(r phaseReport) any { return r.LoadsPerExpiry.Extra })
	row("  loads / expiries / excused", func(r phaseReport) any {
		return fmt.Sprintf("%d/%d/%d", r.LoadsPerExpiry.Loads, r.LoadsPerExpiry.Expiries, r.LoadsPerExpiry.Excused)
	})
	row("Get errors, loader working (must be 0)", func(r phaseReport) any { return r.GetErrors })
	row("  Get errors during loader faults", func(r phaseReport) any { return r.GetErrorsExcused })
	row("write-behind Sets (errors)", func(r phaseReport) any {
		return fmt.Sprintf("%d (%d)", r.WriteBehind.Sets, r.WriteBehind.SetErrors)
	})
	row("write-behind lost (must be 0)", func(r phaseReport) any { return r.WriteBehind.Lost + int(r.WriteBehind.LostByTrim) })
	row("auditor samples / inconsistent / nines", func(r phaseReport) any {
		return fmt.Sprintf("%d/%d/%.1f", r.Audit.Samples, r.Audit.Inconsistent, r.Audit.Nines)
	})
	row("heal failures (must be 0)", func(r phaseReport) any { return r.HealFailures })
	fmt.Fprintf(&b, "  %-44s %d -> %d\n", "goroutines start -> end", rep.Goroutines.Start, rep.Goroutines.End)
	fmt.Fprintf(&b, "  %-44s %.1f -> %.1f MiB\n", "heap start -> end", float64(rep.HeapBytes.Start)/(1<<20), float64(rep.HeapBytes.End)/(1<<20))
	for _, ph := range rep.Phases {
		kinds := make([]string, 0, len(ph.StaleWithin))
		for k, n := range ph.StaleWithin {
			kinds = append(kinds, fmt.Sprintf("%s: %d", k, n))
		}
		slices.Sort(kinds)
		fmt.Fprintf(&b, "  %s: candidates by the bound that covered them: %s\n", ph.Name, strings.Join(kinds, "; "))
	}
	path := filepath.Join(os.TempDir(), fmt.Sprintf("strata-chaos-%d-%s.json", rep.Seed, time.Now().Format("20060102-150405")))
	data, err := json.MarshalIndent(rep, "", "  ")
	if err == nil {
		err = os.WriteFile(path, data, 0o644)
	}
	if err != nil {
		fmt.Fprintf(&b, "  report not written: %v\n", err)
	} else {
		fmt.Fprintf(&b, "  report: %s\n", path)
	}
	t.Log(b.String())
}
