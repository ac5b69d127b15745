package tiered_test

import (
	"context"
	"io"
	"log/slog"
	"sync/atomic"
	"testing"
	"time"

	"github.com/strata-cache/strata/internal/redistest"
	"github.com/strata-cache/strata/l2"
	"github.com/strata-cache/strata/tiered"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	// memberlist's Shutdown does not wait for a probe in flight: it ends on
	// its own at the probe timeout (ProfileLocal: 200 ms).
	// go-redis redials a dead server from a goroutine that sleeps a second
	// after each failure, past Close.
	goleak.VerifyTestMain(m,
		goleak.IgnoreTopFunction("github.com/hashicorp/memberlist.(*Memberlist).probeNode"),
		goleak.IgnoreAnyFunction("github.com/redis/go-redis/v9/internal/pool.(*ConnPool).tryDial"))
}

// waitsMostly marks a test that spends most of its wall time waiting, not
// computing (under 20% of a core under -race): on a Redis Cluster to form,
// on a stalled shard's timeout, on processes to start. It runs in parallel
// with the other such tests, after the package's sequential ones, so their
// waits overlap. Such a test must leave package state alone (no t.Setenv,
// no package variables written, no waitGoroutinesGone: the goroutines of
// the tests beside it are not its own) and bound nothing that CPU
// contention could stretch past its slack.
func waitsMostly(t *testing.T) { t.Parallel() }

// testTimeout is the L2 timeout of tests that are not about slow servers.
const testTimeout = time.Second

// quietLogger keeps expected L2 warnings out of test output.
var quietLogger = slog.New(slog.NewTextHandler(io.Discard, nil))

// newClient returns a client closed at the end of the test.
func newClient(t testing.TB, cfg tiered.Config) *tiered.Client {
	t.Helper()
	if cfg.Logger == nil {
		cfg.Logger = quietLogger
	}
	if cfg.Redis.Enabled() && cfg.Redis.Timeout == 0 {
		// Under -race on two shared cores a healthy Redis can take longer than
		// the 100 ms default to answer, and a timeout is an L2 error that
		// tests of other guarantees would count (a second load, a miss).
		// Fault tests set l2.DefaultTimeout themselves.
		cfg.Redis.Timeout = testTimeout
	}
	c, err := tiered.NewClient(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// newRedisClient returns a client on a fresh single Redis server.
func newRedisClient(t testing.TB, cfg tiered.Config) (*tiered.Client, *redistest.Server) {
	t.Helper()
	srv := redistest.Start(t)
	cfg.Redis = l2.Config{Addrs: []string{srv.Addr()}}
	return newClient(t, cfg), srv
}

func newCache[V any](t testing.TB, c *tiered.Client, ns string, opts tiered.Options[V]) *tiered.Cache[V] {
	t.Helper()
	if opts.L1.MaxCost == 0 {
		opts.L1.MaxCost = 1 << 20
	}
	cache, err := tiered.NewCache(c, ns, opts)
	if err != nil {
		t.Fatal(err)
	}
	return cache
}

// countingLoader returns a loader answering value(key) and the number of calls.
type countingLoader struct {
	calls atomic.Int64
	value func(key string) (string, error)
}

func (l *countingLoader) load(_ context.Context, key string) (string, error) {
	l.calls.Add(1)
	if l.value == nil {
		return "v:" + key, nil
	}
	return l.value(key)
}

// newBufferLogger logs text to w.
func newBufferLogger(w io.Writer) *slog.Logger {
	return slog.New(slog.NewTextHandler(w, nil))
}
