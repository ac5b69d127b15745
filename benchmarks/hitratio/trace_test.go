package hitratio

import (
	"bytes"
	"compress/gzip"
	"encoding/binary"
	"errors"
	"slices"
	"testing"
)

func gzipped(t *testing.T, data []byte) *bytes.Reader {
	t.Helper()
	var b bytes.Buffer
	zw := gzip.NewWriter(&b)
	if _, err := zw.Write(data); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return bytes.NewReader(b.Bytes())
}

func TestRead(t *testing.T) {
	corda := binary.BigEndian.AppendUint64(nil, 7)
	corda = binary.BigEndian.AppendUint64(corda, 1<<63)
	corda = binary.BigEndian.AppendUint64(corda, 7)
	tests := []struct {
		name   string
		format Format
		data   []byte
		limit  int
		want   []uint64
	}{
		{"arc", ARC, []byte("5 3 0 1\n\n10 1 0 2\n"), 0, []uint64{5, 6, 7, 10}},
		{"arc limit inside a run", ARC, []byte("5 3 0 1\n10 1 0 2\n"), 2, []uint64{5, 6}},
		{"lirs skips blanks and stars", LIRS, []byte("1\n*\n\n2\r\n 3 \n"), 0, []uint64{1, 2, 3}},
		{"lirs limit", LIRS, []byte("1\n2\n3\n"), 2, []uint64{1, 2}},
		{"corda", Corda, corda, 0, []uint64{7, 1 << 63, 7}},
		{"corda limit", Corda, corda, 1, []uint64{7}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Read(gzipped(t, tt.data), tt.format, tt.limit)
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(got, tt.want) {
				t.Fatalf("got %v, want %v", got, tt.want)
			}
		})
	}
}

func TestReadRejectsBadInput(t *testing.T) {
	tests := []struct {
		name   string
		format Format
		data   []byte
	}{
		{"arc line of one field", ARC, []byte("5\n")},
		{"arc non-numeric", ARC, []byte("5 x 0 1\n")},
		{"corda torn key", Corda, []byte{0, 0, 0, 1}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := Read(gzipped(t, tt.data), tt.format, 0); err == nil {
				t.Fatal("no error")
			}
		})
	}
}

// traceDir returns the trace directory, or skips the test without it.
func traceDir(t testing.TB) string {
	t.Helper()
	dir, err := Dir()
	if errors.Is(err, ErrNoTraces) {
		t.Skipf("no traces: %v (they live in shared/traces beside the repository)", err)
	}
	if err != nil {
		t.Fatal(err)
	}
	return dir
}

// TestTraceCounts checks each trace's requests and distinct keys against
// the counts in shared/traces/README.md (P3's and Corda's unique counts
// are not in it; these are what the readers find).
func TestTraceCounts(t *testing.T) {
	dir := traceDir(t)
	want := map[string][2]int{
		"arc-oltp": {914_145, 186_880}, "arc-p3": {3_912_296, 762_543}, "lirs-gli": {6_015, 2_529},
		"lirs-loop": {505_500, 1_011}, "corda-vaultservice": {135_702, 90_468},
	}
	for _, tr := range Traces {
		t.Run(tr.Name, func(t *testing.T) {
			keys, err := Load(dir, tr, 0)
			if err != nil {
				t.Fatal(err)
			}
			if got := [2]int{len(keys), Unique(keys)}; got != want[tr.Name] {
				t.Fatalf("%d requests over %d keys, want %d over %d", got[0], got[1], want[tr.Name][0], want[tr.Name][1])
			}
		})
	}
}

func TestDirHonoursEnv(t *testing.T) {
	t.Setenv(TracesEnv, "/elsewhere")
	if d, err := Dir(); err != nil || d != "/elsewhere" {
		t.Fatalf("Dir() = %q, %v", d, err)
	}
}
