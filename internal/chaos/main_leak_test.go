package chaos_test

import (
	"context"
	"testing"

	"github.com/redis/go-redis/v9"
	"go.uber.org/goleak"
)

// silent drops go-redis's process-wide log lines: a killed server makes
// every pool report each failed dial.
type silent struct{}

func (silent) Printf(context.Context, string, ...any) {}

// TestMain fails the package's tests if they leave a goroutine running.
// memberlist's Shutdown does not wait for a probe in flight (it ends at the
// probe timeout), and go-redis redials a dead server from a goroutine that
// sleeps a second after each failure, past Close.
func TestMain(m *testing.M) {
	redis.SetLogger(silent{})
	goleak.VerifyTestMain(m,
		goleak.IgnoreTopFunction("github.com/hashicorp/memberlist.(*Memberlist).probeNode"),
		goleak.IgnoreAnyFunction("github.com/redis/go-redis/v9/internal/pool.(*ConnPool).tryDial"))
}
