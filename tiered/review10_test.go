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

// The docs say a second replica with a NodeID already in the cluster is
// refused at start (Health.Conflicts: "its NewClient fails with
// cluster.ErrNameTaken"; README: "NewClient refusing a NodeID already in the
// cluster"; httpservice: "a second replica with the same ID is refused at
// start"). Under the default startup policy (KeepJoining), a duplicate whose
// seeds did not answer at once starts alone, and the background join that
// later merges it into the cluster does not check for the conflict: both
// replicas named "dup" run. memberlist then keeps them apart (each skips
// members of its own name, the others refuse the second address), so on the
// gossip channel neither ever hears the other's invalidations: the second
// dup's Set leaves the first dup's L1 stale for good, while both report
// Trusted.
func TestReview10DuplicateNodeIDAfterBackgroundJoinIsNotRefused(t *testing.T) {
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
	redistest.WaitFor(t, 15*time.Second, func() bool { return dup2.Health().Conflicts.Count > 0 },
		"the second dup's background join to reach the cluster")
	// dup1 is the replica whose L1 this test reads: it must be trusted
	// (serving L1). The others' states are logged.
	redistest.WaitFor(t, 10*time.Second, func() bool { return dup1.Health().Trusted }, "dup1 trusted")
	for name, c := range map[string]*tiered.Client{"a": a, "dup1": dup1, "dup2": dup2} {
		h := c.Health()
		t.Logf("%s: trusted %v, members %v, conflicts %d", name, h.Trusted, h.Members, h.Conflicts.Count)
	}

	c1 := newCache(t, dup1, "items", opts)
	c2 := newCache(t, dup2, "items", opts)
	if v, err := c1.Get(ctx, "k", db.load); err != nil || v != "v1" {
		t.Fatalf("dup1 Get: %q %v", v, err)
	}
	loads := db.loadCount()
	if v, _ := c1.Get(ctx, "k", db.load); v != "v1" || db.loadCount() != loads {
		t.Fatalf("dup1 does not serve k from L1 (trusted %v)", dup1.Health().Trusted)
	}
	if err := c2.Set(ctx, "k", "v2"); err != nil {
		t.Fatal(err)
	}
	if !eventually(5*time.Second, func() bool {
		v, _ := c1.Get(ctx, "k", db.load)
		return v == "v2"
	}) {
		v, _ := c1.Get(ctx, "k", db.load)
		t.Errorf("5 s after the second dup's Set, the first dup still serves %q from L1 (db has v2); "+
			"the duplicate NodeID was not refused: dup2 conflicts %+v, dup1 trusted %v",
			v, dup2.Health().Conflicts, dup1.Health().Trusted)
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

// Write-through (Options.Writer, the httpservice PUT pattern) does not order
// the database write with the L2 write across replicas: A's Writer commits
// x, B's Set commits y and writes y to L2, then A's Set writes x to L2. The
// database holds y; every replica serves x until the TTL (10 minutes in
// httpservice). Nothing in Options.Writer's doc or the example warns of it.
func TestReview10WriteThroughRaceLeavesCacheAndDatabaseApart(t *testing.T) {
	ctx := context.Background()
	srv := redistest.Start(t)
	db := &review10DB{rows: map[string]string{}}
	committed, release := make(chan struct{}), make(chan struct{})
	gated := func(ctx context.Context, k, v string) error {
		err := db.write(ctx, k, v)
		if v == "x" {
			close(committed)
			<-release
		}
		return err
	}
	a := newClient(t, tiered.Config{NodeID: "a", Redis: l2.Config{Addrs: []string{srv.Addr()}}})
	b := newClient(t, tiered.Config{NodeID: "b", Redis: l2.Config{Addrs: []string{srv.Addr()}}})
	opts := tiered.Options[string]{TTL: time.Hour, Writer: gated}
	ca, cb := newCache(t, a, "items", opts), newCache(t, b, "items", opts)
	done := make(chan error, 1)
	go func() { done <- ca.Set(ctx, "k", "x") }()
	<-committed
	if err := cb.Set(ctx, "k", "y"); err != nil {
		t.Fatal(err)
	}
	close(release)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	db.mu.Lock()
	truth := db.rows["k"]
	db.mu.Unlock()
	for name, c := range map[string]*tiered.Cache[string]{"a": ca, "b": cb} {
		if !eventually(2*time.Second, func() bool { v, _ := c.Get(ctx, "k", db.load); return v == truth }) {
			v, _ := c.Get(ctx, "k", db.load)
			t.Errorf("replica %s serves %q after both Sets returned; the database holds %q", name, v, truth)
		}
	}
}
