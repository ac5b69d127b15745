// Package fuzzcorpus writes fuzz seeds as committed corpus files, in the
// format go test -fuzz reads from testdata/fuzz/FuzzXxx/.
package fuzzcorpus

import (
	"flag"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

var update = flag.Bool("fuzzcorpus.update", false,
	"rewrite the generated seed files (seed-*) under testdata/fuzz/ of the fuzz targets run")

// Seed is one input of a fuzz target: its arguments, in the order of the
// fuzz function's parameters ([]byte, string, bool, uint8, uint16, int64, uint64
// or float64).
type Seed struct {
	Name string // file name after "seed-": lower case words and dashes
	Args []any
}

// filePrefix marks the files Write generates, so that an update replaces
// them and leaves the fuzzer's own finds (named by a hash) alone.
const filePrefix = "seed-"

// Write does nothing unless the test binary runs with -fuzzcorpus.update.
// Then it replaces the generated files of f's target with one file per
// seed, so the committed corpus is made from real encoded values.
func Write(f *testing.F, seeds []Seed) {
	f.Helper()
	if !*update {
		return
	}
	dir := filepath.Join("testdata", "fuzz", f.Name())
	if err := os.MkdirAll(dir, 0o755); err != nil {
		f.Fatal(err)
	}
	old, err := filepath.Glob(filepath.Join(dir, filePrefix+"*"))
	if err != nil {
		f.Fatal(err)
	}
	for _, name := range old {
		if err := os.Remove(name); err != nil {
			f.Fatal(err)
		}
	}
	for _, s := range seeds {
		data, err := Marshal(s.Args...)
		if err != nil {
			f.Fatalf("seed %s: %v", s.Name, err)
		}
		if err := os.WriteFile(filepath.Join(dir, filePrefix+s.Name), data, 0o644); err != nil {
			f.Fatal(err)
		}
	}
}

// Marshal returns args as a corpus file: the "go test fuzz v1" header and
// one Go literal per line, as the go command writes them.
func Marshal(args ...any) ([]byte, error) {
	var b strings.Builder
	b.WriteString("go test fuzz v1\n")
	for _, a := range args {
		switch v := a.(type) {
		case []byte:
			fmt.Fprintf(&b, "[]byte(%q)\n", v)
		case string:
			fmt.Fprintf(&b, "string(%q)\n", v)
		case bool, int64, uint16, uint64:
			fmt.Fprintf(&b, "%T(%v)\n", v, v)
		case float64:
			if math.IsNaN(v) && math.Float64bits(v) != math.Float64bits(math.NaN()) {
				fmt.Fprintf(&b, "math.Float64frombits(%#x)\n", math.Float64bits(v))
			} else {
				fmt.Fprintf(&b, "float64(%v)\n", v)
			}
		case uint8: // written as the go command writes it
			fmt.Fprintf(&b, "byte(%q)\n", v)
		default:
			return nil, fmt.Errorf("fuzzcorpus: argument of type %T", a)
		}
	}
	return []byte(b.String()), nil
}
