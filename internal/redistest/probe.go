package redistest

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

const (
	// clusterBusOffset is the fixed distance between a cluster node's client
	// port and its cluster bus port.
	clusterBusOffset = 10000
	// maxClusterPort keeps port+clusterBusOffset a valid port number.
	maxClusterPort = 55000
	// probeTimeout bounds one readiness probe; a healthy local server
	// answers in well under a millisecond.
	probeTimeout = time.Second
)

// claimed holds every port handed out by this test binary. Ports are never
// handed out twice, so parallel tests in one binary cannot pick the same port
// even if the kernel offers it again after a server was killed.
var (
	claimedMu sync.Mutex
	claimed   = map[int]bool{}
)

// pickPort returns a port that was free a moment ago. For cluster nodes the
// cluster bus port (port+10000) must be free as well. The port can still be
// taken by someone else before redis-server binds it; callers retry then.
func pickPort(t testing.TB, cluster bool) int {
	t.Helper()
	for range 200 {
		p, err := freePort()
		if err != nil {
			t.Fatalf("redistest: cannot find a free port: %v", err)
		}
		if cluster && (p >= maxClusterPort || !portFree(p+clusterBusOffset)) {
			continue
		}
		if claim(p, cluster) {
			return p
		}
	}
	t.Fatalf("redistest: no free port found (cluster=%v)", cluster)
	return 0
}

// freePort asks the kernel for an unused loopback port.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

func portFree(p int) bool {
	l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(p)))
	if err != nil {
		return false
	}
	_ = l.Close()
	return true
}

// claim records p (and its bus port for cluster nodes) unless one of them
// is already in use by this binary.
func claim(p int, cluster bool) bool {
	claimedMu.Lock()
	defer claimedMu.Unlock()
	if claimed[p] || (cluster && claimed[p+clusterBusOffset]) {
		return false
	}
	claimed[p] = true
	if cluster {
		claimed[p+clusterBusOffset] = true
	}
	return true
}

// probe checks that the server at addr answers PING and returns its process
// id from INFO server, so the caller can tell its own redis-server apart
// from a foreign one that won a race for the port. It speaks raw RESP rather
// than using go-redis because the go-redis pool throttles redials after
// failures, which would stall a readiness loop.
func probe(addr, password string) (int, error) {
	conn, err := net.DialTimeout("tcp", addr, probeTimeout)
	if err != nil {
		return 0, err
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(probeTimeout))
	r := bufio.NewReader(conn)
	if password != "" {
		if _, err := roundTrip(conn, r, "AUTH", password); err != nil {
			return 0, fmt.Errorf("AUTH: %w", err)
		}
	}
	if reply, err := roundTrip(conn, r, "PING"); err != nil || reply != "PONG" {
		return 0, fmt.Errorf("PING: reply %q, error %v", reply, err)
	}
	info, err := roundTrip(conn, r, "INFO", "server")
	if err != nil {
		return 0, fmt.Errorf("INFO server: %w", err)
	}
	pid, err := strconv.Atoi(infoField(info, "process_id"))
	if err != nil {
		return 0, fmt.Errorf("INFO server: bad process_id: %w", err)
	}
	return pid, nil
}

// roundTrip sends one command and reads a simple string, error or bulk
// string reply, which is all the probe needs.
func roundTrip(w io.Writer, r *bufio.Reader, args ...string) (string, error) {
	var b strings.Builder
	fmt.Fprintf(&b, "*%d\r\n", len(args))
	for _, a := range args {
		fmt.Fprintf(&b, "$%d\r\n%s\r\n", len(a), a)
	}
	if _, err := io.WriteString(w, b.String()); err != nil {
		return "", err
	}
	line, err := r.ReadString('\n')
	if err != nil {
		return "", err
	}
	line = strings.TrimRight(line, "\r\n")
	if line == "" {
		return "", errors.New("empty reply")
	}
	switch line[0] {
	case '+':
		return line[1:], nil
	case '-':
		return "", errors.New(line[1:])
	case '$':
		n, err := strconv.Atoi(line[1:])
		if err != nil || n < 0 {
			return "", fmt.Errorf("unexpected reply %q", line)
		}
		buf := make([]byte, n+2) // payload plus trailing CRLF
		if _, err := io.ReadFull(r, buf); err != nil {
			return "", err
		}
		return string(buf[:n]), nil
	}
	return "", fmt.Errorf("unexpected reply %q", line)
}

// infoField returns the value of "key:value" in an INFO reply, or "".
func infoField(info, key string) string {
	for line := range strings.Lines(info) {
		if v, ok := strings.CutPrefix(strings.TrimRight(line, "\r\n"), key+":"); ok {
			return v
		}
	}
	return ""
}
