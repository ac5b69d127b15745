package main

import (
	"bytes"
	"context"
	"strings"
	"testing"

	"github.com/strata-cache/strata/internal/redistest"
)

// The demo is a test: run exits with an error if a claim it prints does
// not hold. On the embedded server, and on a real Redis, which it leaves
// as it found it.
func TestClusterDemo(t *testing.T) {
	for _, real := range []bool{false, true} {
		name := map[bool]string{false: "miniredis", true: "redis-server"}[real]
		t.Run(name, func(t *testing.T) {
			var srv *redistest.Server
			t.Setenv("STRATA_REDIS", "")
			if real {
				srv = redistest.Start(t)
				t.Setenv("STRATA_REDIS", srv.Addr())
			}
			var out bytes.Buffer
			if err := run(context.Background(), &out); err != nil {
				t.Fatalf("%v\n%s", err, out.String())
			}
			if strings.Contains(out.String(), "FAIL") || !strings.Contains(out.String(), "# report") {
				t.Errorf("output:\n%s", out.String())
			}
			if real {
				if n := srv.Do(t, "DBSIZE").(int64); n != 0 {
					t.Errorf("the demo left %d keys in Redis", n)
				}
			}
		})
	}
}
