package clustertest_test

import (
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/memberlist"
	"go.uber.org/goleak"

	"github.com/strata-cache/strata/cluster"
	"github.com/strata-cache/strata/cluster/clustertest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// pair starts a and b (b behind faults), joined.
func pair(t *testing.T, faults *clustertest.Faults, got *atomic.Int64) (a, b *cluster.Node) {
	t.Helper()
	cfg := cluster.Config{BindAddr: "127.0.0.1:0", Profile: cluster.ProfileLocal}
	a, err := cluster.Start(cfg, "a", func([]byte) {}, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = a.Close() })
	cfg.Join = []string{a.Addr()}
	cfg.Transport = faults.Wrap
	b, err = cluster.Start(cfg, "b", func([]byte) { got.Add(1) }, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b.Close() })
	return a, b
}

func TestCutLosesMessagesUntilLifted(t *testing.T) {
	faults := &clustertest.Faults{}
	var got atomic.Int64
	a, _ := pair(t, faults, &got)

	faults.Cut(true)
	before := faults.Dropped()
	if err := a.Broadcast([]byte("lost")); err != nil {
		t.Fatal(err)
	}
	// The direct send and the gossip retransmissions all reach b's
	// transport and are dropped there.
	waitFor(t, "the broadcast's packets to be dropped", func() bool { return faults.Dropped() >= before+3 })
	if n := got.Load(); n != 0 {
		t.Fatalf("b received %d messages through a cut", n)
	}

	faults.Cut(false)
	waitFor(t, "a message after the cut", func() bool {
		_ = a.Broadcast([]byte("after"))
		return got.Load() > 0
	})
}

func TestLossAndDelay(t *testing.T) {
	faults := &clustertest.Faults{}
	var got atomic.Int64
	a, _ := pair(t, faults, &got)

	faults.SetLoss(1)
	before := faults.Dropped()
	if err := a.Broadcast([]byte("lost")); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "packets lost", func() bool { return faults.Dropped() > before })

	faults.SetLoss(0)
	faults.SetDelay(50 * time.Millisecond)
	start := time.Now()
	waitFor(t, "a delayed message", func() bool {
		_ = a.Broadcast([]byte("late"))
		return got.Load() > 0
	})
	if d := time.Since(start); d < 50*time.Millisecond {
		t.Fatalf("message arrived after %v, before the 50ms delay", d)
	}
}

func TestTransportReturningNilIsInvalid(t *testing.T) {
	_, err := cluster.Start(cluster.Config{BindAddr: "127.0.0.1:0",
		Transport: func(memberlist.NodeAwareTransport) memberlist.NodeAwareTransport { return nil }},
		"a", func([]byte) {}, nil)
	if !errors.Is(err, cluster.ErrInvalidConfig) {
		t.Fatalf("Start = %v, want ErrInvalidConfig", err)
	}
}
