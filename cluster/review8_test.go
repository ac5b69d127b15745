package cluster

import (
	"errors"
	"testing"
	"time"
)

// review8State returns the state in which n knows the member name.
func review8State(n *Node, name string) MemberState {
	for _, m := range n.MemberStates() {
		if m.Name == name {
			return m.State
		}
	}
	return ""
}

// TestReview8RestartAfterGracefulClose shows whether a replica that left
// through Close can start again at once under its name at a new address
// (a fast rolling restart): ErrNameTaken must not fire.
func TestReview8RestartAfterGracefulClose(t *testing.T) {
	a := startNode(t, localConfig(nil), "a", func([]byte) {})
	for i := range 5 {
		b, err := Start(localConfig(nil, a.Addr()), "b", func([]byte) {}, nil)
		if err != nil {
			t.Fatalf("restart %d of b right after its Close: %v", i, err)
		}
		waitFor(t, "a sees b alive", func() bool { return review8State(a, "b") == MemberAlive })
		if err := b.Close(); err != nil {
			t.Fatal(err)
		}
	}
}

// TestReview8RestartAfterCrashOnceDead shows ErrNameTaken's documentation
// ("A replica restarted at a new address under its old name meets it too
// until the cluster declares the old address dead") against what happens:
// after a crash (memberlist shut down without leaving), once the others
// show the old node as dead, a restart under the name at a new address
// still fails, for DeadNodeReclaimTime (GossipToTheDeadTime) more.
func TestReview8RestartAfterCrashOnceDead(t *testing.T) {
	a := startNode(t, localConfig(nil), "a", func([]byte) {})
	c := startNode(t, localConfig(nil, a.Addr()), "c", func([]byte) {})
	b, err := Start(localConfig(nil, a.Addr()), "b", func([]byte) {}, nil)
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, "b alive", func() bool { return review8State(a, "b") == MemberAlive && review8State(c, "b") == MemberAlive })
	_ = b.impl.ml.Shutdown()      // a crash: no leave, no announcement
	defer b.impl.stopGoroutines() // Close would call Leave, which panics after Shutdown
	waitFor(t, "a and c show b dead", func() bool { return review8State(a, "b") == MemberDead && review8State(c, "b") == MemberDead })
	declared := time.Now()
	b2, err := Start(localConfig(nil, a.Addr()), "b", func([]byte) {}, nil)
	if err == nil {
		_ = b2.Close()
		return
	}
	if errors.Is(err, ErrNameTaken) {
		t.Errorf("restart of b at a new address %v after the cluster declared the old one dead: %v "+
			"(ErrNameTaken's doc says it is met only until then)", time.Since(declared).Round(time.Millisecond), err)
	} else {
		t.Fatal(err)
	}
}
