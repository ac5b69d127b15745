package main

import (
	"context"
	"testing"
)

// The demo runs end to end on its embedded server: the README's first
// command keeps working.
func TestQuickstartRuns(t *testing.T) {
	t.Setenv("STRATA_REDIS", "")
	if err := run(context.Background()); err != nil {
		t.Fatal(err)
	}
}
