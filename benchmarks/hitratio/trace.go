package hitratio

import (
	"bufio"
	"compress/gzip"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
)

// TracesEnv names the environment variable that overrides where the traces
// are (see Dir).
const TracesEnv = "STRATA_TRACES"

// ErrNoTraces is Dir's error when no trace directory is found.
var ErrNoTraces = errors.New("hitratio: trace directory not found (set " + TracesEnv + ")")

// Format is how a trace file encodes its keys, after gunzip.
type Format int

const (
	// ARC is the ARC traces' text: lines "start count ignore reqno", each
	// standing for the requests start, start+1, ..., start+count-1.
	ARC Format = iota
	// LIRS is the LIRS traces' text: one integer key per line; blank and
	// non-numeric lines (the '*' separators) are skipped.
	LIRS
	// Corda is a sequence of 8-byte big-endian unsigned keys.
	Corda
)

// Trace is one trace file and the capacities, in entries, it is replayed at.
type Trace struct {
	// Name is the file's name without ".gz" (Corda's without "trace_").
	Name   string
	File   string
	Format Format
	// Capacities span small to large for the trace's working set; see
	// Traces for why each.
	Capacities []int
}

// Traces are the five traces of /work/shared/traces/README.md, in the
// order reports list them.
var Traces = []Trace{
	// OLTP: 914,145 requests over 186,880 pages; 250..2000 is the range the
	// published ristretto and otter charts use.
	{Name: "arc-oltp", File: "arc-oltp.gz", Format: ARC, Capacities: []int{250, 500, 750, 1000, 1500, 2000}},
	// P3: 3,912,296 requests over 762,543 blocks. The ARC paper's cache
	// sizes (1k..64k 512-byte pages) stay far below the working set;
	// 25k..400k runs from 3% of the unique blocks to half of them.
	{Name: "arc-p3", File: "arc-p3.gz", Format: ARC, Capacities: []int{25_000, 50_000, 100_000, 200_000, 300_000, 400_000}},
	// GLI: 6,015 requests over 2,529 keys; the published range 250..2000.
	{Name: "lirs-gli", File: "lirs-gli.gz", Format: LIRS, Capacities: []int{250, 500, 750, 1000, 1500, 2000}},
	// LOOP: 505,500 requests looping over 1,011 keys: below 1,011 an LRU
	// never hits, from 1,011 on everything hits; 250..1500 crosses it.
	{Name: "lirs-loop", File: "lirs-loop.gz", Format: LIRS, Capacities: []int{250, 500, 750, 1000, 1250, 1500}},
	// Corda: 135,702 requests over 90,468 keys, recency-skewed: a key comes
	// back within about 50 requests or never, so LRU and the optimum reach
	// the ceiling of 33.3% from 50 entries on, and 100..3200 (doubling)
	// measures admission alone: how much of the ceiling a frequency filter
	// throws away. Below 100 entries l1's floor of 1,000 counters would
	// give Strata more counters than raw ristretto's ten per entry.
	{Name: "corda-vaultservice", File: "corda-trace_vaultservice.gz", Format: Corda, Capacities: []int{100, 200, 400, 800, 1600, 3200}},
}

// Lookup returns the trace named name.
func Lookup(name string) (Trace, bool) {
	for _, t := range Traces {
		if t.Name == name {
			return t, true
		}
	}
	return Trace{}, false
}

// Dir returns the trace directory: $STRATA_TRACES if set, else the first
// shared/traces found walking up from the working directory and then from
// this source file's directory (the repository's checkout sits beside
// shared/, as /work/main and /work/shared do).
func Dir() (string, error) {
	if d := os.Getenv(TracesEnv); d != "" {
		return d, nil
	}
	var starts []string
	if wd, err := os.Getwd(); err == nil {
		starts = append(starts, wd)
	}
	if _, file, _, ok := runtime.Caller(0); ok {
		starts = append(starts, filepath.Dir(file))
	}
	for _, start := range starts {
		for d := start; ; d = filepath.Dir(d) {
			candidate := filepath.Join(d, "shared", "traces")
			if fi, err := os.Stat(candidate); err == nil && fi.IsDir() {
				return candidate, nil
			}
			if filepath.Dir(d) == d {
				break
			}
		}
	}
	return "", ErrNoTraces
}

// Load reads the first limit requests (0: all) of trace t from dir.
func Load(dir string, t Trace, limit int) ([]uint64, error) {
	f, err := os.Open(filepath.Join(dir, t.File))
	if err != nil {
		return nil, fmt.Errorf("hitratio: %w", err)
	}
	defer f.Close()
	keys, err := Read(f, t.Format, limit)
	if err != nil {
		return nil, fmt.Errorf("hitratio: %s: %w", t.File, err)
	}
	return keys, nil
}

// Read decodes a gzip-compressed trace of format f, up to limit requests
// (0: all).
func Read(r io.Reader, f Format, limit int) ([]uint64, error) {
	zr, err := gzip.NewReader(r)
	if err != nil {
		return nil, err
	}
	defer zr.Close()
	if limit <= 0 {
		limit = int(^uint(0) >> 1)
	}
	switch f {
	case ARC:
		return readARC(zr, limit)
	case LIRS:
		return readLIRS(zr, limit)
	case Corda:
		return readCorda(zr, limit)
	}
	return nil, fmt.Errorf("unknown format %d", f)
}

func readARC(r io.Reader, limit int) ([]uint64, error) {
	var keys []uint64
	sc := bufio.NewScanner(r)
	for line := 1; sc.Scan() && len(keys) < limit; line++ {
		fields := strings.Fields(sc.Text())
		if len(fields) == 0 {
			continue
		}
		if len(fields) < 2 {
			return nil, fmt.Errorf("line %d: want \"start count ignore reqno\", got %q", line, sc.Text())
		}
		start, err1 := strconv.ParseUint(fields[0], 10, 64)
		count, err2 := strconv.ParseUint(fields[1], 10, 64)
		if err := errors.Join(err1, err2); err != nil {
			return nil, fmt.Errorf("line %d: %w", line, err)
		}
		for k := start; k < start+count && len(keys) < limit; k++ {
			keys = append(keys, k)
		}
	}
	return keys, sc.Err()
}

func readLIRS(r io.Reader, limit int) ([]uint64, error) {
	var keys []uint64
	sc := bufio.NewScanner(r)
	for sc.Scan() && len(keys) < limit {
		k, err := strconv.ParseUint(strings.TrimSpace(sc.Text()), 10, 64)
		if err != nil {
			continue // a blank line or a '*' separator
		}
		keys = append(keys, k)
	}
	return keys, sc.Err()
}

func readCorda(r io.Reader, limit int) ([]uint64, error) {
	var keys []uint64
	br := bufio.NewReader(r)
	var b [8]byte
	for len(keys) < limit {
		switch _, err := io.ReadFull(br, b[:]); {
		case err == io.EOF:
			return keys, nil
		case err != nil:
			return nil, err
		}
		keys = append(keys, binary.BigEndian.Uint64(b[:]))
	}
	return keys, nil
}

// Unique counts the distinct keys of keys.
func Unique(keys []uint64) int {
	seen := make(map[uint64]struct{}, len(keys)/4)
	for _, k := range keys {
		seen[k] = struct{}{}
	}
	return len(seen)
}
