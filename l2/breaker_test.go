package l2

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/strata-cache/strata/internal/redistest"
)

// Issue 10, item 5: a breaker always recovers. A paused Redis Cluster master
// trips its breaker; once it answers again, the half-open probe needs a new
// connection, whose handshake (HELLO, CLIENT SETINFO) go-redis sends through
// the same hooks. Refused by the breaker that holds its one probe slot, the
// handshake failed the probe, and the breaker reopened for good (a Cluster
// has no health watch to reset it).
func TestBreakerRecoversThroughNewConnections(t *testing.T) {
	ctx := context.Background()
	c := redistest.StartCluster(t, 3)
	s, err := Open(Config{ClusterAddrs: c.Addrs(), Timeout: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	if err := s.Set(ctx, "ns", "k", []byte("v"), time.Hour); err != nil {
		t.Fatal(err)
	}
	raw := c.Client(t)
	master, err := raw.MasterForKey(ctx, s.Key("ns", "k"))
	if err != nil {
		t.Fatal(err)
	}
	var paused *redistest.Server
	for _, m := range c.Masters {
		if m.Addr() == master.Options().Addr {
			paused = m
		}
	}
	if paused == nil {
		t.Fatalf("no master at %s", master.Options().Addr)
	}
	paused.Pause()
	redistest.WaitFor(t, 10*time.Second, func() bool {
		_, err := s.Get(ctx, "ns", "k")
		return errors.Is(err, ErrUnavailable) && strings.Contains(err.Error(), "circuit breaker open")
	}, "the paused master's breaker opens")
	paused.Resume()
	// One cool-down (1 s) plus one probe; the bound leaves room for -race.
	redistest.WaitFor(t, 5*time.Second, func() bool {
		v, err := s.Get(ctx, "ns", "k")
		return err == nil && string(v) == "v"
	}, "the master is served again once it answers")
}

// Issue 10, item 4: Server names where a key goes exactly as the commands'
// routing does, and MarkDirty fences a named server only for keys routed to
// it here.
func TestMarkDirtyFencesOnlyTheNamedServer(t *testing.T) {
	servers := redistest.StartShards(t, 3)
	s := openOn(t, servers...)
	keys := []string{"}x", "~z", "a}b", "plain", "k1", "k2", "k3", "k4", "k5", "k6"}
	for _, k := range keys {
		_, at, _ := s.route("ns", k)
		if got, want := s.Server(k), s.set.nodes[at].addr; got != want {
			t.Fatalf("Server(%q) = %s, route says %s", k, got, want)
		}
	}
	k := "plain"
	_, at, _ := s.route("ns", k)
	other := s.set.nodes[(at+1)%3].addr
	s.MarkDirty("ns", other, k) // a write of k failed on a server k does not go to here
	for _, h := range s.Health() {
		if !h.Serving {
			t.Fatalf("MarkDirty naming %s fenced %s (%s)", other, h.Addr, h.Reason)
		}
	}
	s.MarkDirty("ns", s.set.nodes[at].addr, k)
	if h := s.Health()[at]; h.Serving {
		t.Fatalf("MarkDirty naming k's own server left it serving")
	}
}
