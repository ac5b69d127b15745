// Package hitratio replays real cache traces through Strata's L1, the raw
// engines under it (ristretto v2, otter v2), a plain LRU and Belady's
// optimum, and reports each one's hit ratio at equal capacity in entries.
package hitratio

import (
	"encoding/json"
	"fmt"
	"io"
	"math"
	"os"
	"runtime"
	"slices"
	"sort"
)

// Result is one policy's hit ratio on one trace at one capacity. The JSON
// names are what the report tool reads.
type Result struct {
	Trace    string  `json:"trace"`
	Capacity int     `json:"capacity"`
	Policy   string  `json:"policy"`
	Requests int64   `json:"requests"`
	Hits     int64   `json:"hits"`
	Ratio    float64 `json:"ratio"`
	// Runs is how many replays Hits and Ratio are the mean of (0 in
	// results written before it was recorded).
	Runs int `json:"runs,omitempty"`
	// StdErr is the standard error of Ratio over the Runs replays (0 for
	// one replay).
	StdErr float64 `json:"stderr,omitempty"`
}

// Options tunes a replay.
type Options struct {
	// Runs is how many times each randomized policy (every real cache:
	// ristretto seeds its sketch from the clock, samples eviction
	// candidates in map order and drops reads under load; otter's read
	// buffers are lossy too) is replayed; its Result is the mean, Ratio
	// exactly and Hits rounded. LRU and Belady are deterministic and
	// replayed once. Zero means 1.
	Runs int
	// MinRequests replays a randomized policy more than Runs times on a
	// short trace: until it has replayed at least MinRequests requests in
	// all (LIRS GLI, 6,015 requests, at a million: 167 runs). A short
	// trace's run is cheap and the noisiest (one GLI run at 250 entries
	// moves by ±5-10%; otter at 100 entries on Corda ends some runs at
	// 1-13% instead of ~30%). Zero means Runs alone.
	MinRequests int64
	// MaxRelErr replays a randomized policy at one capacity more times
	// than Runs and MinRequests ask for, while the standard error of its
	// mean hits is over MaxRelErr of the mean (or fewer than 3 replays
	// give the error), until MaxRequests. A point whose replays are
	// bimodal needs many to settle (otter at 100 entries on Corda: about
	// one in 14 ends at 1-13% instead of ~30%, and 45 replays left a
	// policy's mean 2.2 points off one of 443); the others stop where they
	// would. The rule trusts the spread it has seen: a mode that none of
	// the first replays showed (at one in 14, none of 45 in 3.6% of
	// points) stays unseen. Zero means no more replays.
	MaxRelErr float64
	// MaxRequests bounds the replays MaxRelErr adds: it adds none once a
	// policy has replayed MaxRequests requests at a capacity (it never
	// cuts those Runs and MinRequests ask for). Zero means no bound.
	MaxRequests int64
	// Yield calls runtime.Gosched before every request to a real cache.
	// Ristretto counts reads for TinyLFU through a lossy buffer drained by
	// a goroutine of its own; a replay on one goroutine starves it, and
	// 30% to 80% of the reads are dropped (more on a loaded machine), so
	// the ratios swing with whatever else runs. Yielding lets the drain
	// keep up (about 1% dropped), as it would in a service whose request
	// goroutines block on I/O. False means no yielding.
	Yield bool
}

// DefaultOptions are Replay's: one run, yielding. Yielding keeps the
// run-to-run spread of ristretto's ratio near 1% (10% to 20% without it on
// the small traces), so one run is enough.
var DefaultOptions = Options{Runs: 1, Yield: true}

// Replay replays keys, the requests of trace, through each policy at each
// capacity (in entries): a request is a hit if its key is cached; on a
// miss the key is offered to the cache. Results come in capacity order,
// then policy order. It is ReplayWith with DefaultOptions.
func Replay(trace string, keys []uint64, policies []string, capacities []int) ([]Result, error) {
	return ReplayWith(trace, keys, policies, capacities, DefaultOptions)
}

// ReplayWith is Replay tuned by opts.
func ReplayWith(trace string, keys []uint64, policies []string, capacities []int, opts Options) ([]Result, error) {
	fns := make([]policyFunc, len(policies))
	for i, name := range policies {
		fn, ok := registry[name]
		if !ok {
			return nil, fmt.Errorf("hitratio: unknown policy %q (known: %v)", name, Policies())
		}
		fns[i] = fn
	}
	w := newWorkload(keys)
	w.yield = opts.Yield
	var out []Result
	for _, capacity := range capacities {
		if capacity < 1 {
			return nil, fmt.Errorf("hitratio: capacity %d is not positive", capacity)
		}
		for i, fn := range fns {
			randomized, n := !deterministic[policies[i]], 1
			if randomized {
				n = runsFor(opts, int64(len(keys)))
			}
			var runs []int64
			for len(runs) < n || (randomized && opts.unsettled(runs, int64(len(keys)))) {
				hits, err := fn(w, capacity)
				if err != nil {
					return nil, fmt.Errorf("hitratio: %s on %s at %d: %w", policies[i], trace, capacity, err)
				}
				runs = append(runs, hits)
			}
			out = append(out, meanResult(trace, capacity, policies[i], int64(len(keys)), runs))
		}
	}
	return out, nil
}

// runsFor is how many times opts replays a randomized policy over a trace
// of requests.
func runsFor(opts Options, requests int64) int {
	n := max(opts.Runs, 1)
	if requests > 0 && opts.MinRequests > int64(n)*requests {
		n = int((opts.MinRequests + requests - 1) / requests)
	}
	return n
}

// unsettled reports whether the mean of runs, the hits of each replay so
// far of requests, is still too uncertain to stop at (see
// Options.MaxRelErr).
func (opts Options) unsettled(runs []int64, requests int64) bool {
	if opts.MaxRelErr <= 0 || (opts.MaxRequests > 0 && int64(len(runs))*requests >= opts.MaxRequests) {
		return false
	}
	if len(runs) < 3 {
		return true
	}
	mean, stderr := meanStdErr(runs)
	return mean > 0 && stderr > opts.MaxRelErr*mean
}

// meanStdErr returns the mean of runs, at least one, and its standard
// error (0 for one).
func meanStdErr(runs []int64) (mean, stderr float64) {
	n := float64(len(runs))
	for _, h := range runs {
		mean += float64(h)
	}
	mean /= n
	if n < 2 {
		return mean, 0
	}
	var sq float64
	for _, h := range runs {
		sq += (float64(h) - mean) * (float64(h) - mean)
	}
	return mean, math.Sqrt(sq / (n - 1) / n)
}

// meanResult is the Result of replays of requests that hit runs[i] times.
func meanResult(trace string, capacity int, policy string, requests int64, runs []int64) Result {
	mean, stderr := meanStdErr(runs)
	r := Result{Trace: trace, Capacity: capacity, Policy: policy, Requests: requests,
		Hits: int64(math.Round(mean)), Runs: len(runs)}
	if requests > 0 {
		r.Ratio, r.StdErr = mean/float64(requests), stderr/float64(requests)
	}
	return r
}

// deterministic names the policies one run of which says all.
var deterministic = map[string]bool{"lru": true, "belady": true}

// policyFunc replays w through a cache of capacity entries and returns the
// number of hits.
type policyFunc func(w *workload, capacity int) (int64, error)

// registry holds every policy by name; diagnose.go adds its own.
var registry = map[string]policyFunc{
	"lru":          replayLRU,
	"belady":       replayBelady,
	"ristretto":    replayRistretto,
	"otter":        replayOtter,
	"otter-sized":  replayOtterSized,
	"strata":       replayStrata,
	"strata-otter": replayStrataOtter,
}

// order is how Policies and the reports list the policies; diagnostics
// (see diagnose.go) come after.
var order = []string{"lru", "belady", "ristretto", "otter", "otter-sized", "strata", "strata-otter"}

// Policies returns the registered policies' names: the main ones in report
// order, then the diagnostics alphabetically.
func Policies() []string {
	var names, rest []string
	for _, n := range order {
		if _, ok := registry[n]; ok {
			names = append(names, n)
		}
	}
	for n := range registry {
		if !slices.Contains(order, n) {
			rest = append(rest, n)
		}
	}
	sort.Strings(rest)
	return append(names, rest...)
}

// MainPolicies returns the registered policies of the report, without the
// diagnostics.
func MainPolicies() []string {
	var names []string
	for _, n := range order {
		if _, ok := registry[n]; ok {
			names = append(names, n)
		}
	}
	return names
}

// workload is a trace prepared once for every policy: keys renumbered
// densely (ids) for the simulators, and each key's fixed-width name for
// the real caches, so that every cache hashes the same bytes and every
// entry of Strata's L1 costs the same.
type workload struct {
	ids    []int32
	names  []string // by id: the key as 16 hex digits
	unique int
	yield  bool // Options.Yield
}

// pause is called before every request to a real cache: see Options.Yield.
func (w *workload) pause() {
	if w.yield {
		runtime.Gosched()
	}
}

func newWorkload(keys []uint64) *workload {
	w := &workload{ids: make([]int32, len(keys))}
	index := make(map[uint64]int32)
	for i, k := range keys {
		id, ok := index[k]
		if !ok {
			id = int32(len(w.names))
			index[k] = id
			w.names = append(w.names, fmt.Sprintf("%016x", k))
		}
		w.ids[i] = id
	}
	w.unique = len(w.names)
	return w
}

// WriteJSON writes results to w as one indented JSON array.
func WriteJSON(w io.Writer, results []Result) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(results)
}

// WriteJSONFile writes results to the file path (see WriteJSON).
func WriteJSONFile(path string, results []Result) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if err := WriteJSON(f, results); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// ReadJSON reads results written by WriteJSON.
func ReadJSON(r io.Reader) ([]Result, error) {
	var results []Result
	err := json.NewDecoder(r).Decode(&results)
	return results, err
}
