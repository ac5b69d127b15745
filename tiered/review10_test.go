package tiered_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/strata-cache/strata/cluster"
	"github.com/strata-cache/strata/cluster/clustertest"
	"github.com/strata-cache/strata/internal/redistest"
	"github.com/strata-cache/strata/l2"
	"github.com/strata-cache/strata/tiered"
)

// review10DB is a tiny database for write-through tests.
type review10DB struct {
	mu    sync.Mutex
	rows  map[string]string
	loads int
}

func (d *review10DB) load(_ context.Context, k string) (string, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.loads++
	v, ok := d.rows[k]
	if !ok {
		return "", tiered.ErrNotFound
	}
	return v, nil
}

func (d *review10DB) write(_ context.Context, k, v string) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.rows[k] = v
	return nil
}

func (d *review10DB) loadCount() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.loads
}

// A second replica with a NodeID already in the cluster is refused at start
// when its join finds the name taken. Under the default startup policy
// (KeepJoining), a duplicate whose seeds did not answer at once starts
// alone, and the background join that later merges it into the cluster did
// not check: both replicas named "dup" ran, and memberlist kept them apart
// (each skips members of its own name), so neither heard the other's
// invalidations while both reported Trusted. Now the background join checks
// too: the later dup leaves the gossip cluster, logs an error, reports
// Health.DuplicateNodeID and stops trusting its L1 (alone, gossip vouches
// for nothing). What stays open: the first dup does not hear the second's
// writes over gossip (over pub/sub it does, and notices the twin); with
// gossip as the only channel its L1 copies of keys the refused replica
// writes live until L1.MaxTTL.
func TestReview10DuplicateNodeIDAfterBackgroundJoinIsRefused(t *testing.T) {
	ctx := context.Background()
	db := &review10DB{rows: map[string]string{"k": "v1"}}
	opts := tiered.Options[string]{TTL: time.Hour, Writer: db.write}

	a := newClient(t, tiered.Config{NodeID: "a", Gossip: gossipConfig()})
	dup1 := newClient(t, tiered.Config{NodeID: "dup", Gossip: gossipConfig(a.GossipAddr())})

	// The second dup's seed does not answer at its start (a network blip):
	// it starts alone and keeps joining in the background.
	faults := &clustertest.Faults{}
	faults.Cut(true)
	g := gossipConfig(a.GossipAddr())
	g.Transport = faults.Wrap
	dup2, err := tiered.NewClient(ctx, tiered.Config{NodeID: "dup", Gossip: g, Logger: quietLogger})
	if err != nil {
		t.Fatalf("NewClient of the second dup while its seed is cut: %v", err)
	}
	t.Cleanup(func() { _ = dup2.Close() })
	faults.Cut(false)
	redistest.WaitFor(t, 15*time.Second, func() bool { return dup2.Health().DuplicateNodeID },
		"the second dup's background join to find its name taken")
	if h := dup2.Health(); h.Trusted {
		t.Errorf("the refused dup: trusted %v; want it not to serve L1 on gossip's word", h.Trusted)
	}
	redistest.WaitFor(t, 10*time.Second, func() bool { return dup1.Health().Trusted }, "dup1 trusted")

	// The refused dup answers from the loader, never from an L1 it cannot
	// keep coherent.
	c2 := newCache(t, dup2, "items", opts)
	if v, err := c2.Get(ctx, "k", db.load); err != nil || v != "v1" {
		t.Fatalf("dup2 Get: %q %v", v, err)
	}
	_ = db.write(ctx, "k", "v2")
	if v, _ := c2.Get(ctx, "k", db.load); v != "v2" {
		t.Errorf("the refused dup served %q from L1; the database has v2", v)
	}
}

// RequireGossip's doc: "makes NewClient fail when none of Gossip.Join
// answers within Gossip.JoinTimeout, instead of starting alone". With
// Gossip.KeepJoining also set, startBus keeps KeepJoining (it ORs it with
// !RequireGossip) and NewClient starts alone: RequireGossip is silently
// ignored.
func TestReview10RequireGossipIgnoredWithKeepJoining(t *testing.T) {
	probe := newClient(t, tiered.Config{NodeID: "probe", Gossip: gossipConfig()})
	seed := probe.GossipAddr()
	if err := probe.Close(); err != nil {
		t.Fatal(err)
	}
	g := gossipConfig(seed)
	g.JoinTimeout = 300 * time.Millisecond
	g.KeepJoining = true
	c, err := tiered.NewClient(context.Background(), tiered.Config{NodeID: "strict", Logger: quietLogger, RequireGossip: true, Gossip: g})
	if c != nil {
		defer c.Close()
	}
	if !errors.Is(err, cluster.ErrJoin) {
		t.Errorf("NewClient with RequireGossip (and Gossip.KeepJoining) and a dead seed: err %v, want cluster.ErrJoin", err)
	}
}

// Guarantee 10: "a shard that comes back never serves a value that was
// invalidated while it was away". A single node that was out of service
// while InvalidateTags ran (it returned l2.ErrUnavailable, after dropping
// L1 and publishing) comes back with the tagged entry still in it: nothing
// recorded the missed tag deletion (Set and Delete record their keys for
// the replay; a pattern forces a flush), and the replica serves the
// invalidated value from L2 for the rest of its TTL.
func TestReview10TagInvalidationMissedByAnOutServerIsServedAfterItsReturn(t *testing.T) {
	review10InvalidationWhileOut(t, "InvalidateTags", func(ctx context.Context, c *tiered.Cache[string]) error { return c.InvalidateTags(ctx, "t") })
}

// The same with Clear: its version bump fails on the out server, and the
// namespace's old entries serve again when it returns.
func TestReview10ClearMissedByAnOutServerIsServedAfterItsReturn(t *testing.T) {
	review10InvalidationWhileOut(t, "Clear", func(ctx context.Context, c *tiered.Cache[string]) error { return c.Clear(ctx) })
}

// The same with InvalidatePattern, for comparison.
func TestReview10PatternMissedByAnOutServerIsServedAfterItsReturn(t *testing.T) {
	review10InvalidationWhileOut(t, "InvalidatePattern", func(ctx context.Context, c *tiered.Cache[string]) error { return c.InvalidatePattern(ctx, "k*") })
}

func review10InvalidationWhileOut(t *testing.T, what string, invalidate func(context.Context, *tiered.Cache[string]) error) {
	ctx := context.Background()
	srv := redistest.Start(t)
	c := newClient(t, tiered.Config{Redis: l2.Config{Addrs: []string{srv.Addr()}}})
	db := &review10DB{rows: map[string]string{"k": "v1"}}
	cache := newCache(t, c, "items", tiered.Options[string]{TTL: time.Hour,
		Tags: func(string, string) []string { return []string{"t"} }})
	if v, err := cache.Get(ctx, "k", db.load); err != nil || v != "v1" {
		t.Fatalf("Get: %q %v", v, err)
	}
	serving := func(want bool) func() bool {
		return func() bool { h := c.L2Health(); return len(h) == 1 && h[0].Serving == want }
	}
	srv.Pause()
	redistest.WaitFor(t, 10*time.Second, serving(false), "the server out of service")
	_ = db.write(ctx, "k", "v2")
	err := invalidate(ctx, cache)
	t.Logf("%s while the server is out: %v", what, err)
	srv.Resume()
	redistest.WaitFor(t, 10*time.Second, serving(true), "the server back in service")
	v, info, err := cache.GetWithInfo(ctx, "k", db.load)
	if err != nil || v != "v2" {
		t.Errorf("after the server's return: Get = %q from %v (%v); %s ran while it was away, the database has v2", v, info.Tier, err, what)
	}
}
