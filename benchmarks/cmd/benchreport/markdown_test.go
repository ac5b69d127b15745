package main

import (
	"errors"
	"os"
	"strings"
	"testing"
)

func TestReplaceRegion(t *testing.T) {
	doc := "# Title\n\nintro\n\n" + beginMarker + "\nold\nlines\n" + endMarker + "\n\n## After\n\nkept\n"
	got, err := replaceRegion(doc, "new\n")
	if err != nil {
		t.Fatal(err)
	}
	want := "# Title\n\nintro\n\n" + beginMarker + "\nnew\n" + endMarker + "\n\n## After\n\nkept\n"
	if got != want {
		t.Errorf("got\n%s\nwant\n%s", got, want)
	}
	again, err := replaceRegion(got, "new\n")
	if err != nil || again != got {
		t.Errorf("replacing again changed the document: %v\n%s", err, again)
	}
}

func TestReplaceRegionMarkerErrors(t *testing.T) {
	for name, doc := range map[string]string{
		"none":     "# Title\n",
		"no end":   beginMarker + "\n",
		"no begin": endMarker + "\n",
		"reversed": endMarker + "\n" + beginMarker + "\n",
		"twice":    beginMarker + endMarker + beginMarker + endMarker,
	} {
		t.Run(name, func(t *testing.T) {
			if _, err := replaceRegion(doc, "x\n"); !errors.Is(err, ErrMarkers) {
				t.Errorf("err = %v, want ErrMarkers", err)
			}
		})
	}
}

// sampleReport builds the report of the testdata inputs.
func sampleReport(t *testing.T) *report {
	t.Helper()
	f, err := os.Open("testdata/hitratio.json")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	traces, err := parseHitRatios(f)
	if err != nil {
		t.Fatal(err)
	}
	opts := options{
		baselines:    []string{"strata", "strata-both"},
		headline:     "BenchmarkLocalHit",
		level:        3,
		date:         "2026-01-02",
		machine:      "test machine",
		capacityUnit: "entries",
	}
	return newReport(opts, loadSample(t), traces)
}

func TestMarkdownTables(t *testing.T) {
	md := sampleReport(t).markdown("docs/bench")
	for _, want := range []string{
		"| Date | 2026-01-02 |",
		"| Machine | test machine |",
		"| CPU | AMD EPYC 7B13 |",
		"| OS/arch | linux/amd64 |",
		"| GOMAXPROCS | 2 |",
		"| Runs | 3 per benchmark (-count 3): medians shown |",
		// The headline: strata against each peer, per LocalHit config.
		"| `strata` is … than | uniform g=1 (27.9 ns/op) |",
		"| ristretto | 1.63× faster |",
		"### LocalHit uniform g=1\n",
		"| contender | ns/op | B/op | allocs/op | `strata` is … (ns/op) |",
		"| **strata** | 27.9 | 0 | 0 | baseline |",
		"| ristretto | 45.4 | 0 | 0 | 1.63× faster |",
		"| go-redis-cache | 1,459 | 352 | 7 | 52.3× faster |",
		"![LocalHit uniform g=1: time per operation](docs/bench/localhit-uniform-g-1-latency.svg)",
		"| contender | ns/op | B/op | allocs/op | stale-reads/op | `strata` is … (ns/op) |",
		"| go-redis-cache | 3,437 | 612 | 11 | 0.0012 | 1.61× faster |",
		"| go-redis | 4,183,767 | 48,000 | 620 | 16 | 3.41× faster |",
		// Propagation: percentiles first, the histogram folded, the ratio
		// against strata-both on p50, "never" for a peer without it.
		"| contender | ns/op | B/op | allocs/op | p50-us | p99-us | max-us | distribution | `strata-both` is … (p50-us) |",
		"| **strata-both** | 2,207,081 | 2,100 | 31 | 827 | 1,471 | 4,324 | ≤500us 31%, ≤5ms 97% | baseline |",
		"| go-redis-cache | 2,296,208 | 1,900 | 28 | never | never | never | — | peer never propagates |",
		// Scaling has no strata row: no ratio column.
		"| contender | ns/op | B/op | allocs/op | p50-us | p99-us | cpu-us/inval |\n",
		"![Scaling: delay, p50 and p99 by replicas](docs/bench/scaling-latency.svg)",
		"![Scaling: CPU time per invalidation (cpu-us/inval) by replicas](docs/bench/scaling-cpu-us-inval.svg)",
		"### Hit ratio: arc-oltp\n",
		"| capacity | strata | strata-otter | ristretto | otter | lru | belady | strata / ristretto | strata-otter / otter |",
		"| 250 | 19.29 | 20.28 | 20.24 | 20.32 | 17.37 | 27.27 | **0.953** ⚠ | 0.998 |",
		"| 1,000 | 31.04 | 31.17 | 31.11 | 31.23 | 26.70 | 41.91 | 0.998 | 0.998 |",
		"![Hit ratio: arc-oltp](docs/bench/hitratio-arc-oltp.svg)",
		"Package `github.com/strata-cache/strata/benchmarks`.",
	} {
		if !strings.Contains(md, want) {
			t.Errorf("the markdown lacks %q", want)
		}
	}
	if n := strings.Count(md, "Package `github.com/strata-cache/strata/benchmarks`."); n != 1 {
		t.Errorf("the package is named %d times, want once (where it starts)", n)
	}
}

func TestMarkdownWithoutHitRatiosOrBaseline(t *testing.T) {
	in := `BenchmarkScaling/replicas=3-2   10   100 ns/op   800 p50-us   1500 p99-us
BenchmarkScaling/replicas=10-2  10   100 ns/op   900 p50-us   2100 p99-us
`
	run, err := parseBench(strings.NewReader(in))
	if err != nil {
		t.Fatal(err)
	}
	rep := newReport(options{baselines: []string{"strata"}, headline: "BenchmarkLocalHit", level: 2}, run, nil)
	md := rep.markdown(".")
	for _, unwanted := range []string{"Headline", "Hit ratio", "is …", "Runs", "Packages"} {
		if strings.Contains(md, unwanted) {
			t.Errorf("the markdown has %q:\n%s", unwanted, md)
		}
	}
	if !strings.Contains(md, "## Scaling\n") || !strings.Contains(md, "](scaling-latency.svg)") {
		t.Errorf("no Scaling section at level 2 with its chart:\n%s", md)
	}
}

// TestTraceTableJudgesOtterAsSized checks that strata-otter is shown
// against otter as Strata sizes it and against otter as otter sizes
// itself, each flagged on its own.
func TestTraceTableJudgesOtterAsSized(t *testing.T) {
	traces, err := parseHitRatios(strings.NewReader(`[
		{"trace":"p3","capacity":100,"policy":"otter","ratio":0.40},
		{"trace":"p3","capacity":100,"policy":"otter-sized","ratio":0.385},
		{"trace":"p3","capacity":100,"policy":"strata-otter","ratio":0.38}]`))
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	traceTable(&b, traces[0], "entries")
	for _, want := range []string{
		"| capacity | strata-otter | otter | otter-sized | strata-otter / otter-sized | strata-otter / otter |",
		"| 100 | 38.00 | 40.00 | 38.50 | 0.987 | **0.950** ⚠ |",
	} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("the table lacks %q:\n%s", want, b.String())
		}
	}
}
