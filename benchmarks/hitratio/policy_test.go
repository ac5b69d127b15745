package hitratio

import (
	"bytes"
	"encoding/json"
	"math"
	"math/rand/v2"
	"strings"
	"testing"
)

func hitsOf(t *testing.T, fn policyFunc, keys []uint64, capacity int) int64 {
	t.Helper()
	hits, err := fn(newWorkload(keys), capacity)
	if err != nil {
		t.Fatal(err)
	}
	return hits
}

func TestLRU(t *testing.T) {
	tests := []struct {
		name     string
		keys     []uint64
		capacity int
		want     int64
	}{
		{"repeats", []uint64{1, 1, 1}, 1, 2},
		{"loop one larger than the cache", []uint64{1, 2, 3, 1, 2, 3}, 2, 0},
		{"loop that fits", []uint64{1, 2, 3, 1, 2, 3}, 3, 3},
		{"recency protects", []uint64{1, 2, 1, 3, 1, 2}, 2, 2}, // 2 is evicted by 3, 1 stays
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := hitsOf(t, replayLRU, tt.keys, tt.capacity); got != tt.want {
				t.Fatalf("%d hits, want %d", got, tt.want)
			}
		})
	}
}

func TestBelady(t *testing.T) {
	tests := []struct {
		name     string
		keys     []uint64
		capacity int
		want     int64
	}{
		{"repeats", []uint64{1, 1, 1}, 1, 2},
		// Keeps 1 and lets 2 and 3 pass: 1 hits twice; LRU hits none.
		{"loop one larger than the cache, bypass", []uint64{1, 2, 1, 3, 1}, 1, 2},
		// Classic: 1 2 3 1 2 3 at 2: OPT keeps one key of the loop.
		{"loop", []uint64{1, 2, 3, 1, 2, 3}, 2, 2},
		// At 3, the key used farthest ahead is 3 itself: it is left out,
		// where LRU would evict 1 and miss everything after.
		{"farthest", []uint64{1, 2, 3, 1, 2, 4, 3}, 2, 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := hitsOf(t, replayBelady, tt.keys, tt.capacity); got != tt.want {
				t.Fatalf("%d hits, want %d", got, tt.want)
			}
		})
	}
}

// TestBeladyIsOptimal compares replayBelady with an exhaustive search over
// every choice a cache with bypass can make, on random short sequences.
func TestBeladyIsOptimal(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for range 300 {
		keys := make([]uint64, 4+r.IntN(10))
		for i := range keys {
			keys[i] = uint64(r.IntN(5))
		}
		capacity := 1 + r.IntN(3)
		if got, want := hitsOf(t, replayBelady, keys, capacity), optimum(keys, capacity); got != want {
			t.Fatalf("%v at %d: %d hits, optimum %d", keys, capacity, got, want)
		}
	}
}

// optimum is the most hits any cache of capacity can score on keys, by
// dynamic programming over the sets of resident keys (keys < 64).
func optimum(keys []uint64, capacity int) int64 {
	best := map[uint64]int64{0: 0} // resident set as a bitmask -> hits so far
	for _, k := range keys {
		bit := uint64(1) << k
		next := map[uint64]int64{}
		keep := func(set uint64, hits int64) {
			if h, ok := next[set]; !ok || hits > h {
				next[set] = hits
			}
		}
		for set, hits := range best {
			if set&bit != 0 {
				keep(set, hits+1)
				continue
			}
			keep(set, hits) // bypass
			if popcount(set) < capacity {
				keep(set|bit, hits)
				continue
			}
			for v := set; v != 0; v &= v - 1 {
				keep(set&^(v&-v)|bit, hits)
			}
		}
		best = next
	}
	var most int64
	for _, h := range best {
		most = max(most, h)
	}
	return most
}

func popcount(x uint64) int {
	n := 0
	for ; x != 0; x &= x - 1 {
		n++
	}
	return n
}

func TestReplayJSONAndTable(t *testing.T) {
	keys := []uint64{1, 2, 3, 1, 2, 3}
	results, err := Replay("tiny", keys, []string{"lru", "belady"}, []int{2, 3})
	if err != nil {
		t.Fatal(err)
	}
	want := []Result{
		{Trace: "tiny", Capacity: 2, Policy: "lru", Requests: 6, Hits: 0, Ratio: 0, Runs: 1},
		{Trace: "tiny", Capacity: 2, Policy: "belady", Requests: 6, Hits: 2, Ratio: 2.0 / 6, Runs: 1},
		{Trace: "tiny", Capacity: 3, Policy: "lru", Requests: 6, Hits: 3, Ratio: 0.5, Runs: 1},
		{Trace: "tiny", Capacity: 3, Policy: "belady", Requests: 6, Hits: 3, Ratio: 0.5, Runs: 1},
	}
	if len(results) != len(want) {
		t.Fatalf("got %+v", results)
	}
	for i := range want {
		if results[i] != want[i] {
			t.Fatalf("result %d: got %+v, want %+v", i, results[i], want[i])
		}
	}
	var b bytes.Buffer
	if err := WriteJSON(&b, results); err != nil {
		t.Fatal(err)
	}
	var raw []map[string]any
	if err := json.Unmarshal(b.Bytes(), &raw); err != nil {
		t.Fatal(err)
	}
	fields := []string{"trace", "capacity", "policy", "requests", "hits", "ratio", "runs"}
	for _, f := range fields {
		if _, ok := raw[0][f]; !ok || len(raw[0]) != len(fields) {
			t.Fatalf("JSON fields %v, want exactly %v", raw[0], fields)
		}
	}
	back, err := ReadJSON(&b)
	if err != nil || len(back) != len(results) || back[1] != results[1] {
		t.Fatalf("ReadJSON: %+v, %v", back, err)
	}
	var table strings.Builder
	if err := WriteTable(&table, results); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(table.String(), "| tiny | 2 | 0.00 | 33.33 |") {
		t.Fatalf("table:\n%s", table.String())
	}
}

// TestUnsettled checks that replays go on while their mean's standard
// error is over MaxRelErr of it or fewer than 3 give it, and stop at
// MaxRequests.
func TestUnsettled(t *testing.T) {
	bimodal := make([]int64, 45) // one in 15 collapsed: mean 28.5, standard error 0.87 (3%)
	for i := range bimodal {
		bimodal[i] = 30
		if i%15 == 0 {
			bimodal[i] = 7
		}
	}
	for _, c := range []struct {
		name string
		opts Options
		runs []int64
		want bool
	}{
		{"off", Options{}, bimodal, false},
		{"one run", Options{MaxRelErr: 0.01}, []int64{5}, true},
		{"two runs", Options{MaxRelErr: 0.01}, []int64{5, 5}, true},
		{"steady", Options{MaxRelErr: 0.01}, []int64{100, 101, 99, 100}, false},
		{"spread", Options{MaxRelErr: 0.01}, []int64{100, 120, 80, 100}, true},
		{"bimodal", Options{MaxRelErr: 0.01}, bimodal, true},
		{"bimodal, looser", Options{MaxRelErr: 0.06}, bimodal, false},
		{"bound reached", Options{MaxRelErr: 0.01, MaxRequests: 45 * 10}, bimodal, false},
		{"bound not reached", Options{MaxRelErr: 0.01, MaxRequests: 46 * 10}, bimodal, true},
		{"no hits", Options{MaxRelErr: 0.01}, []int64{0, 0, 0}, false},
	} {
		if got := c.opts.unsettled(c.runs, 10); got != c.want {
			t.Errorf("%s: unsettled = %v, want %v", c.name, got, c.want)
		}
	}
}

// TestReplayUntilSettled checks, through ReplayWith, that a policy whose
// replays spread is replayed until MaxRequests, one whose replays agree
// stops at 3, the bound never cuts the runs Runs asks for, and the
// Result records the standard error.
func TestReplayUntilSettled(t *testing.T) {
	var calls int
	registry["test-spread"] = func(*workload, int) (int64, error) { calls++; return int64(10 * (1 + calls%2)), nil }
	registry["test-steady"] = func(*workload, int) (int64, error) { return 50, nil }
	t.Cleanup(func() { delete(registry, "test-spread"); delete(registry, "test-steady") })
	keys := make([]uint64, 100)
	for _, c := range []struct {
		policy string
		opts   Options
		runs   int
	}{
		{"test-spread", Options{Runs: 1, MaxRelErr: 0.01, MaxRequests: 700}, 7},
		{"test-spread", Options{Runs: 9, MaxRelErr: 0.01, MaxRequests: 700}, 9},
		{"test-spread", Options{Runs: 1, MaxRelErr: 0.5, MaxRequests: 700}, 3},
		{"test-steady", Options{Runs: 1, MaxRelErr: 0.01, MaxRequests: 700}, 3},
		{"test-steady", Options{Runs: 1}, 1},
		{"lru", Options{Runs: 1, MaxRelErr: 0.01, MaxRequests: 700}, 1},
	} {
		calls = 0
		results, err := ReplayWith("t", keys, []string{c.policy}, []int{2}, c.opts)
		if err != nil {
			t.Fatal(err)
		}
		if got := results[0].Runs; got != c.runs {
			t.Errorf("%s %+v: %d runs, want %d", c.policy, c.opts, got, c.runs)
		}
	}
	// 10, 20, 10, 20, 10, 20 hits of 100 requests: mean 0.15, sample
	// deviation 0.0548, standard error 0.0224.
	calls = 1
	results, err := ReplayWith("t", keys, []string{"test-spread"}, []int{2}, Options{Runs: 6})
	if err != nil {
		t.Fatal(err)
	}
	if r := results[0]; r.Ratio != 0.15 || math.Abs(r.StdErr-0.02236) > 1e-4 || r.Hits != 15 {
		t.Errorf("result %+v: want ratio 0.15, stderr 0.0224, hits 15", r)
	}
}

// TestRunsFor checks that a short trace is replayed until MinRequests
// requests, and a long one Runs times.
func TestRunsFor(t *testing.T) {
	for _, c := range []struct {
		opts     Options
		requests int64
		want     int
	}{
		{Options{}, 100, 1},
		{Options{Runs: 3}, 100, 3},
		{Options{Runs: 3, MinRequests: 1_000_000}, 6_015, 167},
		{Options{Runs: 3, MinRequests: 1_000_000}, 505_500, 3},
		{Options{Runs: 3, MinRequests: 1_000_000}, 135_702, 8},
		{Options{Runs: 3, MinRequests: 1_000_000}, 3_912_296, 3},
		{Options{Runs: 1, MinRequests: 10}, 0, 1},
	} {
		if got := runsFor(c.opts, c.requests); got != c.want {
			t.Errorf("runsFor(%+v, %d) = %d, want %d", c.opts, c.requests, got, c.want)
		}
	}
	// A randomized policy's Result says how many runs it is the mean of.
	results, err := ReplayWith("tiny", []uint64{1, 2, 1}, []string{"lru", "otter"}, []int{2},
		Options{Runs: 1, MinRequests: 9})
	if err != nil {
		t.Fatal(err)
	}
	if results[0].Runs != 1 || results[1].Runs != 3 {
		t.Errorf("runs: lru %d, otter %d; want 1 and 3", results[0].Runs, results[1].Runs)
	}
}

func TestReplayRejectsUnknownPolicy(t *testing.T) {
	if _, err := Replay("tiny", []uint64{1}, []string{"fifo"}, []int{1}); err == nil {
		t.Fatal("no error")
	}
}

// TestBeladyBoundsLRUOnTraces checks the optimum against LRU on a prefix
// of each trace.
func TestBeladyBoundsLRUOnTraces(t *testing.T) {
	dir := traceDir(t)
	for _, tr := range Traces {
		keys, err := Load(dir, tr, 100_000)
		if err != nil {
			t.Fatal(err)
		}
		w := newWorkload(keys)
		for _, c := range tr.Capacities {
			lru, _ := replayLRU(w, c)
			opt, _ := replayBelady(w, c)
			if opt < lru {
				t.Errorf("%s at %d: belady %d hits, below LRU's %d", tr.Name, c, opt, lru)
			}
		}
	}
}
