package main

import (
	"math"
	"slices"
)

// barChart is a horizontal bar chart: one row per contender, one bar per
// series in each row.
type barChart struct {
	Title     string
	AxisLabel string // with the unit, and "log scale" when Log
	Log       bool
	Format    func(float64) string // tick and value labels
	// Series names the bars of a row; with more than one there is a legend
	// and bars take the series' colour, else the contender's.
	Series []string
	Rows   []barRow
	// RefValue, when positive, draws a dashed line labelled RefLabel.
	RefValue float64
	RefLabel string
}

type barRow struct {
	Label  string
	Values []float64 // one per series; NaN: none
	Note   string    // written instead of the bars: "never"
}

const (
	titleY    = 24
	barHeight = 16
	barGap    = 10
)

func (c *barChart) render() []byte {
	n := max(len(c.Series), 1)
	labelWidth := 0.0
	var values []float64
	for _, r := range c.Rows {
		labelWidth = math.Max(labelWidth, textWidth(r.Label))
		for _, v := range r.Values {
			if !math.IsNaN(v) {
				values = append(values, v)
			}
		}
	}
	if c.RefValue > 0 {
		values = append(values, c.RefValue)
	}
	left, right := math.Max(90, labelWidth+20), float64(chartWidth-80)
	top := 48.0
	if n > 1 {
		top += 20
	}
	rowHeight := float64(n*barHeight + barGap)
	plotHeight := float64(len(c.Rows))*rowHeight + barGap
	height := int(top + plotHeight + 52)
	ax := newAxis(values, c.Log, true)
	ax.p0, ax.p1 = left, right

	s := newSVG(chartWidth, height, c.Title)
	s.text(chartWidth/2, titleY, textStyle{anchor: "middle", size: 15, bold: true}, c.Title)
	if n > 1 {
		legend(s, left, 48, c.Series)
	}
	bottom := top + plotHeight
	for _, t := range ax.ticks() {
		x := ax.pos(t)
		s.line(x, top, x, bottom, "#e3e3e3", 1, "")
		s.text(x, bottom+16, textStyle{anchor: "middle", size: 11}, c.Format(t))
	}
	s.line(left, bottom, right, bottom, "#555555", 1, "")
	s.line(left, top, left, bottom, "#555555", 1, "")
	for i, r := range c.Rows {
		c.drawRow(s, ax, r, top+barGap+float64(i)*rowHeight)
	}
	if c.RefValue > 0 {
		x := ax.pos(c.RefValue)
		s.line(x, top-4, x, bottom, "#333333", 1, "4 3")
		s.text(x+4, top-6, textStyle{size: 11, fill: "#333333"}, c.RefLabel)
	}
	s.text((left+right)/2, float64(height)-12, textStyle{anchor: "middle"}, c.AxisLabel)
	return s.bytes()
}

// drawRow writes a row's label and its bars, each with its value, from y0
// down.
func (c *barChart) drawRow(s *svgWriter, ax axis, r barRow, y0 float64) {
	n := max(len(c.Series), 1)
	mid := y0 + float64(n*barHeight)/2
	s.text(ax.p0-8, mid+4, textStyle{anchor: "end"}, r.Label)
	if r.Note != "" {
		s.text(ax.p0+6, mid+4, textStyle{italic: true, fill: "#666666"}, r.Note)
		return
	}
	for j, v := range r.Values {
		if math.IsNaN(v) {
			continue
		}
		y := y0 + float64(j*barHeight)
		color, tip := colorOf(r.Label), r.Label+": "+c.Format(v)
		if n > 1 {
			color = seriesColors[j%len(seriesColors)]
			tip = r.Label + " " + c.Series[j] + ": " + c.Format(v)
		}
		end := ax.p0
		if v > 0 || !c.Log {
			end = ax.pos(v)
			s.rect(ax.p0, y+1, end-ax.p0, barHeight-2, color, tip)
		}
		s.text(end+4, y+barHeight-4, textStyle{size: 11}, c.Format(v))
	}
}

// legend writes a row of colour swatches and names from (x, y).
func legend(s *svgWriter, x, y float64, names []string) {
	for i, name := range names {
		s.rect(x, y-10, 12, 12, seriesColors[i%len(seriesColors)], "")
		s.text(x+16, y, textStyle{}, name)
		x += 16 + textWidth(name) + 18
	}
}

// lineChart plots y against x, one line per series, with a legend on the
// right.
type lineChart struct {
	Title, XLabel, YLabel string
	XLog, YLog            bool
	YFromZero             bool
	XFormat, YFormat      func(float64) string
	// DataTicks puts the x ticks at the data's x values (capacities,
	// replica counts) rather than at round numbers.
	DataTicks bool
	Lines     []lineSeries
}

type lineSeries struct {
	Name, Color, Dash string
	X, Y              []float64
}

const lineChartHeight = 400

func (c *lineChart) render() []byte {
	left, right := 80.0, float64(chartWidth-160)
	top, bottom := 48.0, float64(lineChartHeight-58)
	var xs, ys []float64
	for _, l := range c.Lines {
		xs = append(xs, l.X...)
		ys = append(ys, l.Y...)
	}
	xa := newAxis(xs, c.XLog, false)
	if c.DataTicks {
		xa = tightAxis(xs, c.XLog)
	}
	xa.p0, xa.p1 = left, right
	ya := newAxis(ys, c.YLog, c.YFromZero)
	ya.p0, ya.p1 = bottom, top

	s := newSVG(chartWidth, lineChartHeight, c.Title)
	s.text(chartWidth/2, titleY, textStyle{anchor: "middle", size: 15, bold: true}, c.Title)
	for _, t := range ya.ticks() {
		y := ya.pos(t)
		s.line(left, y, right, y, "#e3e3e3", 1, "")
		s.text(left-6, y+4, textStyle{anchor: "end", size: 11}, c.YFormat(t))
	}
	xticks := xa.ticks()
	if c.DataTicks {
		xticks = distinct(xs)
	}
	lastLabel := math.Inf(-1)
	for _, t := range xticks {
		x := xa.pos(t)
		s.line(x, top, x, bottom, "#e3e3e3", 1, "")
		label := c.XFormat(t)
		if x-textWidth(label)/2 < lastLabel+6 {
			continue // would overlap the previous label
		}
		s.text(x, bottom+16, textStyle{anchor: "middle", size: 11}, label)
		lastLabel = x + textWidth(label)/2
	}
	s.line(left, bottom, right, bottom, "#555555", 1, "")
	s.line(left, top, left, bottom, "#555555", 1, "")
	for i := len(c.Lines) - 1; i >= 0; i-- {
		c.plotLine(s, xa, ya, c.Lines[i]) // the first (Strata) on top
	}
	for i, l := range c.Lines {
		y := top + 8 + float64(i)*20
		s.line(right+16, y, right+40, y, l.Color, 2, l.Dash)
		s.circle(right+28, y, 3, l.Color, l.Name)
		s.text(right+46, y+4, textStyle{}, l.Name)
	}
	s.text((left+right)/2, lineChartHeight-14, textStyle{anchor: "middle"}, c.XLabel)
	s.text(18, (top+bottom)/2, textStyle{anchor: "middle", rotate: true}, c.YLabel)
	return s.bytes()
}

// plotLine draws one series, in x order, leaving out what a log axis
// cannot show.
func (c *lineChart) plotLine(s *svgWriter, xa, ya axis, l lineSeries) {
	idx := make([]int, 0, len(l.X))
	for i := range l.X {
		if (c.XLog && l.X[i] <= 0) || (c.YLog && l.Y[i] <= 0) || math.IsNaN(l.Y[i]) {
			continue
		}
		idx = append(idx, i)
	}
	slices.SortStableFunc(idx, func(a, b int) int {
		switch {
		case l.X[a] < l.X[b]:
			return -1
		case l.X[a] > l.X[b]:
			return 1
		}
		return 0
	})
	px, py := make([]float64, len(idx)), make([]float64, len(idx))
	for k, i := range idx {
		px[k], py[k] = xa.pos(l.X[i]), ya.pos(l.Y[i])
	}
	if len(idx) > 1 {
		s.polyline(px, py, l.Color, l.Dash)
	}
	for k, i := range idx {
		s.circle(px[k], py[k], 3, l.Color, l.Name+" at "+c.XFormat(l.X[i])+": "+c.YFormat(l.Y[i]))
	}
}

// tightAxis spans the values with a margin, for ticks at the values
// themselves: round bounds would squeeze 250…2,000 into 100…10,000.
func tightAxis(values []float64, log bool) axis {
	lo, hi := slices.Min(values), slices.Max(values)
	if log {
		return axis{lo: lo / 1.15, hi: hi * 1.15, log: true}
	}
	pad := (hi - lo) * 0.06
	if pad == 0 {
		pad = math.Max(math.Abs(lo)*0.1, 1)
	}
	return axis{lo: lo - pad, hi: hi + pad}
}

// distinct returns the distinct values, ascending.
func distinct(v []float64) []float64 { return slices.Compact(sortedCopy(v)) }
