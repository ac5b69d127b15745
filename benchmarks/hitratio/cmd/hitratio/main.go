// Command hitratio replays the real traces through every policy at each
// trace's six capacities, prints a Markdown table of hit ratios and
// writes the results as JSON.
package main

import (
	"flag"
	"fmt"
	"log"
	"os"
	"strings"
	"time"

	"github.com/strata-cache/strata/benchmarks/hitratio"
)

func main() {
	out := flag.String("out", "results.json", "file to write the results to, as JSON")
	dir := flag.String("traces", "", "trace directory (default: $"+hitratio.TracesEnv+", else shared/traces above the working directory)")
	policies := flag.String("policies", strings.Join(hitratio.MainPolicies(), ","),
		"comma-separated policies, of: "+strings.Join(hitratio.Policies(), ","))
	traces := flag.String("trace", "", "comma-separated traces to replay (default: all)")
	limit := flag.Int("limit", 0, "requests replayed per trace (0: all)")
	runs := flag.Int("runs", hitratio.DefaultOptions.Runs, "replays of each randomized policy (every real cache), averaged")
	minRequests := flag.Int64("min-requests", 6_000_000, "replay each randomized policy on a short trace until it has replayed this many requests in all (more runs than -runs)")
	maxRelErr := flag.Float64("max-rel-err", 0, "replay each randomized policy at a capacity again while its mean's standard error is over this fraction of the mean (0: never)")
	maxRequests := flag.Int64("max-requests", 70_000_000, "bound the replays -max-rel-err adds: none once a policy has replayed this many requests at a capacity (0: no bound)")
	yield := flag.Bool("yield", hitratio.DefaultOptions.Yield, "yield before every request, so ristretto's read buffer is drained (see hitratio.Options.Yield)")
	flag.Parse()
	opts := hitratio.Options{Runs: *runs, MinRequests: *minRequests, MaxRelErr: *maxRelErr, MaxRequests: *maxRequests, Yield: *yield}
	if err := run(*out, *dir, strings.Split(*policies, ","), *traces, *limit, opts); err != nil {
		log.Fatal(err)
	}
}

func run(out, dir string, policies []string, traces string, limit int, opts hitratio.Options) error {
	if dir == "" {
		d, err := hitratio.Dir()
		if err != nil {
			return err
		}
		dir = d
	}
	selected, err := selectTraces(traces)
	if err != nil {
		return err
	}
	var all []hitratio.Result
	start := time.Now()
	for _, t := range selected {
		began := time.Now()
		keys, err := hitratio.Load(dir, t, limit)
		if err != nil {
			return err
		}
		results, err := hitratio.ReplayWith(t.Name, keys, policies, t.Capacities, opts)
		if err != nil {
			return err
		}
		all = append(all, results...)
		fmt.Fprintf(os.Stderr, "%s: %d requests, %d keys, %v\n", t.Name, len(keys), hitratio.Unique(keys), time.Since(began).Round(time.Millisecond))
	}
	fmt.Fprintf(os.Stderr, "total %v\n", time.Since(start).Round(time.Millisecond))
	if err := hitratio.WriteTable(os.Stdout, all); err != nil {
		return err
	}
	return hitratio.WriteJSONFile(out, all)
}

// selectTraces returns the traces named in the comma-separated list names,
// or all of them when it is empty.
func selectTraces(names string) ([]hitratio.Trace, error) {
	if names == "" {
		return hitratio.Traces, nil
	}
	var ts []hitratio.Trace
	for _, n := range strings.Split(names, ",") {
		t, ok := hitratio.Lookup(n)
		if !ok {
			return nil, fmt.Errorf("unknown trace %q", n)
		}
		ts = append(ts, t)
	}
	return ts, nil
}
