//go:build !race

// Strata's Get is too slow under the race detector for trace replays.

package hitratio

import (
	"flag"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"
)

// enginePrefix is how many requests of each trace TestStrataKeepsEngineHitRatio
// replays (0: all), to stay within about 20 s without -race.
var enginePrefix = map[string]int{
	"arc-oltp": 60_000, "arc-p3": 30_000, "lirs-gli": 0, "lirs-loop": 40_000, "corda-vaultservice": 40_000,
}

// judgeOtter makes TestStrataKeepsEngineHitRatio fail on the otter pair too.
// It is off by default: on these prefixes otter's own replays are bimodal
// at some capacities (Corda's first 40,000 requests at 100 entries: raw
// otter 2.56% in one run, 23.31% in another, strata-otter alike), so one
// run of each judges otter's spread, not Strata; the pair is replayed and
// logged either way. Over whole traces, averaged (make bench-report), the
// pair is compared point by point in BENCHMARKS.md.
var judgeOtter = flag.Bool("hitratio.otter", false, "judge strata-otter against otter-sized as well")

// TestStrataKeepsEngineHitRatio replays a prefix of each trace at its six
// capacities through Strata's L1 and through its raw engine, and fails
// where Strata's hit ratio is below 0.98 times the engine's.
//
// Against ristretto (configured as advised: ten counters per entry) every
// point is judged. Replays yield before every request (Options.Yield),
// which keeps ristretto's run-to-run noise near 1%, though one run in
// twenty on GLI lands up to 25% low. GLI (6,015 requests) is short enough
// that sampled eviction alone spreads one run by ±5% at 250 entries (21
// runs each: strata 674-741 hits, ristretto 648-735, medians 712 and 716),
// so a median of five still misses 0.98 about one CI run in ten. GLI is
// judged on the medians of five runs, and a point that falls short by less
// than 10% on them is replayed 101 times (30 ms a run) and judged on those
// medians: on 21, GLI at 500 still missed 0.98 one run in four (0.972,
// where means of 41 give 0.99-1.005). A point of the long traces is judged
// on one run, and if short by less than 10%, on the medians of five. One
// short by more fails at once.
//
// Against otter (otter-sized: sized as Strata's engine sizes it, see
// replayOtterSized) a run at a small capacity may land 10% to 30% off: even
// held to its capacity (raw otter here by a synchronous Executor,
// replayOtter; Strata's engine by running the maintenance of its Sets
// before they return), otter's replays of small caches spread. So
// strata-otter is judged on each trace's hits summed over its six
// capacities, the same way (medians of five on GLI), with 0.95 for 0.98.
func TestStrataKeepsEngineHitRatio(t *testing.T) {
	dir := traceDir(t)
	var results []Result
	var short []string
	start := time.Now()
	for _, tr := range Traces {
		keys, err := Load(dir, tr, enginePrefix[tr.Name])
		if err != nil {
			t.Fatal(err)
		}
		w := newWorkload(keys)
		w.yield = true
		var otterTotals [2]int64
		for _, capacity := range tr.Capacities {
			got := judged(t, w, tr.Name, capacity, [2]string{"strata", "ristretto"})
			if got[0].Ratio < 0.98*got[1].Ratio {
				short = append(short, fmt.Sprintf("%s at %d: strata %.2f%% < 0.98 × ristretto %.2f%%",
					tr.Name, capacity, 100*got[0].Ratio, 100*got[1].Ratio))
			}
			o := compare(t, w, tr.Name, capacity, [2]string{"strata-otter", "otter-sized"}, firstRuns(w))
			otterTotals[0] += o[0].Hits
			otterTotals[1] += o[1].Hits
			results = append(results, got[0], got[1], o[0], o[1])
		}
		if *judgeOtter && float64(otterTotals[0]) < 0.95*float64(otterTotals[1]) {
			short = append(short, fmt.Sprintf("%s: strata-otter %d hits over the six capacities < 0.95 × otter-sized's %d",
				tr.Name, otterTotals[0], otterTotals[1]))
		}
	}
	var table strings.Builder
	if err := WriteTable(&table, results); err != nil {
		t.Fatal(err)
	}
	t.Logf("hit ratios (%%) in %v:\n%s", time.Since(start).Round(time.Millisecond), table.String())
	for _, s := range short {
		t.Error(s)
	}
}

// judged compares the policies p at capacity as the test judges them:
// firstRuns runs, then retryRuns if the first fall short by less than 10%.
func judged(t *testing.T, w *workload, trace string, capacity int, p [2]string) [2]Result {
	t.Helper()
	got := compare(t, w, trace, capacity, p, firstRuns(w))
	if r := got[0].Ratio / got[1].Ratio; r < 0.98 && r >= 0.9 {
		got = compare(t, w, trace, capacity, p, retryRuns(w))
	}
	return got
}

// shortTrace is the length under which one run is cheap and noisy.
const shortTrace = 20_000

// firstRuns is how many runs a point of w is first judged on: five on a
// short trace, one on a long one.
func firstRuns(w *workload) int {
	if len(w.ids) < shortTrace {
		return 5
	}
	return 1
}

// retryRuns is how many runs a point of w that fell short is judged on
// again: 101 on a short trace, five on a long one.
func retryRuns(w *workload) int {
	if len(w.ids) < shortTrace {
		return 101
	}
	return 5
}

// compare replays w at capacity through both policies of p, runs times
// each, and returns their median results.
func compare(t *testing.T, w *workload, trace string, capacity int, p [2]string, runs int) [2]Result {
	t.Helper()
	var out [2]Result
	for i, name := range p {
		hits := make([]int64, runs)
		for r := range hits {
			var err error
			if hits[r], err = registry[name](w, capacity); err != nil {
				t.Fatalf("%s on %s at %d: %v", name, trace, capacity, err)
			}
		}
		slices.Sort(hits)
		out[i] = meanResult(trace, capacity, name, int64(len(w.ids)), []int64{hits[runs/2]})
	}
	return out
}
