package main

import (
	"bytes"
	"encoding/xml"
	"fmt"
	"hash/fnv"
	"math"
	"strconv"
)

// chartWidth is every chart's width in pixels, so the committed plots line
// up in the rendered Markdown.
const chartWidth = 720

// svgWriter writes SVG elements with coordinates rounded to a tenth of a
// pixel, so the same input gives byte-identical files.
type svgWriter struct{ buf bytes.Buffer }

func newSVG(width, height int, title string) *svgWriter {
	s := &svgWriter{}
	s.buf.WriteString(`<?xml version="1.0" encoding="UTF-8"?>` + "\n")
	fmt.Fprintf(&s.buf, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %d %d" font-family="Helvetica, Arial, sans-serif" font-size="12">`+"\n",
		width, height, width, height)
	s.buf.WriteString("<title>" + esc(title) + "</title>\n")
	s.rect(0, 0, float64(width), float64(height), "#ffffff", "")
	return s
}

func (s *svgWriter) bytes() []byte {
	s.buf.WriteString("</svg>\n")
	return s.buf.Bytes()
}

func (s *svgWriter) rect(x, y, w, h float64, fill, tooltip string) {
	fmt.Fprintf(&s.buf, `<rect x="%s" y="%s" width="%s" height="%s" fill="%s"`, num(x), num(y), num(w), num(h), fill)
	if tooltip == "" {
		s.buf.WriteString("/>\n")
		return
	}
	s.buf.WriteString("><title>" + esc(tooltip) + "</title></rect>\n")
}

func (s *svgWriter) line(x1, y1, x2, y2 float64, stroke string, width float64, dash string) {
	fmt.Fprintf(&s.buf, `<line x1="%s" y1="%s" x2="%s" y2="%s" stroke="%s" stroke-width="%s"`,
		num(x1), num(y1), num(x2), num(y2), stroke, num(width))
	if dash != "" {
		fmt.Fprintf(&s.buf, ` stroke-dasharray="%s"`, dash)
	}
	s.buf.WriteString("/>\n")
}

func (s *svgWriter) polyline(xs, ys []float64, stroke, dash string) {
	s.buf.WriteString(`<polyline fill="none" stroke="` + stroke + `" stroke-width="2"`)
	if dash != "" {
		s.buf.WriteString(` stroke-dasharray="` + dash + `"`)
	}
	s.buf.WriteString(` points="`)
	for i := range xs {
		if i > 0 {
			s.buf.WriteByte(' ')
		}
		s.buf.WriteString(num(xs[i]) + "," + num(ys[i]))
	}
	s.buf.WriteString(`"/>` + "\n")
}

func (s *svgWriter) circle(x, y, r float64, fill, tooltip string) {
	fmt.Fprintf(&s.buf, `<circle cx="%s" cy="%s" r="%s" fill="%s"><title>%s</title></circle>`+"\n",
		num(x), num(y), num(r), fill, esc(tooltip))
}

// textStyle is a text element's optional attributes.
type textStyle struct {
	anchor string // start (default), middle, end
	size   int    // 0: the document's 12
	bold   bool
	italic bool
	fill   string // "": #222222
	rotate bool   // -90°, about (x, y): a vertical axis label
}

func (s *svgWriter) text(x, y float64, st textStyle, str string) {
	fill := st.fill
	if fill == "" {
		fill = "#222222"
	}
	fmt.Fprintf(&s.buf, `<text x="%s" y="%s" fill="%s"`, num(x), num(y), fill)
	if st.anchor != "" && st.anchor != "start" {
		fmt.Fprintf(&s.buf, ` text-anchor="%s"`, st.anchor)
	}
	if st.size != 0 {
		fmt.Fprintf(&s.buf, ` font-size="%d"`, st.size)
	}
	if st.bold {
		s.buf.WriteString(` font-weight="bold"`)
	}
	if st.italic {
		s.buf.WriteString(` font-style="italic"`)
	}
	if st.rotate {
		fmt.Fprintf(&s.buf, ` transform="rotate(-90 %s %s)"`, num(x), num(y))
	}
	s.buf.WriteString(">" + esc(str) + "</text>\n")
}

// num prints a coordinate rounded to a tenth, without a negative zero.
func num(v float64) string {
	r := math.Round(v*10) / 10
	if r == 0 {
		r = 0
	}
	return strconv.FormatFloat(r, 'f', -1, 64)
}

func esc(s string) string {
	var b bytes.Buffer
	_ = xml.EscapeText(&b, []byte(s)) // a bytes.Buffer does not fail
	return b.String()
}

// textWidth estimates a string's width at 12 px in a sans-serif font.
func textWidth(s string) float64 { return 6.8 * float64(len([]rune(s))) }

// palette is for names without a colour of their own: distinguishable
// colours (Tableau 10), none of them Strata's blues.
var palette = []string{"#e15759", "#59a14f", "#f28e2b", "#b07aa1", "#9c755f", "#ff9da7", "#76b7b2", "#edc948", "#bab0ac"}

// knownColors keeps each contender's colour the same in every chart:
// Strata in blues, each peer in a hue of its own (a library's variants in
// shades of it).
var knownColors = map[string]string{
	"strata":           "#1f4e9c",
	"strata-both":      "#1f4e9c",
	"strata-otter":     "#6a9ad8",
	"strata-pubsub":    "#6a9ad8",
	"strata-gossip":    "#9ec0ea",
	"ristretto":        "#f28e2b",
	"otter":            "#59a14f",
	"otter-sized":      "#8cd17d",
	"go-redis-cache":   "#e15759",
	"go-redis":         "#ff9da7",
	"go-redis-csc":     "#9c755f",
	"rueidis":          "#d4a6c8",
	"rueidis-csc":      "#b07aa1",
	"rueidis-tracking": "#b07aa1",
	"lru":              "#8c8c8c",
	"belady":           "#222222",
}

// colorOf returns a name's colour: its own, else one picked by hashing the
// name (deterministic, whatever else the chart holds).
func colorOf(name string) string {
	if c, ok := knownColors[name]; ok {
		return c
	}
	h := fnv.New32a()
	h.Write([]byte(name))
	return palette[h.Sum32()%uint32(len(palette))]
}

// seriesColors tell the two series of a p50/p99 chart apart.
var seriesColors = []string{"#1f4e9c", "#f28e2b", "#59a14f", "#e15759"}

// axis maps a value range onto a pixel range, linearly or in log10.
type axis struct {
	lo, hi float64
	log    bool
	p0, p1 float64
}

func (a axis) pos(v float64) float64 {
	var t float64
	if a.log {
		t = (math.Log10(v) - math.Log10(a.lo)) / (math.Log10(a.hi) - math.Log10(a.lo))
	} else {
		t = (v - a.lo) / (a.hi - a.lo)
	}
	return a.p0 + t*(a.p1-a.p0)
}

// newAxis fits an axis around values: a log axis spans whole decades, a
// linear one starts at zero (fromZero) or at a round number under the
// minimum, in 1-2-5 steps.
func newAxis(values []float64, log, fromZero bool) axis {
	lo, hi := math.Inf(1), math.Inf(-1)
	for _, v := range values {
		if log && v <= 0 {
			continue
		}
		lo, hi = math.Min(lo, v), math.Max(hi, v)
	}
	if math.IsInf(lo, 1) {
		lo, hi = 1, 1
	}
	if log {
		lo = math.Pow(10, math.Floor(math.Log10(lo)))
		hi = math.Pow(10, math.Ceil(math.Log10(hi)))
		if hi <= lo {
			hi = lo * 10
		}
		return axis{lo: lo, hi: hi, log: true}
	}
	if fromZero {
		lo = math.Min(lo, 0)
	}
	if hi <= lo {
		hi = lo + 1
	}
	step := niceStep((hi - lo) / 5)
	return axis{lo: math.Floor(lo/step) * step, hi: math.Ceil(hi/step) * step}
}

// niceStep rounds a step up to 1, 2 or 5 times a power of ten.
func niceStep(x float64) float64 {
	p := math.Pow(10, math.Floor(math.Log10(x)))
	switch f := x / p; {
	case f <= 1:
		return p
	case f <= 2:
		return 2 * p
	case f <= 5:
		return 5 * p
	}
	return 10 * p
}

// ticks returns the axis's tick values: each decade of a log axis (and its
// 2s and 5s when it spans at most two), 1-2-5 steps of a linear one.
func (a axis) ticks() []float64 {
	var t []float64
	if a.log {
		decades := int(math.Round(math.Log10(a.hi / a.lo)))
		for d := 0; d <= decades; d++ {
			base := a.lo * math.Pow(10, float64(d))
			t = append(t, base)
			if decades <= 2 && d < decades {
				t = append(t, 2*base, 5*base)
			}
		}
		return t
	}
	step := niceStep((a.hi - a.lo) / 5)
	for i := 0; ; i++ {
		v := a.lo + float64(i)*step
		if v > a.hi+step/2 {
			return t
		}
		t = append(t, roundTo(v, step))
	}
}

// roundTo removes the float noise of lo + i*step.
func roundTo(v, step float64) float64 {
	p := math.Pow(10, math.Floor(math.Log10(step))-3)
	return math.Round(v/p) * p
}
