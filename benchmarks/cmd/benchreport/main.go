// Command benchreport turns `go test -bench . -benchmem` output, and
// optionally hit-ratio results, into SVG plots and the tables of the
// generated region of BENCHMARKS.md: the command behind make bench-report.
//
// Usage, from the repository root:
//
//	go run ./benchmarks/cmd/benchreport -bench bench.txt -hitratio hitratio.json -md BENCHMARKS.md -plots docs/bench
//
// It rewrites only the lines between <!-- bench-report:begin --> and
// <!-- bench-report:end --> of the Markdown file, and prints the headline
// ratios (Strata's local hit against each peer) to stdout. The same input
// gives byte-identical SVGs, so committed plots diff cleanly.
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"
)

func main() {
	if err := run(os.Args[1:], os.Stdin, os.Stdout, os.Stderr); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			os.Exit(0)
		}
		fmt.Fprintln(os.Stderr, "benchreport:", err)
		os.Exit(2)
	}
}

// options are the command's flags.
type options struct {
	bench, hitRatio, md, plots string
	date, machine              string
	headline                   string
	baselines                  []string
	level                      int
	capacityUnit               string
}

func parseFlags(args []string, stderr io.Writer) (options, error) {
	var o options
	fs := flag.NewFlagSet("benchreport", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&o.bench, "bench", "", "go test -bench -benchmem output to read (required; - for stdin)")
	fs.StringVar(&o.hitRatio, "hitratio", "", "JSON hit-ratio results to read (optional)")
	fs.StringVar(&o.md, "md", "BENCHMARKS.md", "Markdown file whose bench-report region is rewritten (empty: none)")
	fs.StringVar(&o.plots, "plots", "docs/bench", "directory the SVG plots are written to")
	fs.StringVar(&o.date, "date", "", "the run's date, for the report (default: today, UTC)")
	fs.StringVar(&o.machine, "machine", "", "a note on the machine, for the report (e.g. \"c2-standard-4, idle\")")
	fs.StringVar(&o.headline, "headline", "BenchmarkLocalHit", "benchmark path prefix of the groups in the headline")
	baselines := fs.String("baseline", "strata,strata-both", "contenders the ratio columns compare against, first present wins")
	fs.IntVar(&o.level, "level", 3, "Markdown heading level of the report's sections")
	fs.StringVar(&o.capacityUnit, "capacity-unit", "entries", "what the hit-ratio capacities count")
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	switch {
	case fs.NArg() > 0:
		return o, fmt.Errorf("unexpected arguments %q", fs.Args())
	case o.bench == "":
		return o, errors.New("-bench is required (a file, or - for stdin)")
	case o.level < 1 || o.level > 6:
		return o, errors.New("-level must be 1 to 6")
	}
	o.baselines = strings.Split(*baselines, ",")
	if o.date == "" {
		o.date = time.Now().UTC().Format(time.DateOnly)
	}
	return o, nil
}

// run is the command: read, check the Markdown's markers, then write the
// plots and the Markdown, and print the summary.
func run(args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	opts, err := parseFlags(args, stderr)
	if err != nil {
		return err
	}
	bench, err := readBench(opts.bench, stdin)
	if err != nil {
		return err
	}
	for _, w := range bench.Warnings {
		fmt.Fprintln(stderr, "benchreport: warning:", w)
	}
	var traces []*traceResult
	if opts.hitRatio != "" {
		if traces, err = readHitRatios(opts.hitRatio); err != nil {
			return err
		}
	}
	if len(bench.Results) == 0 && len(traces) == 0 {
		return fmt.Errorf("no benchmark results in %s", opts.bench)
	}
	rep := newReport(opts, bench, traces)
	var doc string
	if opts.md != "" {
		b, err := os.ReadFile(opts.md)
		if err != nil {
			return err
		}
		// Check the markers before writing anything.
		if _, err := replaceRegion(string(b), ""); err != nil {
			return fmt.Errorf("%s: %w", opts.md, err)
		}
		doc = string(b)
	}
	if err := writePlots(opts.plots, rep.all); err != nil {
		return err
	}
	if opts.md != "" {
		if err := writeMarkdown(opts.md, opts.plots, doc, rep); err != nil {
			return err
		}
	}
	return rep.printSummary(stdout)
}

func readBench(name string, stdin io.Reader) (*benchRun, error) {
	if name == "-" {
		return parseBench(stdin)
	}
	f, err := os.Open(name)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return parseBench(f)
}

func readHitRatios(name string) ([]*traceResult, error) {
	f, err := os.Open(name)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	traces, err := parseHitRatios(f)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	return traces, nil
}

func writePlots(dir string, plots []plot) error {
	if len(plots) == 0 {
		return nil
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	for _, p := range plots {
		if err := os.WriteFile(filepath.Join(dir, p.File), p.SVG, 0o644); err != nil {
			return err
		}
	}
	return nil
}

// writeMarkdown replaces the region, with the image links relative to the
// Markdown file's directory.
func writeMarkdown(md, plotsDir, doc string, rep *report) error {
	mdDir, err := filepath.Abs(filepath.Dir(md))
	if err != nil {
		return err
	}
	plotsAbs, err := filepath.Abs(plotsDir)
	if err != nil {
		return err
	}
	link, err := filepath.Rel(mdDir, plotsAbs)
	if err != nil {
		return err
	}
	out, err := replaceRegion(doc, rep.markdown(filepath.ToSlash(link)))
	if err != nil {
		return fmt.Errorf("%s: %w", md, err)
	}
	info, err := os.Stat(md)
	if err != nil {
		return err
	}
	return os.WriteFile(md, []byte(out), info.Mode().Perm())
}
