package tiered_test

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/strata-cache/strata/internal/redistest"
	"github.com/strata-cache/strata/internal/wbsink"
	"github.com/strata-cache/strata/l2"
	"github.com/strata-cache/strata/tiered"
)

// crashReplica is a wbcrash process: a write-behind replica driven over
// its stdin and stdout.
type crashReplica struct {
	cmd   *exec.Cmd
	in    io.WriteCloser
	lines chan string
}

func startCrashReplica(t *testing.T, bin, addr, node, ns string, blockAfter int, written bool) *crashReplica {
	t.Helper()
	cmd := exec.Command(bin, "-redis", addr, "-node", node, "-ns", ns, "-block-after", fmt.Sprint(blockAfter), fmt.Sprint("-written=", written))
	in, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	r := &crashReplica{cmd: cmd, in: in, lines: make(chan string, 1000)}
	go func() {
		defer close(r.lines)
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			r.lines <- sc.Text()
		}
	}()
	t.Cleanup(func() { r.kill() })
	if line := r.next(t, 30*time.Second); line != "ready" {
		t.Fatalf("replica said %q, want ready", line)
	}
	return r
}

func (r *crashReplica) next(t *testing.T, timeout time.Duration) string {
	t.Helper()
	select {
	case l, ok := <-r.lines:
		if !ok {
			t.Fatal("replica exited")
		}
		return l
	case <-time.After(timeout):
		t.Fatal("replica silent")
	}
	return ""
}

func (r *crashReplica) kill() {
	if r.cmd.Process != nil {
		_ = r.cmd.Process.Signal(syscall.SIGKILL)
		_ = r.cmd.Wait()
	}
}

// The crash test: a replica acknowledges writes and is SIGKILLed at a
// random point, often while its Flush is blocked mid-batch; a second
// replica then claims what it left and flushes it (half the time the dead
// Flush had written its batch, which is then delivered again). The database ends with
// every acknowledged write's last value (or a later write of the key that
// was sent but not acknowledged): nothing acknowledged is lost, and
// duplicates are only redeliveries. Twenty kills at random points in one
// run.
func TestWriteBehindSurvivesKilledReplica(t *testing.T) {
	waitsMostly(t)
	if testing.Short() {
		t.Skip("starts processes")
	}
	bin := filepath.Join(t.TempDir(), "wbcrash")
	if out, err := exec.Command("go", "build", "-o", bin, "github.com/strata-cache/strata/internal/wbcrash").CombinedOutput(); err != nil {
		t.Fatalf("build wbcrash: %v\n%s", err, out)
	}
	srv := redistest.Start(t)
	seed := uint64(time.Now().UnixNano())
	if s := os.Getenv("WB_SEED"); s != "" { // rerun a failure: WB_SEED=<seed printed>
		if _, err := fmt.Sscan(s, &seed); err != nil {
			t.Fatal(err)
		}
	}
	t.Logf("seed %d (WB_SEED reruns it)", seed)
	rng := rand.New(rand.NewPCG(seed, 2))
	ctx := context.Background()
	var acked, flushed, duplicates, midFlush, claimed int
	for round := range 20 {
		ns := fmt.Sprint("crash", round)
		blockAfter := rng.IntN(4)
		// Half the blocked Flush calls wrote their batch first: killed
		// between the database's write and the acknowledgement.
		a := startCrashReplica(t, bin, srv.Addr(), "a", ns, blockAfter, rng.IntN(2) == 0)
		lastAcked := map[string]string{}
		sent := map[string][]string{} // per key, the values sent, in order
		writes := 5 + rng.IntN(40)
		killAt := rng.IntN(writes + 1)
		blocked := false
		for i := range writes {
			if i == killAt {
				break
			}
			k, v := fmt.Sprint("k", rng.IntN(8)), fmt.Sprint(round, "-", i)
			sent[k] = append(sent[k], v)
			if _, err := fmt.Fprintln(a.in, "set", k, v); err != nil {
				t.Fatal(err)
			}
			for {
				line := a.next(t, 30*time.Second)
				if strings.HasPrefix(line, "flushing") {
					blocked = true
					continue
				}
				if line != "ack "+k+" "+v {
					t.Fatalf("replica answered %q to set %s %s", line, k, v)
				}
				lastAcked[k] = v
				acked++
				break
			}
		}
		// One more write on its way when the kill comes: it may or may not
		// land.
		k, v := fmt.Sprint("k", rng.IntN(8)), fmt.Sprint(round, "-late")
		sent[k] = append(sent[k], v)
		_, _ = fmt.Fprintln(a.in, "set", k, v)
		select { // let a blocked flush begin, sometimes
		case line := <-a.lines:
			blocked = blocked || strings.HasPrefix(line, "flushing")
		case <-time.After(time.Duration(rng.IntN(30)) * time.Millisecond):
		}
		a.kill()
		if blocked {
			midFlush++
		}

		// Replica b claims what a left and flushes it.
		sink := wbsink.New(srv.Client(t), ns)
		// Odd rounds restart a under its own NodeID: it re-reads its own
		// pending list first; even rounds start another replica, which
		// claims it.
		second := map[bool]string{true: "a", false: "b"}[round%2 == 1]
		b := newClient(t, tiered.Config{NodeID: second, Redis: l2.Config{Addrs: []string{srv.Addr()}}})
		cache := newCache(t, b, ns, tiered.Options[string]{TTL: time.Hour, WriteBehind: &tiered.WriteBehind[string]{
			Flush: sink.Flush, BatchSize: 5, Interval: 5 * time.Millisecond, ClaimIdle: 200 * time.Millisecond}})
		var got map[string]string
		ok := func() bool {
			var err error
			if got, err = sink.Values(ctx); err != nil {
				return false
			}
			for k, v := range lastAcked {
				if !landedAtOrAfter(sent[k], v, got[k]) {
					return false
				}
			}
			return cache.Stats().WriteBehind.Pending == 0 && cache.Stats().WriteBehind.InFlight == 0
		}
		redistest.WaitFor(t, 30*time.Second, ok, "round %d: every acknowledged write flushed (acked %v, sink %v)", round, lastAcked, got)
		st := cache.Stats().WriteBehind
		if st.LostByTrim != 0 {
			t.Errorf("round %d: %d writes lost by trim", round, st.LostByTrim)
		}
		if second == "a" && st.Claimed != 0 {
			t.Errorf("round %d: the restarted replica claimed %d writes; it should have re-read its own", round, st.Claimed)
		}
		claimed += int(st.Claimed)
		total, dup, err := sink.Deliveries(ctx)
		if err != nil {
			t.Fatal(err)
		}
		flushed, duplicates = flushed+total, duplicates+dup
		if err := b.Close(); err != nil {
			t.Fatal(err)
		}
	}
	t.Logf("20 kills (%d while a Flush was blocked): %d writes acknowledged, %d deliveries to the sink, %d of them redeliveries, %d claimed by another replica, 0 lost",
		midFlush, acked, flushed, duplicates, claimed)
	if midFlush == 0 {
		t.Error("no kill came while a Flush was blocked")
	}
}

// landedAtOrAfter reports whether got is v or a value sent after it.
func landedAtOrAfter(sent []string, v, got string) bool {
	for i, s := range sent {
		if s == v {
			for _, later := range sent[i:] {
				if later == got {
					return true
				}
			}
			return false
		}
	}
	return false
}
