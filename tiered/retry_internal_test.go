package tiered

import (
	"fmt"
	"testing"
)

// The spool is bounded: past maxRetries, lease releases go first (a lease
// expires by itself), then deletes, each counted as dropped.
func TestRetrySpoolIsBounded(t *testing.T) {
	r := &retrier{running: true} // no loop: only the bookkeeping
	for i := range 10 {
		r.spoolReleases("ns", "token", []string{fmt.Sprint("lease", i)}, 1)
	}
	keys := make([]string, maxRetries)
	for i := range keys {
		keys[i] = fmt.Sprint("k", i)
	}
	r.spoolDeletes("ns", "ns", nil, keys, 0)
	if len(r.releases) != 0 || len(r.deletes) != maxRetries || r.dropped != 10 {
		t.Fatalf("after %d deletes and 10 releases: %d releases, %d deletes, %d dropped; want 0, %d, 10",
			maxRetries, len(r.releases), len(r.deletes), r.dropped, maxRetries)
	}
	r.spoolDeletes("ns", "ns", nil, []string{"one more", "and another"}, 0)
	if len(r.deletes) != maxRetries || r.dropped != 12 {
		t.Errorf("past the bound: %d deletes, %d dropped; want %d, 12", len(r.deletes), r.dropped, maxRetries)
	}
}
