package main

import (
	"bytes"
	"encoding/xml"
	"errors"
	"io"
	"slices"
	"strings"
	"testing"
)

// checkSVG decodes the whole document and checks its root element.
func checkSVG(t *testing.T, name string, doc []byte) {
	t.Helper()
	d := xml.NewDecoder(bytes.NewReader(doc))
	depth, roots := 0, 0
	for {
		tok, err := d.Token()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("%s: not well-formed XML: %v", name, err)
		}
		switch e := tok.(type) {
		case xml.StartElement:
			if depth == 0 {
				roots++
				if e.Name.Local != "svg" || e.Name.Space != "http://www.w3.org/2000/svg" {
					t.Errorf("%s: root element %v", name, e.Name)
				}
				if w := attr(e, "width"); w != "720" {
					t.Errorf("%s: width %q, want 720", name, w)
				}
			}
			depth++
		case xml.EndElement:
			depth--
		}
	}
	if roots != 1 || depth != 0 {
		t.Errorf("%s: %d root elements, depth %d at the end", name, roots, depth)
	}
}

func attr(e xml.StartElement, name string) string {
	for _, a := range e.Attr {
		if a.Name.Local == name {
			return a.Value
		}
	}
	return ""
}

func TestPlotsWellFormed(t *testing.T) {
	rep := sampleReport(t)
	var files []string
	for _, p := range rep.all {
		checkSVG(t, p.File, p.SVG)
		files = append(files, p.File)
	}
	for _, want := range []string{
		"localhit-uniform-g-1-latency.svg", "localhit-zipf-g-8-latency.svg", "l2hit-latency.svg",
		"getmany-shards-3-latency.svg", "mixed-latency.svg", "stampede-loads.svg",
		"propagation-latency.svg", "scaling-latency.svg", "scaling-cpu-us-inval.svg",
		"hitratio-arc-oltp.svg", "hitratio-zipf-1-01.svg", "strata-top-latency.svg",
	} {
		if !slices.Contains(files, want) {
			t.Errorf("no plot %s in %q", want, files)
		}
	}
}

func TestPlotsDeterministic(t *testing.T) {
	a, b := sampleReport(t), sampleReport(t)
	if len(a.all) != len(b.all) {
		t.Fatalf("%d plots, then %d", len(a.all), len(b.all))
	}
	for i := range a.all {
		if a.all[i].File != b.all[i].File || !bytes.Equal(a.all[i].SVG, b.all[i].SVG) {
			t.Errorf("%s differs between two builds of the same input", a.all[i].File)
		}
	}
}

func TestPlotContents(t *testing.T) {
	byFile := map[string]string{}
	for _, p := range sampleReport(t).all {
		byFile[p.File] = string(p.SVG)
	}
	for file, wants := range map[string][]string{
		// Log axis in decades from 10 ns to 10 µs, each bar labelled.
		"localhit-uniform-g-1-latency.svg": {">10 ns<", ">100 ns<", ">1 µs<", ">10 µs<", ">27.9 ns<", ">1.46 µs<", "log scale", ">go-redis-csc<"},
		"propagation-latency.svg":          {">p50<", ">p99<", ">never<", ">827 µs<", ">1.47 ms<"},
		"stampede-loads.svg":               {">1 load per key<", ">16<"},
		"hitratio-arc-oltp.svg":            {">belady<", "stroke-dasharray=\"6 4\"", ">hit ratio (%)<", ">capacity (entries, log scale)<"},
		"scaling-latency.svg":              {">replicas (log scale)<", ">3<", ">10<", ">30<"},
	} {
		svg, ok := byFile[file]
		if !ok {
			t.Errorf("no %s", file)
			continue
		}
		for _, w := range wants {
			if !strings.Contains(svg, w) {
				t.Errorf("%s lacks %q", file, w)
			}
		}
	}
}

func TestAxisTicks(t *testing.T) {
	tests := []struct {
		name   string
		values []float64
		log    bool
		want   []float64
	}{
		{"log decades", []float64{27.9, 1459}, true, []float64{10, 100, 1000, 10000}},
		{"log, one decade: 2s and 5s", []float64{2140, 3440}, true, []float64{1000, 2000, 5000, 10000}},
		{"linear from zero", []float64{1, 16}, false, []float64{0, 5, 10, 15, 20}},
		{"linear, fractions", []float64{0.12, 0.51}, false, []float64{0, 0.2, 0.4, 0.6}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := newAxis(tt.values, tt.log, true).ticks(); !slices.Equal(got, tt.want) {
				t.Errorf("ticks = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestSVGEscapesText(t *testing.T) {
	c := &barChart{Title: `a <b> & "c"`, Format: formatNumber, Rows: []barRow{{Label: "x<y", Values: []float64{1}}}}
	checkSVG(t, "escaped", c.render())
}
