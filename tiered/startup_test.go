package tiered_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/strata-cache/strata/cluster"
	"github.com/strata-cache/strata/internal/redistest"
	"github.com/strata-cache/strata/l2"
	"github.com/strata-cache/strata/tiered"
)

// The startup policy, the same for both tiers behind L1: by default a
// replica starts without an unreachable Redis or gossip seed and picks
// them up later; RequireL2 and RequireGossip make NewClient fail instead,
// naming what did not answer.
func TestStartupPolicy(t *testing.T) {
	ctx := context.Background()
	srv := redistest.Start(t)
	dead := srv.Addr()
	srv.Kill()

	start := time.Now()
	c := newClient(t, tiered.Config{Redis: l2.Config{Addrs: []string{dead}}}) // degrades
	if h := c.Health(); len(h.Servers) != 1 {
		t.Errorf("health %+v: want the dead server listed", h.Servers)
	}
	// With its only channel's server found down, NewClient does not wait
	// for that channel to vouch (it used to wait a second for nothing).
	if took := time.Since(start); took >= time.Second {
		t.Errorf("NewClient with a dead server and no gossip took %v: it waited for a channel that cannot vouch", took)
	}
	_, err := tiered.NewClient(ctx, tiered.Config{Logger: quietLogger, RequireL2: true, Redis: l2.Config{Addrs: []string{dead}}})
	if err == nil || !strings.Contains(err.Error(), dead) {
		t.Errorf("NewClient with RequireL2 and a dead server: %v, want an error naming %s", err, dead)
	}
	up := redistest.Start(t)
	newClient(t, tiered.Config{RequireL2: true, Redis: l2.Config{Addrs: []string{up.Addr()}}}) // answers: starts

	seedNode := newClient(t, tiered.Config{NodeID: "probe", Gossip: gossipConfig()})
	seed := seedNode.GossipAddr()
	if err := seedNode.Close(); err != nil {
		t.Fatal(err)
	}
	start = time.Now()
	alone := newClient(t, tiered.Config{NodeID: "alone", Gossip: gossipConfig(seed)}) // degrades
	if took := time.Since(start); took > 5*time.Second || len(alone.Health().Members) != 1 {
		t.Errorf("NewClient with a dead seed took %v with members %v; want a quick start alone", took, alone.Health().Members)
	}
	strict := gossipConfig(seed)
	strict.JoinTimeout = 300 * time.Millisecond
	if _, err := tiered.NewClient(ctx, tiered.Config{NodeID: "strict", Logger: quietLogger, RequireGossip: true, Gossip: strict}); !errors.Is(err, cluster.ErrJoin) {
		t.Errorf("NewClient with RequireGossip and a dead seed: %v, want cluster.ErrJoin", err)
	}
}

// A PanicError's message is one line: a handler returning err.Error() to
// its client shows no stack; the stack stays in the field.
func TestPanicErrorIsOneLine(t *testing.T) {
	c := newClient(t, tiered.Config{})
	cache := newCache(t, c, "users", tiered.Options[string]{})
	_, err := cache.Get(context.Background(), "k", func(context.Context, string) (string, error) { panic("boom") })
	var pe *tiered.PanicError
	if !errors.As(err, &pe) || strings.Contains(err.Error(), "\n") || len(pe.Stack) == 0 {
		t.Errorf("err %q (stack %d bytes): want one line, the stack in the field", err, len(pe.Stack))
	}
}

// Over pub/sub alone nothing refuses a duplicate NodeID at start (gossip
// does): the two find each other by their heartbeats, and Health says so.
func TestDuplicateNodeIDOverPubSubIsReported(t *testing.T) {
	srv := redistest.Start(t)
	cfg := tiered.Config{NodeID: "twin", Redis: l2.Config{Addrs: []string{srv.Addr()}}}
	a, b := newClient(t, cfg), newClient(t, cfg)
	for _, c := range []*tiered.Client{a, b} {
		redistest.WaitFor(t, 10*time.Second, func() bool { return c.Health().DuplicateNodeID }, "the duplicate reported")
	}
	if c := newClient(t, tiered.Config{NodeID: "single", Redis: l2.Config{Addrs: []string{srv.Addr()}}}); c.Health().DuplicateNodeID {
		t.Error("a unique NodeID reported as a duplicate")
	}
}
