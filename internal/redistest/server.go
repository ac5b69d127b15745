package redistest

import (
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

const (
	// startTimeout bounds how long a server may take to answer PING.
	startTimeout = 10 * time.Second
	// portAttempts is how often a start is retried after losing a race for
	// the port to another process.
	portAttempts = 5
	// commandTimeout bounds the harness's own commands (Do, CommandCount…).
	commandTimeout = 10 * time.Second
	// logTailBytes is how much of the server output failure messages show.
	logTailBytes = 4096
)

// errPortInUse means redis-server exited because its port (or cluster bus
// port) was taken between picking it and binding it.
var errPortInUse = errors.New("port already in use")

// Server is one redis-server process owned by a test. Its methods are safe
// for concurrent use; Restart and the methods taking a testing.TB fail the
// test and therefore must be called from the test's own goroutine.
type Server struct {
	t        testing.TB
	bin      string
	dir      string
	extra    []string
	cluster  bool
	password string
	port     int // fixed once Start returns

	mu        sync.Mutex
	proc      *exec.Cmd
	done      chan struct{} // closed once proc has exited and been reaped
	logOffset int64         // log size when proc started, to scan only its output
	paused    bool
	admin     *redis.Client // lazily created client for Do and friends
}

// Start starts a single redis-server on a free loopback port with its own
// temporary directory and no persistence, waits until it answers PING, and
// stops it when the test ends.
func Start(t testing.TB, opts ...Option) *Server {
	t.Helper()
	cfg := newConfig(opts)
	return startServer(t, lookBinary(t, "redis-server"), cfg, false)
}

// StartShards starts n independent servers, for example the members of a
// consistent-hashed ring.
func StartShards(t testing.TB, n int, opts ...Option) []*Server {
	t.Helper()
	cfg := newConfig(opts)
	bin := lookBinary(t, "redis-server")
	servers := make([]*Server, n)
	for i := range servers {
		servers[i] = startServer(t, bin, cfg, false)
	}
	return servers
}

// startServer picks a port and starts the server, picking a new port if
// another process won the race for the old one.
func startServer(t testing.TB, bin string, cfg config, cluster bool) *Server {
	t.Helper()
	s := &Server{
		t:        t,
		bin:      bin,
		dir:      t.TempDir(),
		extra:    cfg.args,
		cluster:  cluster,
		password: cfg.password(),
	}
	// Registered after TempDir so that it runs before the directory is
	// removed (cleanups run last-in first-out), and before launching so that
	// a failing start cannot leak the process.
	t.Cleanup(s.cleanup)
	var err error
	for range portAttempts {
		s.port = pickPort(t, cluster)
		s.mu.Lock()
		err = s.launchLocked()
		s.mu.Unlock()
		if !errors.Is(err, errPortInUse) {
			break
		}
	}
	if err != nil {
		t.Fatalf("redistest: redis-server on %s failed to start: %v\n%s", s.Addr(), err, s.logTail())
	}
	return s
}

// Addr returns the server's address, "127.0.0.1:port".
func (s *Server) Addr() string {
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(s.port))
}

// Port returns the server's TCP port.
func (s *Server) Port() int { return s.port }

// args returns the redis-server command line. The extra arguments come last
// so that they override the defaults.
func (s *Server) args() []string {
	args := []string{
		"--port", strconv.Itoa(s.port),
		"--bind", "127.0.0.1",
		"--dir", s.dir,
		"--save", "",
		"--appendonly", "no",
		// Replicas would otherwise wait 5 s for more replicas to join a
		// diskless full sync before receiving any data.
		"--repl-diskless-sync-delay", "0",
	}
	if s.cluster {
		args = append(args,
			"--cluster-enabled", "yes",
			"--cluster-config-file", filepath.Join(s.dir, "nodes.conf"),
			// Short enough for failover tests, long enough not to flap on a
			// loaded 2-core CI machine.
			"--cluster-node-timeout", "2000",
		)
	}
	return append(args, s.extra...)
}

func (s *Server) logPath() string { return filepath.Join(s.dir, "redis-server.log") }

// launchLocked starts the process and waits until it answers PING. On
// failure the process is gone when it returns. s.mu must be held.
func (s *Server) launchLocked() error {
	logf, err := os.OpenFile(s.logPath(), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	fmt.Fprintf(logf, "--- redistest: starting %s %q\n", s.bin, s.args())
	offset, _ := logf.Seek(0, io.SeekEnd)
	cmd := exec.Command(s.bin, s.args()...)
	cmd.Dir = s.dir
	// An *os.File is handed to the child directly, so no copying goroutines
	// exist that could outlive the process.
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = sysProcAttr()
	if err := cmd.Start(); err != nil {
		logf.Close()
		return err
	}
	done := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		logf.Close()
		close(done)
	}()
	s.proc, s.done, s.logOffset, s.paused = cmd, done, offset, false
	if err := s.waitReady(); err != nil {
		s.killLocked()
		return err
	}
	return nil
}

// waitReady polls until our own process answers PING, it exits, or
// startTimeout passes. s.mu must be held.
func (s *Server) waitReady() error {
	pid := s.proc.Process.Pid
	deadline := time.Now().Add(startTimeout)
	interval := firstPollInterval
	var lastErr error
	for time.Now().Before(deadline) {
		got, err := probe(s.Addr(), s.password)
		if err == nil && got == pid {
			return nil
		}
		if err == nil {
			// Another server answers on our port: ours will fail to bind
			// and exit, which the select below notices.
			err = fmt.Errorf("port answered by a foreign redis-server (pid %d)", got)
		}
		lastErr = err
		select {
		case <-s.done:
			return s.exitError()
		case <-time.After(interval):
		}
		interval = min(2*interval, 50*time.Millisecond)
	}
	return fmt.Errorf("no PING reply within %v: %v", startTimeout, lastErr)
}

// exitError explains an early exit, marking bind failures as errPortInUse
// so that the caller can retry on another port.
func (s *Server) exitError() error {
	err := fmt.Errorf("redis-server exited: %v", s.proc.ProcessState)
	out, _ := os.ReadFile(s.logPath())
	if int64(len(out)) >= s.logOffset && strings.Contains(string(out[s.logOffset:]), "already in use") {
		return fmt.Errorf("%w: %v", errPortInUse, err)
	}
	return err
}

// logTail returns the end of the server's output for failure messages.
func (s *Server) logTail() string {
	out, err := os.ReadFile(s.logPath())
	if err != nil {
		return fmt.Sprintf("(no redis-server output: %v)", err)
	}
	if len(out) > logTailBytes {
		out = out[len(out)-logTailBytes:]
		if i := strings.IndexByte(string(out), '\n'); i >= 0 {
			out = out[i+1:]
		}
	}
	return "--- redis-server output (tail) ---\n" + string(out)
}
