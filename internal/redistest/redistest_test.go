package redistest

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// fastFailClient returns a client that neither retries commands nor
// redials, so that failures against a killed or paused server show at once.
func fastFailClient(t *testing.T, s *Server, readTimeout time.Duration) *redis.Client {
	t.Helper()
	c := redis.NewClient(&redis.Options{
		Addr:          s.Addr(),
		MaxRetries:    -1,
		DialerRetries: 1,
		DialTimeout:   time.Second,
		ReadTimeout:   readTimeout,
	})
	t.Cleanup(func() { _ = c.Close() })
	return c
}

func TestStartDoAndCommandCount(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := Start(t)
	if !strings.HasPrefix(s.Addr(), "127.0.0.1:") || s.Port() == 0 {
		t.Fatalf("Addr() = %q, Port() = %d", s.Addr(), s.Port())
	}
	if err := s.Client(t).Ping(ctx).Err(); err != nil {
		t.Fatalf("PING: %v", err)
	}
	s.ResetStats(t)
	s.Do(t, "SET", "k", "v")
	if got := s.Do(t, "GET", "k"); got != "v" {
		t.Fatalf("GET k = %v, want v", got)
	}
	if got := s.Do(t, "GET", "missing"); got != nil {
		t.Fatalf("GET missing = %v, want nil", got)
	}
	if n := s.CommandCount(t, "set"); n != 1 {
		t.Errorf("CommandCount(set) = %d, want 1", n)
	}
	if n := s.CommandCount(t, "GET"); n != 2 {
		t.Errorf("CommandCount(GET) = %d, want 2", n)
	}
	if n := s.CommandCount(t, "evalsha"); n != 0 {
		t.Errorf("CommandCount(evalsha) = %d, want 0", n)
	}
	s.ResetStats(t)
	if n := s.CommandCount(t, "get"); n != 0 {
		t.Errorf("CommandCount(get) after ResetStats = %d, want 0", n)
	}
	// No persistence: tests must not write dump files or AOFs.
	if got := fmt.Sprint(s.Do(t, "CONFIG", "GET", "save")); !strings.Contains(got, "save:]") {
		t.Errorf("CONFIG GET save = %s, want empty", got)
	}
}

func TestKillRestart(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := Start(t)
	port := s.Port()
	s.Do(t, "SET", "k", "v")
	c := fastFailClient(t, s, time.Second)

	s.Kill()
	s.Kill() // idempotent
	if err := c.Ping(ctx).Err(); err == nil {
		t.Fatal("PING after Kill succeeded")
	}

	s.Restart()
	if s.Port() != port {
		t.Fatalf("port changed from %d to %d", port, s.Port())
	}
	if err := s.Client(t).Ping(ctx).Err(); err != nil {
		t.Fatalf("PING after Restart: %v", err)
	}
	if got := s.Do(t, "GET", "k"); got != nil {
		t.Errorf("GET k after Restart = %v, want nil (no persistence)", got)
	}
	s.Restart() // restarting a running server works too
	s.Do(t, "PING")
}

func TestPauseResume(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := Start(t)
	c := fastFailClient(t, s, 200*time.Millisecond)
	if err := c.Ping(ctx).Err(); err != nil {
		t.Fatalf("PING: %v", err)
	}

	s.Pause()
	s.Pause() // idempotent
	err := c.Ping(ctx).Err()
	var netErr net.Error
	if !errors.As(err, &netErr) || !netErr.Timeout() {
		t.Fatalf("PING while paused: got %v, want a timeout", err)
	}

	s.Resume()
	s.Resume() // idempotent
	if err := c.Ping(ctx).Err(); err != nil {
		t.Fatalf("PING after Resume: %v", err)
	}
}

// TestCleanupReapsPausedServer checks that a server left paused by a test is
// still killed and reaped when that test ends.
func TestCleanupReapsPausedServer(t *testing.T) {
	t.Parallel()
	var s *Server
	var pid int
	t.Run("inner", func(t *testing.T) {
		s = Start(t)
		pid = s.proc.Process.Pid
		s.Pause()
	})
	if err := syscall.Kill(pid, 0); !errors.Is(err, syscall.ESRCH) {
		t.Fatalf("process %d still exists after cleanup (kill -0: %v)", pid, err)
	}
	if _, err := probe(s.Addr(), ""); err == nil {
		t.Fatal("server still answers after cleanup")
	}
}

func TestRequirePass(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := Start(t, WithArgs("--requirepass", "secret"))
	if err := s.Client(t).Ping(ctx).Err(); err != nil {
		t.Fatalf("PING with password: %v", err)
	}
	anon := fastFailClient(t, s, time.Second)
	if err := anon.Ping(ctx).Err(); err == nil || !strings.Contains(err.Error(), "NOAUTH") {
		t.Fatalf("PING without password: got %v, want NOAUTH", err)
	}
}

func TestStartShards(t *testing.T) {
	t.Parallel()
	shards := StartShards(t, 3)
	if len(shards) != 3 {
		t.Fatalf("got %d shards, want 3", len(shards))
	}
	seen := map[string]bool{}
	for i, s := range shards {
		if seen[s.Addr()] {
			t.Fatalf("duplicate address %s", s.Addr())
		}
		seen[s.Addr()] = true
		s.Do(t, "SET", "shard", i)
	}
	// Each shard kept its own value, so they are really independent.
	for i, s := range shards {
		if got := s.Do(t, "GET", "shard"); got != fmt.Sprint(i) {
			t.Errorf("shard %d: GET shard = %v", i, got)
		}
	}
}

func TestStartCluster(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	c := StartCluster(t, 3)
	if len(c.Masters) != 3 || len(c.Replicas) != 0 || len(c.Addrs()) != 3 {
		t.Fatalf("got %d masters, %d replicas, %d addrs", len(c.Masters), len(c.Replicas), len(c.Addrs()))
	}
	cc := c.Client(t)
	const keys = 100
	for i := range keys {
		if err := cc.Set(ctx, fmt.Sprintf("key-%d", i), i, 0).Err(); err != nil {
			t.Fatalf("SET key-%d: %v", i, err)
		}
	}
	for i := range keys {
		if got, err := cc.Get(ctx, fmt.Sprintf("key-%d", i)).Int(); err != nil || got != i {
			t.Fatalf("GET key-%d = %d, %v", i, got, err)
		}
	}
	// The keys were spread over the slots of all masters.
	var total int64
	for _, m := range c.Masters {
		n := m.CommandCount(t, "set")
		if n == 0 {
			t.Errorf("master %s got no SET", m.Addr())
		}
		total += n
		if info := fmt.Sprint(m.Do(t, "CLUSTER", "INFO")); !strings.Contains(info, "cluster_state:ok") {
			t.Errorf("master %s: CLUSTER INFO:\n%s", m.Addr(), info)
		}
	}
	if total != keys {
		t.Errorf("masters saw %d SETs, want %d", total, keys)
	}
}

func TestStartClusterWithReplicas(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	c := StartCluster(t, 3, WithReplicas(1))
	if len(c.Masters) != 3 || len(c.Replicas) != 3 {
		t.Fatalf("got %d masters, %d replicas, want 3 and 3", len(c.Masters), len(c.Replicas))
	}
	for _, r := range c.Replicas {
		if role := fmt.Sprint(r.Do(t, "ROLE")); !strings.HasPrefix(role, "[slave") {
			t.Errorf("replica %s: ROLE = %s", r.Addr(), role)
		}
	}
	if err := c.Client(t).Set(ctx, "k", "v", 0).Err(); err != nil {
		t.Fatalf("SET: %v", err)
	}
}

// fakeTB records Fatalf instead of stopping the goroutine, so that failure
// paths can be tested.
type fakeTB struct {
	testing.TB
	failed atomic.Value // string
}

func (f *fakeTB) Helper() {}

func (f *fakeTB) Fatalf(format string, args ...any) {
	f.failed.Store(fmt.Sprintf(format, args...))
}

func (f *fakeTB) message() string {
	s, _ := f.failed.Load().(string)
	return s
}

func TestWaitFor(t *testing.T) {
	t.Parallel()
	calls := 0
	WaitFor(t, time.Second, func() bool { calls++; return calls == 3 }, "never reached 3")
	if calls != 3 {
		t.Fatalf("cond called %d times, want 3", calls)
	}

	f := &fakeTB{TB: t}
	start := time.Now()
	WaitFor(f, 50*time.Millisecond, func() bool { return false }, "value is %d", 42)
	if !strings.Contains(f.message(), "value is 42") {
		t.Fatalf("failure message = %q", f.message())
	}
	if d := time.Since(start); d < 50*time.Millisecond || d > time.Second {
		t.Fatalf("WaitFor gave up after %v, want about 50ms", d)
	}
}

// TestMissingBinary cannot be parallel: it changes PATH.
func TestMissingBinary(t *testing.T) {
	t.Setenv("PATH", t.TempDir())
	f := &fakeTB{TB: t}
	lookBinary(f, "redis-server")
	if want := "redis-server not found in PATH: run `make deps`"; !strings.Contains(f.message(), want) {
		t.Fatalf("message = %q, want it to contain %q", f.message(), want)
	}
}

// TestPortRaceDetected checks that losing the port to another server is
// reported as errPortInUse (which makes Start retry on a new port) and not
// mistaken for success because the other server answers PING.
func TestPortRaceDetected(t *testing.T) {
	t.Parallel()
	other := Start(t)
	s := &Server{
		t:    t,
		bin:  lookBinary(t, "redis-server"),
		dir:  t.TempDir(),
		port: other.Port(),
	}
	t.Cleanup(s.cleanup)
	s.mu.Lock()
	err := s.launchLocked()
	s.mu.Unlock()
	if !errors.Is(err, errPortInUse) {
		t.Fatalf("launch on a taken port: got %v, want errPortInUse", err)
	}
	if s.proc != nil {
		t.Fatal("failed launch left a process behind")
	}
}
