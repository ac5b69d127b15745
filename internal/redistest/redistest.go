// Package redistest starts real redis-server processes for tests.
//
// Every server gets a free loopback port and its own temporary directory,
// runs without persistence, and is killed (and reaped) through t.Cleanup,
// so tests leak neither processes nor goroutines. On Linux the servers are
// also started with a parent-death signal so that a crashed test binary does
// not leave them behind.
package redistest

import (
	"fmt"
	"os/exec"
	"testing"
	"time"
)

// Option customises the servers started by Start, StartShards and
// StartCluster.
type Option func(*config)

// config collects the effect of all Options.
type config struct {
	args     []string
	replicas int
}

// WithArgs appends extra redis-server command-line arguments, for example
// WithArgs("--requirepass", "x"). They come last, so they override the
// harness defaults. A --requirepass value is also used by the clients that
// the harness creates.
func WithArgs(args ...string) Option {
	return func(c *config) { c.args = append(c.args, args...) }
}

// WithReplicas sets the number of replicas per master for StartCluster.
// Other constructors ignore it.
func WithReplicas(n int) Option {
	return func(c *config) { c.replicas = n }
}

func newConfig(opts []Option) config {
	var c config
	for _, o := range opts {
		o(&c)
	}
	return c
}

// password returns the value of the last --requirepass argument, so that
// the harness's own clients and probes can authenticate.
func (c config) password() string {
	pw := ""
	for i := 0; i+1 < len(c.args); i++ {
		if c.args[i] == "--requirepass" {
			pw = c.args[i+1]
		}
	}
	return pw
}

// lookBinary finds name in PATH or fails the test with installation hints.
func lookBinary(t testing.TB, name string) string {
	t.Helper()
	path, err := exec.LookPath(name)
	if err != nil {
		t.Fatalf("%s not found in PATH: run `make deps` (installs redis-server and redis-tools) or install Redis 7.0+", name)
		return ""
	}
	return path
}

// WaitFor polls cond with a short, growing interval until it returns true,
// and fails the test with msgAndArgs if that does not happen within timeout.
// msgAndArgs is either a format string followed by its arguments or any
// values to print. Use it instead of sleeping for a fixed time.
func WaitFor(t testing.TB, timeout time.Duration, cond func() bool, msgAndArgs ...any) {
	t.Helper()
	if poll(timeout, cond) {
		return
	}
	t.Fatalf("redistest: condition not met within %v: %s", timeout, formatMsg(msgAndArgs))
}

// Polling starts fast so that quick conditions cost little latency, and
// backs off so that slow ones do not burn the CPU.
const (
	firstPollInterval = time.Millisecond
	maxPollInterval   = 100 * time.Millisecond
)

// poll reports whether cond became true within timeout. cond is always
// evaluated at least once, and once more at the deadline.
func poll(timeout time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(timeout)
	interval := firstPollInterval
	for {
		if cond() {
			return true
		}
		left := time.Until(deadline)
		if left <= 0 {
			return false
		}
		time.Sleep(min(interval, left))
		interval = min(2*interval, maxPollInterval)
	}
}

func formatMsg(msgAndArgs []any) string {
	if len(msgAndArgs) == 0 {
		return "(no message)"
	}
	if format, ok := msgAndArgs[0].(string); ok && len(msgAndArgs) > 1 {
		return fmt.Sprintf(format, msgAndArgs[1:]...)
	}
	return fmt.Sprint(msgAndArgs...)
}
