package strata_test

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the package's tests if they leave a goroutine running.
// memberlist's Shutdown does not wait for a probe in flight: it ends on its
// own at the probe timeout (ProfileLocal: 200 ms), which the propagation
// benchmark's replicas can leave behind under -race.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m, goleak.IgnoreTopFunction("github.com/hashicorp/memberlist.(*Memberlist).probeNode"))
}
