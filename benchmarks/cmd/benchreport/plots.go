package main

import (
	"math"
	"path"
	"slices"
	"strings"
)

// plot is one SVG file of the report.
type plot struct {
	File string // name in the plots directory
	Alt  string // the Markdown image's text: the chart's title
	SVG  []byte
}

// chart is a plot before it has its file name.
type chart struct {
	suffix, title string
	svg           []byte
}

// latencyUnits are the units of a propagation-style group's bars.
var latencyUnits = []string{"p50-us", "p99-us"}

// groupCharts picks a group's charts from the metrics it has: delay
// percentiles (against a swept parameter, or per contender), loads per
// key, else the time per op, per contender (log scale) or against the
// parameter. A group with none of those has no chart.
func groupCharts(g *group) []chart {
	param, xs, isSweep := g.sweep()
	switch {
	case g.has("p50-us") || g.has("p99-us"):
		if isSweep {
			return sweepCharts(g, param, xs)
		}
		return []chart{percentileBars(g)}
	case g.has("loads/key"):
		return []chart{loadsBars(g)}
	case g.has("ns/op") && isSweep:
		return []chart{sweepChart(g, param, xs, "-latency", []string{"ns/op"})}
	case g.has("ns/op"):
		return []chart{timeBars(g)}
	}
	return nil
}

func timeBars(g *group) chart {
	c := &barChart{
		Title:     g.title() + ": time per operation",
		AxisLabel: "time per operation (ns/op, log scale)",
		Log:       true,
		Format:    formatDuration,
	}
	c.Rows = unitRows(g, "ns/op")
	return chart{"-latency", c.Title, c.render()}
}

func loadsBars(g *group) chart {
	c := &barChart{
		Title:     g.title() + ": loader calls per key",
		AxisLabel: "loads per key (loads/key; 1 is one load per key)",
		Format:    formatNumber,
		RefValue:  1,
		RefLabel:  "1 load per key",
	}
	c.Rows = unitRows(g, "loads/key")
	return chart{"-loads", c.Title, c.render()}
}

// unitRows is a bar per contender of g that reports unit, of its value.
func unitRows(g *group, unit string) []barRow {
	var rows []barRow
	for _, r := range g.Rows {
		if v, ok := r.value(unit); ok {
			rows = append(rows, barRow{Label: r.Contender, Values: []float64{v}})
		}
	}
	return rows
}

// percentileBars draws p50 and p99 per contender, in nanoseconds so the
// ticks read in µs or ms; a contender that never propagates says so.
func percentileBars(g *group) chart {
	c := &barChart{Title: g.title() + ": delay, p50 and p99", Format: formatDuration}
	var units []string
	for _, u := range latencyUnits {
		if g.has(u) {
			units = append(units, u)
			c.Series = append(c.Series, seriesName(u))
		}
	}
	var all []float64
	for _, r := range g.Rows {
		br := barRow{Label: r.Contender}
		if r.never() {
			br.Note = "never"
			c.Rows = append(c.Rows, br)
			continue
		}
		for _, u := range units {
			v, ok := r.value(u)
			if !ok {
				br.Values = append(br.Values, math.NaN())
				continue
			}
			br.Values = append(br.Values, v*1e3)
			all = append(all, v*1e3)
		}
		c.Rows = append(c.Rows, br)
	}
	c.Log = spread(all) > 20
	c.AxisLabel = "delay (" + strings.Join(units, ", ")
	if c.Log {
		c.AxisLabel += ", log scale"
	}
	c.AxisLabel += ")"
	return chart{"-latency", c.Title, c.render()}
}

// sweepCharts draws the percentiles against the swept parameter, then each
// other metric of the group (cpu-us/inval) on a chart of its own.
func sweepCharts(g *group, param string, xs []float64) []chart {
	var units []string
	for _, u := range latencyUnits {
		if g.has(u) {
			units = append(units, u)
		}
	}
	charts := []chart{sweepChart(g, param, xs, "-latency", units)}
	for _, u := range g.units() {
		if slices.Contains(latencyUnits, u) || !plottable(u) {
			continue
		}
		charts = append(charts, sweepChart(g, param, xs, "-"+slug(u), []string{u}))
	}
	return charts
}

// plottable leaves out the standard columns and the histogram's bins.
func plottable(unit string) bool {
	switch unit {
	case "ns/op", "B/op", "allocs/op", "max-us", "never":
		return false
	}
	return !histogramUnit.MatchString(unit)
}

// sweepChart draws units against the parameter's values, one line each.
func sweepChart(g *group, param string, xs []float64, suffix string, units []string) chart {
	scale, isTime := nsPer(units[0])
	c := &lineChart{
		XLabel:    param,
		XLog:      spread(xs) >= 8,
		XFormat:   formatNumber,
		YFormat:   formatNumber,
		DataTicks: true,
	}
	if c.XLog {
		c.XLabel += " (log scale)"
	}
	if !isTime {
		scale = 1
	}
	var all []float64
	for i, u := range units {
		l := lineSeries{Name: seriesName(u), Color: seriesColors[i%len(seriesColors)]}
		for j, r := range g.Rows {
			v, ok := r.value(u)
			if !ok {
				continue
			}
			l.X, l.Y = append(l.X, xs[j]), append(l.Y, v*scale)
			all = append(all, v*scale)
		}
		c.Lines = append(c.Lines, l)
	}
	c.YLog = spread(all) > 20
	c.YFromZero = !c.YLog
	what := strings.Join(units, ", ")
	switch {
	case slices.Equal(units, latencyUnits):
		what = "delay, p50 and p99"
	case len(units) == 1 && unitWords[units[0]] != "":
		what = unitWords[units[0]] + " (" + units[0] + ")"
	}
	c.YLabel = what
	if isTime {
		c.YFormat = formatDuration
	}
	if c.YLog {
		c.YLabel += " (log scale)"
	}
	c.Title = g.title() + ": " + what + " by " + param
	return chart{suffix, c.Title, c.render()}
}

// unitWords says what the known custom metrics measure.
var unitWords = map[string]string{
	"ns/op":        "time per operation",
	"cpu-us/inval": "CPU time per invalidation",
	"loads/key":    "loader calls per key",
}

// seriesName drops a percentile's unit: "p50-us" is drawn as "p50".
func seriesName(unit string) string {
	if slices.Contains(latencyUnits, unit) {
		return strings.TrimSuffix(unit, "-us")
	}
	return unit
}

// traceChart draws a trace's hit ratio against capacity, one line per
// policy; Bélády's optimum is dashed, LRU dotted.
func traceChart(t *traceResult, capacityUnit string) chart {
	xs := make([]float64, len(t.Capacities))
	for i, c := range t.Capacities {
		xs[i] = float64(c)
	}
	c := &lineChart{
		Title:     "Hit ratio: " + t.Trace,
		XLabel:    "capacity (" + capacityUnit,
		YLabel:    "hit ratio (%)",
		XLog:      spread(xs) >= 8,
		YFromZero: true,
		XFormat:   formatNumber,
		YFormat:   formatNumber,
		DataTicks: len(xs) <= 12,
	}
	if c.XLog {
		c.XLabel += ", log scale"
	}
	c.XLabel += ")"
	for _, p := range t.Policies {
		l := lineSeries{Name: p, Color: colorOf(p)}
		switch p {
		case "belady":
			l.Dash = "6 4"
		case "lru":
			l.Dash = "2 3"
		}
		for _, capacity := range t.Capacities {
			if v, ok := t.ratio(capacity, p); ok {
				l.X, l.Y = append(l.X, float64(capacity)), append(l.Y, 100*v)
			}
		}
		c.Lines = append(c.Lines, l)
	}
	return chart{"", c.Title, c.render()}
}

// spread is the ratio of the largest positive value to the smallest.
func spread(v []float64) float64 {
	lo, hi := math.Inf(1), 0.0
	for _, x := range v {
		if x > 0 {
			lo, hi = math.Min(lo, x), math.Max(hi, x)
		}
	}
	if hi == 0 {
		return 1
	}
	return hi / lo
}

// slug makes a file name part: "BenchmarkLocalHit/uniform/g=1" gives
// "localhit-uniform-g-1".
func slug(s string) string {
	s = strings.ToLower(strings.TrimPrefix(s, "Benchmark"))
	var b strings.Builder
	dash := false
	for _, c := range s {
		if ('a' <= c && c <= 'z') || ('0' <= c && c <= '9') {
			b.WriteRune(c)
			dash = false
			continue
		}
		if !dash && b.Len() > 0 {
			b.WriteByte('-')
			dash = true
		}
	}
	return strings.TrimSuffix(b.String(), "-")
}

// groupSlug names a group's files; a package's top-level benchmarks are
// named after the package.
func groupSlug(g *group) string {
	if g.Path == "" {
		return slug(path.Base(g.Pkg)) + "-top"
	}
	return slug(g.Path)
}
