package main

import (
	"encoding/json"
	"fmt"
	"io"
	"slices"

	"github.com/strata-cache/strata/benchmarks/hitratio"
)

// traceResult is one trace's hit ratios, by capacity and policy.
type traceResult struct {
	Trace      string
	Capacities []int    // ascending
	Policies   []string // policyOrder first, then the rest sorted
	ratios     map[int]map[string][]float64
}

// ratio returns the median ratio of a policy at a capacity.
func (t *traceResult) ratio(capacity int, policy string) (float64, bool) {
	s := t.ratios[capacity][policy]
	if len(s) == 0 {
		return 0, false
	}
	return median(s), true
}

// policyOrder is the column order of the known policies.
var policyOrder = []string{"strata", "strata-otter", "ristretto", "otter", "otter-sized", "lru", "belady"}

// parseHitRatios reads the JSON array of hit-ratio results, grouped by
// trace in order of first appearance.
func parseHitRatios(r io.Reader) ([]*traceResult, error) {
	var entries []hitratio.Result
	if err := json.NewDecoder(r).Decode(&entries); err != nil {
		return nil, fmt.Errorf("decoding hit ratios: %w", err)
	}
	var traces []*traceResult
	byName := map[string]*traceResult{}
	for i, e := range entries {
		if e.Trace == "" || e.Policy == "" {
			return nil, fmt.Errorf("hit ratio entry %d: trace and policy are required", i)
		}
		ratio := e.Ratio
		if ratio == 0 && e.Requests > 0 {
			ratio = float64(e.Hits) / float64(e.Requests)
		}
		t := byName[e.Trace]
		if t == nil {
			t = &traceResult{Trace: e.Trace, ratios: map[int]map[string][]float64{}}
			byName[e.Trace] = t
			traces = append(traces, t)
		}
		if t.ratios[e.Capacity] == nil {
			t.ratios[e.Capacity] = map[string][]float64{}
			t.Capacities = append(t.Capacities, e.Capacity)
		}
		if !slices.Contains(t.Policies, e.Policy) {
			t.Policies = append(t.Policies, e.Policy)
		}
		t.ratios[e.Capacity][e.Policy] = append(t.ratios[e.Capacity][e.Policy], ratio)
	}
	for _, t := range traces {
		slices.Sort(t.Capacities)
		slices.SortFunc(t.Policies, comparePolicies)
	}
	return traces, nil
}

// comparePolicies orders the known policies first, in policyOrder.
func comparePolicies(a, b string) int {
	ia, ib := slices.Index(policyOrder, a), slices.Index(policyOrder, b)
	switch {
	case ia >= 0 && ib >= 0:
		return ia - ib
	case ia >= 0:
		return -1
	case ib >= 0:
		return 1
	}
	if a < b {
		return -1
	}
	if a > b {
		return 1
	}
	return 0
}

// ratioPair is a "this policy against that one" column of the hit-ratio
// tables: Strata's policy should not lose to the cache it wraps.
type ratioPair struct{ Num, Den string }

// ratioPairs are Strata's engines against each raw engine: strata-otter
// against otter as Strata sizes it (otter-sized, the judged pair) and
// against otter as otter sizes itself, so that what otter's sizing does
// shows apart from what Strata's layer does.
var ratioPairs = []ratioPair{{"strata", "ristretto"}, {"strata-otter", "otter-sized"}, {"strata-otter", "otter"}}

// ratioFlag is the ratio under which a pair is flagged.
const ratioFlag = 0.98
