package cluster

import (
	"testing"
	"time"
)

// With KeepJoining a replica whose seed is down starts alone at once and
// joins once the seed comes up; without it, Start fails after JoinTimeout.
func TestKeepJoining(t *testing.T) {
	probe := startNode(t, localConfig(testKey), "probe", func([]byte) {})
	seed := probe.Addr()
	if err := probe.Close(); err != nil { // its port is free now: the seed is down
		t.Fatal(err)
	}
	cfg := localConfig(testKey, seed)
	cfg.KeepJoining, cfg.JoinTimeout = true, time.Minute
	start := time.Now()
	b := startNode(t, cfg, "b", func([]byte) {})
	if took := time.Since(start); took > 10*time.Second {
		t.Errorf("Start with a dead seed took %v; want one attempt, not JoinTimeout", took)
	}
	if n := len(b.Members()); n != 1 {
		t.Fatalf("b has %d members, want itself alone", n)
	}
	a := localConfig(testKey)
	a.BindAddr = seed
	startNode(t, a, "a", func([]byte) {})
	waitFor(t, "b joins the seed once it is up", func() bool { return len(b.Members()) == 2 })
}
