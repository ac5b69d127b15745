package main

import (
	"context"
	"testing"

	"github.com/strata-cache/strata/internal/redistest"
)

// The demo runs end to end on its embedded server, and on a real Redis,
// which it leaves as it found it.
func TestQuickstartRuns(t *testing.T) {
	t.Setenv("STRATA_REDIS", "")
	if err := run(context.Background()); err != nil {
		t.Fatal(err)
	}
	srv := redistest.Start(t)
	t.Setenv("STRATA_REDIS", srv.Addr())
	if err := run(context.Background()); err != nil {
		t.Fatal(err)
	}
	if n := srv.Do(t, "DBSIZE").(int64); n != 0 {
		t.Errorf("the quickstart left %d keys in Redis", n)
	}
}
