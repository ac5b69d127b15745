package redistest

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/redis/go-redis/v9"
)

// Kill sends SIGKILL to the server and waits until the process has exited.
// It does nothing if the server is not running.
func (s *Server) Kill() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.killLocked()
}

// killLocked kills and reaps the process. SIGKILL also ends a stopped
// process, so no SIGCONT is needed here. s.mu must be held.
func (s *Server) killLocked() {
	if s.proc == nil {
		return
	}
	select {
	case <-s.done:
	default:
		_ = s.proc.Process.Kill()
		<-s.done
	}
	s.proc, s.done, s.paused = nil, nil, false
}

// running reports whether the process is alive. s.mu must be held.
func (s *Server) running() bool {
	if s.proc == nil {
		return false
	}
	select {
	case <-s.done:
		return false
	default:
		return true
	}
}

// Pause stops the server with SIGSTOP: connections stay open but nothing is
// answered, which simulates a hung or partitioned node. It does nothing if
// the server is already paused or not running.
func (s *Server) Pause() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.paused || !s.running() {
		return
	}
	_ = s.proc.Process.Signal(syscall.SIGSTOP)
	s.paused = true
}

// Resume continues a paused server with SIGCONT. It does nothing if the
// server is not paused.
func (s *Server) Resume() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.resumeLocked()
}

func (s *Server) resumeLocked() {
	if !s.paused || !s.running() {
		s.paused = false
		return
	}
	_ = s.proc.Process.Signal(syscall.SIGCONT)
	s.paused = false
}

// Restart kills the server if it is running and starts it again on the same
// port with the same arguments, waiting until it answers PING. Data is lost
// (there is no persistence), but a cluster node keeps its identity through
// its nodes.conf. It fails the test of the goroutine that started the server
// if the server does not come back.
func (s *Server) Restart() {
	s.t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	s.killLocked()
	var err error
	for range portAttempts {
		// Retry only if someone else briefly held the port; the port itself
		// cannot change, because clients and cluster peers know it.
		if err = s.launchLocked(); !errors.Is(err, errPortInUse) {
			break
		}
	}
	if err != nil {
		s.t.Fatalf("redistest: restart of redis-server on %s failed: %v\n%s", s.Addr(), err, s.logTail())
	}
}

// cleanup ends the process for good and closes the harness's client.
func (s *Server) cleanup() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.resumeLocked() // let a paused server see its death promptly, as documented
	s.killLocked()
	if s.admin != nil {
		_ = s.admin.Close()
		s.admin = nil
	}
}

// options returns go-redis options for this server.
func (s *Server) options() *redis.Options {
	return &redis.Options{Addr: s.Addr(), Password: s.password}
}

// Client returns a new go-redis client for this server, closed when t ends.
func (s *Server) Client(t testing.TB) *redis.Client {
	t.Helper()
	c := redis.NewClient(s.options())
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// adminClient returns the shared client behind Do, CommandCount and
// ResetStats. It is created lazily so that servers never queried cost no
// client, and it dials only once per attempt so that a killed server makes
// commands fail fast instead of retrying for seconds.
func (s *Server) adminClient() *redis.Client {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.admin == nil {
		opts := s.options()
		opts.DialerRetries = 1
		opts.DisableIdentity = true // keep CLIENT SETINFO out of the stats
		s.admin = redis.NewClient(opts)
	}
	return s.admin
}

// do runs one command through the admin client without failing the test.
func (s *Server) do(args ...any) (any, error) {
	ctx, cancel := context.WithTimeout(context.Background(), commandTimeout)
	defer cancel()
	return s.adminClient().Do(ctx, args...).Result()
}

// Do runs one command and returns its reply, failing the test on error.
// A nil reply (redis.Nil) is returned as nil.
func (s *Server) Do(t testing.TB, args ...any) any {
	t.Helper()
	v, err := s.do(args...)
	if errors.Is(err, redis.Nil) {
		return nil
	}
	if err != nil {
		t.Fatalf("redistest: %s: %v: %v", s.Addr(), args, err)
	}
	return v
}

// info returns one INFO section, without failing the test.
func (s *Server) info(section string) (string, error) {
	v, err := s.do("INFO", section)
	if err != nil {
		return "", err
	}
	str, ok := v.(string)
	if !ok {
		return "", fmt.Errorf("INFO %s: unexpected reply type %T", section, v)
	}
	return str, nil
}

// CommandCount returns how often cmd (for example "get", "set", "evalsha"
// or "client|setinfo") was called since start or the last ResetStats,
// according to INFO commandstats; 0 if it was never called.
func (s *Server) CommandCount(t testing.TB, cmd string) int64 {
	t.Helper()
	info, err := s.info("commandstats")
	if err != nil {
		t.Fatalf("redistest: %s: INFO commandstats: %v", s.Addr(), err)
	}
	stats := infoField(info, "cmdstat_"+strings.ToLower(cmd))
	for field := range strings.SplitSeq(stats, ",") {
		if v, ok := strings.CutPrefix(field, "calls="); ok {
			n, err := strconv.ParseInt(v, 10, 64)
			if err != nil {
				t.Fatalf("redistest: %s: bad commandstats line %q", s.Addr(), stats)
			}
			return n
		}
	}
	return 0
}

// ResetStats resets the server's statistics (CONFIG RESETSTAT), so that
// CommandCount counts from zero again.
func (s *Server) ResetStats(t testing.TB) {
	t.Helper()
	s.Do(t, "CONFIG", "RESETSTAT")
}
