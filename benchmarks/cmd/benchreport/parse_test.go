package main

import (
	"os"
	"slices"
	"strings"
	"testing"
)

// loadSample parses testdata/bench.txt: two packages, -count 3, custom
// metrics, a b.Log block, PASS and ok lines.
func loadSample(t *testing.T) *benchRun {
	t.Helper()
	f, err := os.Open("testdata/bench.txt")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	run, err := parseBench(f)
	if err != nil {
		t.Fatal(err)
	}
	return run
}

func findResult(t *testing.T, run *benchRun, pkg, name string) *result {
	t.Helper()
	for _, r := range run.Results {
		if r.Pkg == pkg && r.Name == name {
			return r
		}
	}
	t.Fatalf("no result %s %s", pkg, name)
	return nil
}

const benchPkg = "github.com/strata-cache/strata/benchmarks"

func TestParseBenchHeader(t *testing.T) {
	run := loadSample(t)
	h := run.Header
	if h.GOOS != "linux" || h.GOARCH != "amd64" {
		t.Errorf("goos/goarch = %q/%q", h.GOOS, h.GOARCH)
	}
	if !slices.Equal(h.CPUs, []string{"AMD EPYC 7B13"}) {
		t.Errorf("CPUs = %q", h.CPUs)
	}
	if want := []string{"github.com/strata-cache/strata", benchPkg}; !slices.Equal(h.Pkgs, want) {
		t.Errorf("Pkgs = %q, want %q", h.Pkgs, want)
	}
	if !slices.Equal(h.Procs, []int{2}) {
		t.Errorf("Procs = %v, want [2]", h.Procs)
	}
	if len(run.Warnings) != 0 {
		t.Errorf("warnings: %q", run.Warnings)
	}
}

func TestParseBenchMedians(t *testing.T) {
	run := loadSample(t)
	tests := []struct {
		pkg, name, unit string
		want            float64
	}{
		{"github.com/strata-cache/strata", "BenchmarkL1Hit", "ns/op", 31.0},
		{benchPkg, "BenchmarkLocalHit/uniform/g=1/strata", "ns/op", 27.9},
		{benchPkg, "BenchmarkLocalHit/uniform/g=1/ristretto", "ns/op", 45.4},
		{benchPkg, "BenchmarkLocalHit/uniform/g=1/go-redis-cache", "B/op", 352},
		{benchPkg, "BenchmarkMixed/go-redis-cache", "stale-reads/op", 0.0012},
		{benchPkg, "BenchmarkStampede/go-redis", "loads/key", 16},
		{benchPkg, "BenchmarkPropagation/strata-both", "p50-us", 826.6},
		{benchPkg, "BenchmarkPropagation/strata-both", "p99-us", 1471.1},
		{benchPkg, "BenchmarkPropagation/go-redis-cache", "never", 1},
		{benchPkg, "BenchmarkScaling/replicas=10", "cpu-us/inval", 128.9},
	}
	for _, tt := range tests {
		t.Run(tt.name+"/"+tt.unit, func(t *testing.T) {
			r := findResult(t, run, tt.pkg, tt.name)
			if r.Runs != 3 {
				t.Errorf("Runs = %d, want 3", r.Runs)
			}
			got, ok := r.value(tt.unit)
			if !ok || got != tt.want {
				t.Errorf("median %s = %v (%v), want %v", tt.unit, got, ok, tt.want)
			}
		})
	}
	if r := findResult(t, run, benchPkg, "BenchmarkPropagation/go-redis-cache"); !r.never() {
		t.Error("go-redis-cache propagation: never() = false")
	}
	if r := findResult(t, run, benchPkg, "BenchmarkPropagation/strata-both"); r.never() {
		t.Error("strata-both propagation: never() = true")
	}
}

func TestParseBenchInterleavedRepetitions(t *testing.T) {
	in := `pkg: example.com/p
BenchmarkA/x-8   100   10 ns/op   3.0 loads/key
BenchmarkA/y-8   100   20 ns/op
BenchmarkA/x-8   100   30 ns/op   1.0 loads/key
BenchmarkA/y-8   100   40 ns/op
BenchmarkA/x-8   100   20 ns/op   2.0 loads/key
BenchmarkA/x-8   100   25 ns/op   2.0 loads/key
`
	run, err := parseBench(strings.NewReader(in))
	if err != nil {
		t.Fatal(err)
	}
	if len(run.Results) != 2 {
		t.Fatalf("%d results, want 2", len(run.Results))
	}
	x, y := run.Results[0], run.Results[1]
	if v, _ := x.value("ns/op"); v != 22.5 {
		t.Errorf("x ns/op median of 10,30,20,25 = %v, want 22.5", v)
	}
	if v, _ := x.value("loads/key"); v != 2 {
		t.Errorf("x loads/key = %v, want 2", v)
	}
	if v, _ := y.value("ns/op"); v != 30 {
		t.Errorf("y ns/op = %v, want 30", v)
	}
	if !slices.Equal(x.Units, []string{"ns/op", "loads/key"}) {
		t.Errorf("units = %q", x.Units)
	}
}

func TestParseBenchSeveralProcs(t *testing.T) {
	in := `BenchmarkA/strata     100   10 ns/op
BenchmarkA/strata-2   100   6 ns/op
BenchmarkA/other-2    100   12 ns/op
`
	run, err := parseBench(strings.NewReader(in))
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, r := range run.Results {
		names = append(names, r.Name)
	}
	want := []string{"BenchmarkA/procs=1/strata", "BenchmarkA/procs=2/strata", "BenchmarkA/procs=2/other"}
	if !slices.Equal(names, want) {
		t.Errorf("names = %q, want %q", names, want)
	}
}

func TestParseBenchSkipsAndWarns(t *testing.T) {
	in := `goos: linux
BenchmarkA
    a_test.go:10: a log line
BenchmarkA-2   100   10 ns/op   7
--- FAIL: BenchmarkB-2
BenchmarkLog says: not a result line
PASS
ok  	example.com/p	1.2s
`
	run, err := parseBench(strings.NewReader(in))
	if err != nil {
		t.Fatal(err)
	}
	if len(run.Results) != 0 {
		t.Errorf("results = %d, want 0", len(run.Results))
	}
	if len(run.Warnings) != 2 {
		t.Errorf("warnings = %q, want the odd pair and the FAIL", run.Warnings)
	}
}

func TestStripProcs(t *testing.T) {
	tests := []struct {
		in    string
		name  string
		procs int
	}{
		{"BenchmarkLocalHit/uniform/g=1/strata-2", "BenchmarkLocalHit/uniform/g=1/strata", 2},
		{"BenchmarkLocalHit/uniform/g=8/strata-otter-16", "BenchmarkLocalHit/uniform/g=8/strata-otter", 16},
		{"BenchmarkScaling/replicas=30-2", "BenchmarkScaling/replicas=30", 2},
		{"BenchmarkL1Hit", "BenchmarkL1Hit", 1}, // GOMAXPROCS=1: no suffix
	}
	for _, tt := range tests {
		name, procs := stripProcs(tt.in)
		if name != tt.name || procs != tt.procs {
			t.Errorf("stripProcs(%q) = %q, %d; want %q, %d", tt.in, name, procs, tt.name, tt.procs)
		}
	}
}

func TestMedian(t *testing.T) {
	tests := []struct {
		in   []float64
		want float64
	}{
		{[]float64{5}, 5},
		{[]float64{3, 1, 2}, 2},
		{[]float64{4, 1, 3, 2}, 2.5},
		{[]float64{10, 10, 1000}, 10},
	}
	for _, tt := range tests {
		if got := median(tt.in); got != tt.want {
			t.Errorf("median(%v) = %v, want %v", tt.in, got, tt.want)
		}
	}
}

func TestParseHitRatios(t *testing.T) {
	in := `[
{"trace":"t","capacity":500,"policy":"lru","requests":100,"hits":40,"ratio":0.4},
{"trace":"t","capacity":250,"policy":"zeta","requests":100,"hits":10},
{"trace":"t","capacity":250,"policy":"strata","requests":100,"hits":30,"ratio":0.3},
{"trace":"u","capacity":1,"policy":"belady","requests":10,"hits":1,"ratio":0.1}
]`
	traces, err := parseHitRatios(strings.NewReader(in))
	if err != nil {
		t.Fatal(err)
	}
	if len(traces) != 2 || traces[0].Trace != "t" || traces[1].Trace != "u" {
		t.Fatalf("traces = %v", traces)
	}
	tr := traces[0]
	if !slices.Equal(tr.Capacities, []int{250, 500}) {
		t.Errorf("capacities = %v", tr.Capacities)
	}
	if want := []string{"strata", "lru", "zeta"}; !slices.Equal(tr.Policies, want) {
		t.Errorf("policies = %q, want %q", tr.Policies, want)
	}
	if v, ok := tr.ratio(250, "zeta"); !ok || v != 0.1 {
		t.Errorf("ratio from hits/requests = %v, %v; want 0.1", v, ok)
	}
	if _, err := parseHitRatios(strings.NewReader(`[{"capacity":1}]`)); err == nil {
		t.Error("an entry without trace and policy: no error")
	}
}
