package cluster

import (
	"testing"
	"time"
)

// freeAddr returns a loopback address a node just released.
func review10FreeAddr(t *testing.T) string {
	t.Helper()
	probe := startNode(t, localConfig(testKey), "probe", func([]byte) {})
	addr := probe.Addr()
	if err := probe.Close(); err != nil {
		t.Fatal(err)
	}
	return addr
}

// The docs say "every replica may share one seed list; listing its own
// address is harmless" (doc.go, Config.Join). With KeepJoining (the
// default under tiered unless RequireGossip), it is not: the first attempt
// reaches the replica itself, which counts as a successful join, so no
// background join starts, and a replica that started while its peers were
// unreachable stays a cluster of one for good (a split gossip channel that
// never heals, although KeepJoining is there for exactly this).
func TestReview10KeepJoiningDefeatedBySelfInSeedList(t *testing.T) {
	seed, self := review10FreeAddr(t), review10FreeAddr(t)
	cfg := localConfig(testKey, seed, self) // one seed list for every replica
	cfg.BindAddr, cfg.KeepJoining = self, true
	b := startNode(t, cfg, "b", func([]byte) {})
	if n := len(b.Members()); n != 1 {
		t.Fatalf("b has %d members, want itself alone", n)
	}
	a := localConfig(testKey)
	a.BindAddr = seed
	startNode(t, a, "a", func([]byte) {})
	deadline := time.Now().Add(10 * time.Second)
	for len(b.Members()) != 2 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if n := len(b.Members()); n != 2 {
		t.Errorf("10 s after its seed came up, b (KeepJoining, its own address in the shared seed list) has %d member(s): it never joined", n)
	}
}
