package main

import (
	"os"
	"testing"

	"go.uber.org/goleak"
)

// asDemo is the environment variable that makes the test binary run the
// demo's main instead of the tests: TestTwoProcesses starts the demo as
// processes of the test binary itself, built with the same flags (-race
// under make test), instead of building the demo with go build of its own,
// which cost CI, starting from an empty build cache, about a minute of
// compiling (modernc.org/sqlite, OpenTelemetry) on top of the test's.
const asDemo = "STRATA_HTTPSERVICE_TEST_AS_DEMO"

// TestMain runs the demo when asDemo is set, and otherwise the tests,
// failing them if they leave a goroutine running.
func TestMain(m *testing.M) {
	if os.Getenv(asDemo) == "1" {
		main()
		os.Exit(0)
	}
	goleak.VerifyTestMain(m)
}
