package main

import (
	"bytes"
	"context"
	"strings"
	"testing"
)

// The demo runs on its embedded server and prints the spans and metrics it
// promises.
func TestOtelDemoRuns(t *testing.T) {
	t.Setenv("STRATA_REDIS", "")
	var out bytes.Buffer
	if err := run(context.Background(), &out); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`"strata.cache.get"`, `"strata.cache.load"`, `"strata.cache.refresh"`,
		`"strata.cache.requests"`, `"strata.cache.invalidation.lag"`, `"strata.cache.operation.duration"`,
		`"Events": [`, // the L1 hit, on the request's span
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output lacks %s", want)
		}
	}
}
