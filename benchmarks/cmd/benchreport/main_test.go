package main

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// setupDoc copies testdata/BENCHMARKS.md into a fresh directory.
func setupDoc(t *testing.T) (dir, md string) {
	t.Helper()
	dir = t.TempDir()
	doc, err := os.ReadFile("testdata/BENCHMARKS.md")
	if err != nil {
		t.Fatal(err)
	}
	md = filepath.Join(dir, "BENCHMARKS.md")
	if err := os.WriteFile(md, doc, 0o644); err != nil {
		t.Fatal(err)
	}
	return dir, md
}

func runCommand(t *testing.T, stdin string, args ...string) (string, error) {
	t.Helper()
	var stdout, stderr bytes.Buffer
	err := run(args, strings.NewReader(stdin), &stdout, &stderr)
	if stderr.Len() > 0 {
		t.Logf("stderr: %s", stderr.String())
	}
	return stdout.String(), err
}

func TestRun(t *testing.T) {
	dir, md := setupDoc(t)
	plots := filepath.Join(dir, "docs", "bench")
	args := []string{"-bench", "testdata/bench.txt", "-hitratio", "testdata/hitratio.json",
		"-md", md, "-plots", plots, "-date", "2026-01-02", "-machine", "2 vCPU"}
	out, err := runCommand(t, "", args...)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"LocalHit uniform g=1 (ns/op): strata 27.9\n",
		"vs ristretto", "strata is 1.63× faster",
		"hit ratio arc-oltp at capacity 250: strata / ristretto = 0.953, below 0.98",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("stdout lacks %q:\n%s", want, out)
		}
	}

	b, err := os.ReadFile(md)
	if err != nil {
		t.Fatal(err)
	}
	doc := string(b)
	prefix := "# Benchmarks\n\nHand-written introduction: how to read the numbers.\n\n## Results\n\n" + beginMarker + "\n"
	suffix := endMarker + "\n\n## Methodology\n\nHand-written notes after the region.\n"
	if !strings.HasPrefix(doc, prefix) || !strings.HasSuffix(doc, suffix) {
		t.Errorf("the hand-written parts changed:\n%s", doc)
	}
	if strings.Contains(doc, "stale generated content") {
		t.Error("the old region is still there")
	}
	if !strings.Contains(doc, "| Machine | 2 vCPU |") {
		t.Error("no machine note")
	}
	// Every image link resolves, relative to the Markdown file.
	links := 0
	for _, line := range strings.Split(doc, "\n") {
		if !strings.HasPrefix(line, "![") {
			continue
		}
		link := line[strings.Index(line, "](")+2 : len(line)-1]
		if !strings.HasPrefix(link, "docs/bench/") {
			t.Errorf("link %q is not relative to the Markdown file", link)
		}
		if _, err := os.Stat(filepath.Join(dir, filepath.FromSlash(link))); err != nil {
			t.Errorf("link %q: %v", link, err)
		}
		links++
	}
	entries, _ := os.ReadDir(plots)
	if links == 0 || links != len(entries) {
		t.Errorf("%d image links, %d plots", links, len(entries))
	}

	// A second run over the same input leaves every file byte-identical.
	before := readDir(t, plots)
	if _, err := runCommand(t, "", args...); err != nil {
		t.Fatal(err)
	}
	b2, _ := os.ReadFile(md)
	if !bytes.Equal(b, b2) {
		t.Error("the Markdown changed on a second run")
	}
	after := readDir(t, plots)
	for name, data := range before {
		if !bytes.Equal(data, after[name]) {
			t.Errorf("%s changed on a second run", name)
		}
	}
}

func readDir(t *testing.T, dir string) map[string][]byte {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	files := map[string][]byte{}
	for _, e := range entries {
		b, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		files[e.Name()] = b
	}
	return files
}

// TestRunPartialInput reads from stdin a run with one group only and no
// hit ratios; the Markdown sits beside the plots' parent.
func TestRunPartialInput(t *testing.T) {
	dir := t.TempDir()
	md := filepath.Join(dir, "notes", "BENCH.md")
	if err := os.MkdirAll(filepath.Dir(md), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(md, []byte(beginMarker+"\n"+endMarker+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	in := `goos: linux
BenchmarkLocalHit/uniform/g=1/strata-2   1000   20 ns/op   0 B/op   0 allocs/op
BenchmarkLocalHit/uniform/g=1/otter-2    1000   30 ns/op   0 B/op   0 allocs/op
PASS
`
	out, err := runCommand(t, in, "-bench", "-", "-md", md, "-plots", filepath.Join(dir, "plots"), "-date", "x")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out, "vs otter") || !strings.Contains(out, "1.50× faster") {
		t.Errorf("stdout: %s", out)
	}
	doc, _ := os.ReadFile(md)
	if !strings.Contains(string(doc), "](../plots/localhit-uniform-g-1-latency.svg)") {
		t.Errorf("no relative link to ../plots:\n%s", doc)
	}
	if strings.Contains(string(doc), "Hit ratio") {
		t.Error("a hit-ratio section without hit ratios")
	}
}

func TestRunMissingMarkers(t *testing.T) {
	dir := t.TempDir()
	md := filepath.Join(dir, "BENCHMARKS.md")
	if err := os.WriteFile(md, []byte("# no markers\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	plots := filepath.Join(dir, "plots")
	_, err := runCommand(t, "", "-bench", "testdata/bench.txt", "-md", md, "-plots", plots)
	if !errors.Is(err, ErrMarkers) || !strings.Contains(err.Error(), md) {
		t.Errorf("err = %v, want ErrMarkers naming the file", err)
	}
	if _, err := os.Stat(plots); !os.IsNotExist(err) {
		t.Error("plots written despite the error")
	}
	if b, _ := os.ReadFile(md); string(b) != "# no markers\n" {
		t.Error("the Markdown file changed")
	}
}

func TestRunErrors(t *testing.T) {
	tests := []struct {
		name  string
		stdin string
		args  []string
		want  string
	}{
		{"no -bench", "", nil, "-bench is required"},
		{"no results", "PASS\n", []string{"-bench", "-", "-md", ""}, "no benchmark results"},
		{"bad hit ratios", "", []string{"-bench", "testdata/bench.txt", "-hitratio", "testdata/bench.txt", "-md", ""}, "decoding hit ratios"},
		{"missing file", "", []string{"-bench", "testdata/none.txt"}, "none.txt"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := runCommand(t, tt.stdin, tt.args...)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("err = %v, want one containing %q", err, tt.want)
			}
		})
	}
}
