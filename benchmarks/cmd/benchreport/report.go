package main

import (
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
)

// report is everything the command writes, built once from the inputs.
type report struct {
	opts       options
	run        *benchRun
	groups     []*group
	traces     []*traceResult
	plots      map[*group][]plot
	tracePlots map[*traceResult][]plot
	all        []plot // every plot, in report order
}

func newReport(opts options, run *benchRun, traces []*traceResult) *report {
	rep := &report{
		opts:       opts,
		run:        run,
		groups:     groupResults(run.Results),
		traces:     traces,
		plots:      map[*group][]plot{},
		tracePlots: map[*traceResult][]plot{},
	}
	used := map[string]bool{}
	name := func(base string) string {
		file := base + ".svg"
		for i := 2; used[file]; i++ {
			file = fmt.Sprintf("%s-%d.svg", base, i)
		}
		used[file] = true
		return file
	}
	for _, g := range rep.groups {
		for _, c := range groupCharts(g) {
			p := plot{File: name(groupSlug(g) + c.suffix), Alt: c.title, SVG: c.svg}
			rep.plots[g] = append(rep.plots[g], p)
			rep.all = append(rep.all, p)
		}
	}
	for _, t := range traces {
		c := traceChart(t, opts.capacityUnit)
		p := plot{File: name("hitratio-" + slug(t.Trace)), Alt: c.title, SVG: c.svg}
		rep.tracePlots[t] = append(rep.tracePlots[t], p)
		rep.all = append(rep.all, p)
	}
	return rep
}

// headline is the baseline against each peer in one group.
type headline struct {
	group     *group
	unit      string
	base      row
	baseValue float64
}

// headlines returns the groups under the headline prefix that have a
// baseline to compare with.
func (rep *report) headlines() []headline {
	var hs []headline
	for _, g := range rep.groups {
		if !strings.HasPrefix(g.Path, rep.opts.headline) {
			continue
		}
		unit := g.ratioUnit()
		base, ok := g.baseline(rep.opts.baselines)
		if !ok || unit == "" || len(g.Rows) < 2 {
			continue
		}
		v, ok := base.value(unit)
		if !ok || v <= 0 || base.never() {
			continue
		}
		hs = append(hs, headline{g, unit, base, v})
	}
	return hs
}

// cell is the baseline's advantage over a peer, for the headline table.
func (h headline) cell(peer string) string {
	r, ok := h.group.row(peer)
	switch {
	case !ok:
		return "—"
	case r.never():
		return "never propagates"
	}
	v, ok := r.value(h.unit)
	if !ok {
		return "—"
	}
	return ratioCell(h.baseValue, v)
}

// printSummary writes the headline ratios and the flagged hit ratios.
func (rep *report) printSummary(w io.Writer) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	for _, h := range rep.headlines() {
		fmt.Fprintf(tw, "%s (%s): %s %s\n", h.group.title(), h.unit, h.base.Contender, formatNumber(h.baseValue))
		for _, r := range h.group.Rows {
			if r.Contender == h.base.Contender {
				continue
			}
			if r.never() {
				fmt.Fprintf(tw, "  vs %s\tnever\t\n", r.Contender)
				continue
			}
			if v, ok := r.value(h.unit); ok {
				fmt.Fprintf(tw, "  vs %s\t%s\t%s is %s\n", r.Contender, formatNumber(v), h.base.Contender, ratioCell(h.baseValue, v))
			}
		}
	}
	for _, t := range rep.traces {
		for _, c := range t.Capacities {
			for _, p := range ratioPairs {
				if r, ok := t.pairRatio(c, p); ok && r < ratioFlag {
					fmt.Fprintf(tw, "hit ratio %s at capacity %d: %s / %s = %.3f, below %g\n", t.Trace, c, p.Num, p.Den, r, ratioFlag)
				}
			}
		}
	}
	return tw.Flush()
}
