package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/strata-cache/strata/internal/redistest"
)

// proc is one httpservice process started by the test.
type proc struct {
	cmd          *exec.Cmd
	http, gossip string
	log          *strings.Builder
	exited       chan error
}

var listening = regexp.MustCompile(`msg=listening addr=(\S+) node=\S+ gossip=(\S+)`)

// startProc starts the demo with args as a process of the test binary
// itself (see asDemo).
func startProc(t *testing.T, args ...string) *proc {
	t.Helper()
	bin, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, args...)
	cmd.Env = append(os.Environ(), asDemo+"=1")
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &proc{cmd: cmd, log: &strings.Builder{}, exited: make(chan error, 1)}
	addrs := make(chan []string, 1)
	lines := make(chan string, 1024)
	go func() {
		defer close(lines)
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			if m := listening.FindStringSubmatch(sc.Text()); m != nil {
				addrs <- m[1:]
			}
			lines <- sc.Text()
		}
	}()
	logDone := make(chan struct{})
	go func() {
		defer close(logDone)
		for l := range lines {
			p.log.WriteString(l + "\n")
		}
	}()
	go func() {
		<-logDone // Wait must follow the reads of the pipe
		p.exited <- cmd.Wait()
	}()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-p.exited
		if t.Failed() {
			t.Logf("log of %v:\n%s", args, p.log.String())
		}
	})
	select {
	case a := <-addrs:
		p.http, p.gossip = "http://"+a[0], a[1]
	case err := <-p.exited:
		t.Fatalf("httpservice exited: %v\n%s", err, p.log.String())
	case <-time.After(30 * time.Second):
		t.Fatal("httpservice did not start listening")
	}
	return p
}

func (p *proc) do(t *testing.T, method, path, body string) (int, string) {
	t.Helper()
	return request(t, p.http, method, path, body)
}

// request sends one HTTP request to base+path and returns the status and
// body.
func request(t *testing.T, base, method, path, body string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(method, base+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// eventually polls until get returns want, or fails after deadline; it
// returns how long that took.
func eventually(t *testing.T, what string, deadline time.Duration, get func() string, want string) time.Duration {
	t.Helper()
	start := time.Now()
	for {
		got := get()
		if got == want {
			return time.Since(start)
		}
		if time.Since(start) > deadline {
			t.Fatalf("%s: got %q after %v, want %q", what, got, deadline, want)
		}
		time.Sleep(time.Millisecond)
	}
}

func price(t *testing.T, p *proc, id string) string {
	code, body := p.do(t, "GET", "/products/"+id, "")
	if code != http.StatusOK {
		return fmt.Sprint(code)
	}
	var v Product
	if err := json.Unmarshal([]byte(body), &v); err != nil {
		t.Fatal(err)
	}
	return fmt.Sprint(v.PriceCents)
}

// Two real processes over one real Redis and one SQLite file: a PUT on one
// is read through GET on the other, a DELETE and a tag invalidation are
// seen on both, and SIGTERM shuts both down cleanly, write-behind drained.
func TestTwoProcesses(t *testing.T) {
	if runtime.GOOS == "windows" {
		t.Skip("SIGTERM")
	}
	srv := redistest.Start(t)
	dir := t.TempDir()
	db := filepath.Join(dir, "shop.db")
	common := []string{"-redis", srv.Addr(), "-db", db, "-http", "127.0.0.1:0", "-require-redis"}
	a := startProc(t, append(common, "-node", "a", "-gossip-bind", "127.0.0.1:0")...)
	b := startProc(t, append(common, "-node", "b", "-gossip-bind", "127.0.0.1:0", "-gossip-join", a.gossip)...)
	for _, p := range []*proc{a, b} {
		eventually(t, "healthz", 10*time.Second, func() string { c, _ := p.do(t, "GET", "/healthz", ""); return fmt.Sprint(c) }, "200")
	}

	// Both hold p1 in L1; a PUT on a reaches b's L1.
	for _, p := range []*proc{a, b} {
		if got := price(t, p, "p1"); got != "19900" {
			t.Fatalf("p1's price %s, want 19900", got)
		}
	}
	if code, body := a.do(t, "PUT", "/products/p1", `{"name":"Espresso machine","category":"kitchen","price_cents":17900}`); code != http.StatusOK {
		t.Fatalf("PUT: %d %s", code, body)
	}
	lag := eventually(t, "b reads a's PUT", 2*time.Second, func() string { return price(t, b, "p1") }, "17900")
	t.Logf("b read a's PUT %v after it returned (HTTP round trips included)", lag)
	if code, _ := b.do(t, "GET", "/products/p1", ""); code != http.StatusOK {
		t.Fatal("GET p1")
	}

	// A DELETE on b: both answer 404.
	for _, p := range []*proc{a, b} {
		price(t, p, "p2")
	}
	if code, _ := b.do(t, "DELETE", "/products/p2", ""); code != http.StatusNoContent {
		t.Fatalf("DELETE: %d", code)
	}
	for _, p := range []*proc{a, b} {
		eventually(t, "p2 deleted", 2*time.Second, func() string { return price(t, p, "p2") }, "404")
	}

	// A discount of the kitchen category on a: one tag invalidation.
	if code, body := a.do(t, "POST", "/categories/kitchen/discount?percent=10", ""); code != http.StatusOK {
		t.Fatalf("discount: %d %s", code, body)
	}
	eventually(t, "b sees the discount", 2*time.Second, func() string { return price(t, b, "p1") }, "16110")

	// Write-behind: a PUT of stock on b is read on a at once, and reaches
	// the database by the time the processes have shut down.
	if code, body := b.do(t, "PUT", "/stock/p1", `{"count":7}`); code != http.StatusAccepted {
		t.Fatalf("PUT stock: %d %s", code, body)
	}
	eventually(t, "a reads the stock", 2*time.Second, func() string { _, body := a.do(t, "GET", "/stock/p1", ""); return strings.TrimSpace(body) }, `{"id":"p1","count":7}`)

	for _, p := range []*proc{a, b} {
		if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
			t.Fatal(err)
		}
	}
	for _, p := range []*proc{a, b} {
		select {
		case err := <-p.exited:
			if err != nil {
				t.Fatalf("exit after SIGTERM: %v\n%s", err, p.log.String())
			}
			p.exited <- nil // for the cleanup
		case <-time.After(20 * time.Second):
			t.Fatal("no exit 20s after SIGTERM")
		}
		if !strings.Contains(p.log.String(), "msg=stopped") {
			t.Errorf("no clean stop in the log:\n%s", p.log.String())
		}
	}
	s, err := openStore(context.Background(), db)
	if err != nil {
		t.Fatal(err)
	}
	defer s.close()
	var count int64
	if err := s.db.QueryRow(`SELECT count FROM stock WHERE id = 'p1'`).Scan(&count); err != nil || count != 7 {
		t.Fatalf("stock in the database: %d, %v; want 7", count, err)
	}
}
