package main

import (
	"slices"
	"testing"
)

func TestGroupResults(t *testing.T) {
	groups := groupResults(loadSample(t).Results)
	type key struct{ pkg, path string }
	var got []key
	for _, g := range groups {
		got = append(got, key{g.Pkg, g.Path})
	}
	for _, want := range []key{
		{"github.com/strata-cache/strata", ""},
		{benchPkg, "BenchmarkLocalHit/uniform/g=1"},
		{benchPkg, "BenchmarkLocalHit/zipf/g=8"},
		{benchPkg, "BenchmarkGetMany/shards=3"},
		{benchPkg, "BenchmarkScaling"},
	} {
		if !slices.Contains(got, want) {
			t.Errorf("no group %v in %v", want, got)
		}
	}
	var local *group
	for _, g := range groups {
		if g.Path == "BenchmarkLocalHit/uniform/g=1" {
			local = g
		}
	}
	var contenders []string
	for _, r := range local.Rows {
		contenders = append(contenders, r.Contender)
	}
	want := []string{"strata", "strata-otter", "ristretto", "otter", "go-redis-cache", "rueidis-csc", "go-redis-csc"}
	if !slices.Equal(contenders, want) {
		t.Errorf("contenders = %q, want %q (input order)", contenders, want)
	}
	if base, ok := local.baseline([]string{"strata", "strata-both"}); !ok || base.Contender != "strata" {
		t.Errorf("baseline = %q, %v", base.Contender, ok)
	}
}

func TestSweep(t *testing.T) {
	mk := func(contenders ...string) *group {
		g := &group{Path: "BenchmarkX"}
		for _, c := range contenders {
			g.Rows = append(g.Rows, row{c, &result{}})
		}
		return g
	}
	if p, xs, ok := mk("replicas=3", "replicas=10", "replicas=30").sweep(); !ok || p != "replicas" || !slices.Equal(xs, []float64{3, 10, 30}) {
		t.Errorf("replicas sweep = %q, %v, %v", p, xs, ok)
	}
	for _, g := range []*group{mk("strata", "otter"), mk("a=1", "b=2"), mk("replicas=3")} {
		if _, _, ok := g.sweep(); ok {
			t.Errorf("%v: a sweep", g.Rows)
		}
	}
}

func TestRatioCell(t *testing.T) {
	tests := []struct {
		base, peer float64
		want       string
	}{
		{27.9, 45.4, "1.63× faster"},
		{10, 523, "52.3× faster"},
		{1, 250, "250× faster"},
		{48, 41, "1.17× slower"},
		{10, 10.02, "same"},
		{10, 0, "—"},
	}
	for _, tt := range tests {
		if got := ratioCell(tt.base, tt.peer); got != tt.want {
			t.Errorf("ratioCell(%v, %v) = %q, want %q", tt.base, tt.peer, got, tt.want)
		}
	}
}

func TestFormatNumber(t *testing.T) {
	tests := []struct {
		in   float64
		want string
	}{
		{0, "0"}, {95.3, "95.3"}, {29, "29"}, {1.5, "1.5"}, {0.0012, "0.0012"},
		{0.00004, "0.00004"}, {1234, "1,234"}, {1226729, "1,226,729"}, {999.4, "999"},
	}
	for _, tt := range tests {
		if got := formatNumber(tt.in); got != tt.want {
			t.Errorf("formatNumber(%v) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func TestFormatDuration(t *testing.T) {
	tests := []struct {
		ns   float64
		want string
	}{
		{0, "0"}, {10, "10 ns"}, {95.3, "95.3 ns"}, {1000, "1 µs"}, {1459, "1.46 µs"},
		{826600, "827 µs"}, {1.2e8, "120 ms"}, {2e9, "2 s"},
	}
	for _, tt := range tests {
		if got := formatDuration(tt.ns); got != tt.want {
			t.Errorf("formatDuration(%v) = %q, want %q", tt.ns, got, tt.want)
		}
	}
}

func TestNsPer(t *testing.T) {
	tests := []struct {
		unit string
		ns   float64
		ok   bool
	}{
		{"ns/op", 1, true}, {"p50-us", 1e3, true}, {"cpu-us/inval", 1e3, true}, {"max-us", 1e3, true},
		{"loads/key", 0, false}, {"stale-reads/op", 0, false}, {"B/op", 0, false},
		{"allocs/op", 0, false}, {"le100us-frac", 0, false}, {"MB/s", 0, false},
	}
	for _, tt := range tests {
		if ns, ok := nsPer(tt.unit); ns != tt.ns || ok != tt.ok {
			t.Errorf("nsPer(%q) = %v, %v; want %v, %v", tt.unit, ns, ok, tt.ns, tt.ok)
		}
	}
}
