package main

import (
	"math"
	"path"
	"regexp"
	"slices"
	"strconv"
	"strings"
)

// group is the benchmarks that share a path but for its last element, the
// contender: BenchmarkLocalHit/uniform/g=1/{strata,ristretto,...}.
type group struct {
	Pkg  string
	Path string // "" for a package's benchmarks without sub-benchmarks
	Rows []row  // in order of first appearance
}

type row struct {
	Contender string
	*result
}

// groupResults groups results by package and path, in order of first
// appearance.
func groupResults(results []*result) []*group {
	var groups []*group
	byKey := map[string]*group{}
	for _, r := range results {
		path, contender := "", strings.TrimPrefix(r.Name, "Benchmark")
		if i := strings.LastIndexByte(r.Name, '/'); i >= 0 {
			path, contender = r.Name[:i], r.Name[i+1:]
		}
		key := r.Pkg + "\x00" + path
		g := byKey[key]
		if g == nil {
			g = &group{Pkg: r.Pkg, Path: path}
			byKey[key] = g
			groups = append(groups, g)
		}
		g.Rows = append(g.Rows, row{contender, r})
	}
	return groups
}

// title is the group's path in words: "LocalHit uniform g=1".
func (g *group) title() string {
	if g.Path == "" {
		return "Top-level benchmarks of " + path.Base(g.Pkg)
	}
	return strings.ReplaceAll(strings.TrimPrefix(g.Path, "Benchmark"), "/", " ")
}

// has reports whether any row has the unit.
func (g *group) has(unit string) bool {
	for _, r := range g.Rows {
		if _, ok := r.samples[unit]; ok {
			return true
		}
	}
	return false
}

// units returns the units of all rows, in order of first appearance.
func (g *group) units() []string {
	var u []string
	for _, r := range g.Rows {
		for _, x := range r.Units {
			u = appendNew(u, x)
		}
	}
	return u
}

// row returns the row of a contender.
func (g *group) row(contender string) (row, bool) {
	for _, r := range g.Rows {
		if r.Contender == contender {
			return r, true
		}
	}
	return row{}, false
}

// baseline returns the first of the candidates that is a row of the group.
func (g *group) baseline(candidates []string) (row, bool) {
	for _, c := range candidates {
		if r, ok := g.row(c); ok {
			return r, true
		}
	}
	return row{}, false
}

// ratioUnit is the metric the "Strata is N× faster" column compares: the
// median propagation delay where there is one, else the time per op.
func (g *group) ratioUnit() string {
	for _, u := range []string{"p50-us", "ns/op"} {
		if g.has(u) {
			return u
		}
	}
	return ""
}

// sweepParam matches a contender that is a parameter value: replicas=10.
var sweepParam = regexp.MustCompile(`^([A-Za-z_][A-Za-z0-9_-]*)=([0-9.]+)$`)

// sweep reports a group whose contenders are values of one numeric
// parameter (BenchmarkScaling/replicas=N), returning its name and values.
func (g *group) sweep() (string, []float64, bool) {
	if len(g.Rows) < 2 {
		return "", nil, false
	}
	var name string
	var xs []float64
	for _, r := range g.Rows {
		m := sweepParam.FindStringSubmatch(r.Contender)
		if m == nil || (name != "" && m[1] != name) {
			return "", nil, false
		}
		x, err := strconv.ParseFloat(m[2], 64)
		if err != nil {
			return "", nil, false
		}
		name = m[1]
		xs = append(xs, x)
	}
	return name, xs, true
}

// histogramUnit matches the propagation histogram's bins: le100us-frac.
var histogramUnit = regexp.MustCompile(`^le([0-9.]+[a-zµ]+)-frac$`)

// durationUnit matches a metric measured in time, capturing the time unit:
// ns/op, p50-us, cpu-us/inval.
var durationUnit = regexp.MustCompile(`(?:^|-)(ns|us|µs|ms|s)(?:$|/)`)

// nsPer returns how many nanoseconds one of the unit's values is, or false
// for a unit that is not a time.
func nsPer(unit string) (float64, bool) {
	m := durationUnit.FindStringSubmatch(unit)
	if m == nil {
		return 0, false
	}
	switch m[1] {
	case "ns":
		return 1, true
	case "us", "µs":
		return 1e3, true
	case "ms":
		return 1e6, true
	}
	return 1e9, true
}

// ratioCell words the baseline's advantage: a peer at 3 times the
// baseline's time shows "3.0× faster" (times are lower-is-better).
func ratioCell(baseline, peer float64) string {
	if baseline <= 0 || peer <= 0 {
		return "—"
	}
	r := peer / baseline
	switch {
	case math.Abs(r-1) < 0.005:
		return "same"
	case r > 1:
		return formatRatio(r) + " faster"
	}
	return formatRatio(1/r) + " slower"
}

// formatRatio prints a ratio with two decimals below 10, one below 100.
func formatRatio(r float64) string {
	switch {
	case r < 10:
		return strconv.FormatFloat(r, 'f', 2, 64) + "×"
	case r < 100:
		return strconv.FormatFloat(r, 'f', 1, 64) + "×"
	}
	return strconv.FormatFloat(r, 'f', 0, 64) + "×"
}

// formatNumber prints a metric's value: three significant digits, whole
// numbers from 1,000 on with thousands separators.
func formatNumber(v float64) string {
	if v == 0 {
		return "0"
	}
	a := math.Abs(v)
	if a >= 1000 {
		s := strconv.FormatFloat(math.Round(a), 'f', 0, 64)
		var b strings.Builder
		if v < 0 {
			b.WriteByte('-')
		}
		for i, c := range s {
			if i > 0 && (len(s)-i)%3 == 0 {
				b.WriteByte(',')
			}
			b.WriteRune(c)
		}
		return b.String()
	}
	if a < 1e-6 {
		return strconv.FormatFloat(v, 'e', 2, 64)
	}
	// 'g' with 3 digits, without an exponent: 95.3, 0.00123, 1.5.
	digits := 2 - int(math.Floor(math.Log10(a)))
	s := strconv.FormatFloat(v, 'f', max(digits, 0), 64)
	if strings.Contains(s, ".") {
		s = strings.TrimRight(strings.TrimRight(s, "0"), ".")
	}
	return s
}

// formatDuration prints nanoseconds in the largest unit that keeps the
// number at least 1: 95.3 ns, 1.25 µs, 12 ms.
func formatDuration(ns float64) string {
	if ns == 0 {
		return "0"
	}
	units := []struct {
		scale float64
		name  string
	}{{1e9, "s"}, {1e6, "ms"}, {1e3, "µs"}}
	for _, u := range units {
		if math.Abs(ns) >= u.scale {
			return formatNumber(ns/u.scale) + " " + u.name
		}
	}
	return formatNumber(ns) + " ns"
}

// sortedCopy returns the values sorted ascending.
func sortedCopy(v []float64) []float64 {
	c := slices.Clone(v)
	slices.Sort(c)
	return c
}
