package main

import (
	"bufio"
	"fmt"
	"io"
	"math"
	"regexp"
	"slices"
	"strconv"
	"strings"
)

// header is what go test prints before a package's benchmarks.
type header struct {
	GOOS, GOARCH string
	// CPUs and Pkgs are the distinct cpu: and pkg: lines, in input order.
	CPUs, Pkgs []string
	// Procs are the distinct GOMAXPROCS suffixes seen, ascending.
	Procs []int
}

// result is one benchmark (one package and name) over all its result lines.
type result struct {
	Pkg  string
	Name string // the full name, GOMAXPROCS suffix stripped
	// Units lists the metrics' units in the order they first appeared.
	Units []string
	// samples holds every repetition's value per unit.
	samples map[string][]float64
	Runs    int // how many result lines went into it (-count)
}

// value returns the median of the unit's samples.
func (r *result) value(unit string) (float64, bool) {
	s, ok := r.samples[unit]
	if !ok || len(s) == 0 {
		return 0, false
	}
	return median(s), true
}

// never reports a contender that never propagated (metric never = 1).
func (r *result) never() bool {
	v, ok := r.value("never")
	return ok && v >= 0.5
}

// benchRun is a parsed go test -bench output.
type benchRun struct {
	Header   header
	Results  []*result // in order of first appearance
	Warnings []string
}

// procsSuffix matches the -N that go test appends when GOMAXPROCS is not 1.
var procsSuffix = regexp.MustCompile(`-([0-9]+)$`)

// stripProcs splits the GOMAXPROCS suffix off a benchmark name; a name
// without one ran with GOMAXPROCS=1.
func stripProcs(name string) (string, int) {
	m := procsSuffix.FindStringSubmatchIndex(name)
	if m == nil {
		return name, 1
	}
	n, err := strconv.Atoi(name[m[2]:m[3]])
	if err != nil {
		return name, 1
	}
	return name[:m[0]], n
}

// sample is one result line.
type sample struct {
	pkg, name string
	procs     int
	units     []string
	values    []float64
}

// parseBench reads go test -bench output: header lines, result lines with
// any number of `value unit` pairs, and anything else (PASS, ok, logs),
// which it skips. Repeated names (-count) are collected for their median.
func parseBench(r io.Reader) (*benchRun, error) {
	run := &benchRun{}
	var pkg string
	var samples []sample
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for n := 1; sc.Scan(); n++ {
		text := strings.TrimSpace(sc.Text())
		if k, v, ok := headerLine(text); ok {
			switch k {
			case "goos":
				run.Header.GOOS = v
			case "goarch":
				run.Header.GOARCH = v
			case "cpu":
				run.Header.CPUs = appendNew(run.Header.CPUs, v)
			case "pkg":
				pkg = v
				run.Header.Pkgs = appendNew(run.Header.Pkgs, v)
			}
			continue
		}
		if strings.HasPrefix(text, "--- FAIL") || strings.HasPrefix(text, "FAIL") {
			run.Warnings = append(run.Warnings, fmt.Sprintf("line %d: %s", n, text))
			continue
		}
		name, units, values, ok, err := resultLine(text)
		if err != nil {
			run.Warnings = append(run.Warnings, fmt.Sprintf("line %d: %v", n, err))
			continue
		}
		if ok {
			base, procs := stripProcs(name)
			samples = append(samples, sample{pkg, base, procs, units, values})
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("reading benchmark output: %w", err)
	}
	run.collect(samples)
	return run, nil
}

// collect gathers the samples into results, one per package and name, in
// order of first appearance.
func (run *benchRun) collect(samples []sample) {
	for _, s := range samples {
		if !slices.Contains(run.Header.Procs, s.procs) {
			run.Header.Procs = append(run.Header.Procs, s.procs)
		}
	}
	slices.Sort(run.Header.Procs)
	byKey := map[string]*result{}
	for _, s := range samples {
		name := s.name
		if len(run.Header.Procs) > 1 {
			// With -cpu 1,2 the same name ran at several GOMAXPROCS: keep
			// them apart, as a path element before the contender.
			name = insertBeforeLast(name, "procs="+strconv.Itoa(s.procs))
		}
		key := s.pkg + "\x00" + name
		res := byKey[key]
		if res == nil {
			res = &result{Pkg: s.pkg, Name: name, samples: map[string][]float64{}}
			byKey[key] = res
			run.Results = append(run.Results, res)
		}
		res.Runs++
		for i, u := range s.units {
			if _, seen := res.samples[u]; !seen {
				res.Units = append(res.Units, u)
			}
			res.samples[u] = append(res.samples[u], s.values[i])
		}
	}
}

// headerLine recognises the goos:, goarch:, pkg: and cpu: lines.
func headerLine(text string) (key, value string, ok bool) {
	k, v, found := strings.Cut(text, ":")
	if !found {
		return "", "", false
	}
	switch k {
	case "goos", "goarch", "pkg", "cpu":
		return k, strings.TrimSpace(v), true
	}
	return "", "", false
}

// resultLine parses `BenchmarkName-N  iterations  value unit [value unit]...`.
// ok is false for a line that is not a result (a bare name, a log line).
func resultLine(text string) (name string, units []string, values []float64, ok bool, err error) {
	f := strings.Fields(text)
	if len(f) < 2 || !strings.HasPrefix(f[0], "Benchmark") {
		return "", nil, nil, false, nil
	}
	if _, err := strconv.ParseInt(f[1], 10, 64); err != nil {
		return "", nil, nil, false, nil // a log line that starts with a name
	}
	pairs := f[2:]
	if len(pairs)%2 != 0 {
		return "", nil, nil, false, fmt.Errorf("%s: a value without a unit", f[0])
	}
	for i := 0; i < len(pairs); i += 2 {
		v, err := strconv.ParseFloat(pairs[i], 64)
		if err != nil || math.IsNaN(v) {
			return "", nil, nil, false, fmt.Errorf("%s: %q is not a number", f[0], pairs[i])
		}
		units = append(units, pairs[i+1])
		values = append(values, v)
	}
	return f[0], units, values, true, nil
}

// median returns the middle value, or the mean of the two middle ones.
func median(s []float64) float64 {
	c := slices.Clone(s)
	slices.Sort(c)
	n := len(c)
	if n%2 == 1 {
		return c[n/2]
	}
	return (c[n/2-1] + c[n/2]) / 2
}

func appendNew(s []string, v string) []string {
	if slices.Contains(s, v) {
		return s
	}
	return append(s, v)
}

// insertBeforeLast puts elem before a path's last element.
func insertBeforeLast(path, elem string) string {
	i := strings.LastIndexByte(path, '/')
	if i < 0 {
		return path + "/" + elem
	}
	return path[:i] + "/" + elem + path[i:]
}
