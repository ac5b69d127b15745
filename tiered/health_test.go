package tiered_test

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/strata-cache/strata/cluster"
	"github.com/strata-cache/strata/internal/redistest"
	"github.com/strata-cache/strata/l2"
	"github.com/strata-cache/strata/tiered"
)

// Health on a single node: its server, the pub/sub channel vouching, and a
// server out of service while it is paused.
func TestHealthSingleNode(t *testing.T) {
	srv := redistest.Start(t)
	c := newClient(t, tiered.Config{NodeID: "a", Redis: l2.Config{Addrs: []string{srv.Addr()}}})
	redistest.WaitFor(t, 10*time.Second, func() bool {
		h := c.Health()
		return h.Trusted && len(h.Channels) == 1 && h.Channels[0].Name == "pubsub" && h.Channels[0].Vouches &&
			!h.Channels[0].LastHeard.IsZero() && len(h.Servers) == 1 && h.Servers[0].Serving
	}, "a healthy single node: its server serving, pub/sub vouching")
	if h := c.Health(); h.NodeID != "a" || h.LastFlush != nil || len(h.Members) != 0 {
		t.Errorf("health %+v: want node a, no flush, no gossip members", h)
	}
	srv.Pause()
	redistest.WaitFor(t, 10*time.Second, func() bool {
		h := c.Health()
		return len(h.Servers) == 1 && !h.Servers[0].Serving && h.Servers[0].Reason != ""
	}, "the paused server out of service, with its reason")
	srv.Resume()
}

// Health with gossip: both members, and the gossip channel.
func TestHealthGossip(t *testing.T) {
	a := newClient(t, tiered.Config{NodeID: "a", Gossip: &cluster.Config{BindAddr: "127.0.0.1:0", Profile: cluster.ProfileLocal}})
	_ = newClient(t, tiered.Config{NodeID: "b", Gossip: &cluster.Config{BindAddr: "127.0.0.1:0", Profile: cluster.ProfileLocal,
		Join: []string{a.GossipAddr()}}})
	redistest.WaitFor(t, 10*time.Second, func() bool {
		h := a.Health()
		return len(h.Members) == 2 && len(h.Channels) == 1 && h.Channels[0].Name == "gossip" && h.Channels[0].Vouches
	}, "both members, gossip vouching")
}

// serversAre reports whether the servers are addrs, in order, each serving or
// not as want says.
func serversAre(servers []l2.ServerHealth, addrs []string, want func(addr string) bool) bool {
	if len(servers) != len(addrs) {
		return false
	}
	for i, s := range servers {
		if s.Addr != addrs[i] || s.Serving != want(s.Addr) || s.Serving != (s.Reason == "") {
			return false
		}
	}
	return true
}

// Health on a Ring: a paused shard alone is out of service, with its
// reason, and serves again once resumed.
func TestHealthRingShardPaused(t *testing.T) {
	shards := redistest.StartShards(t, 3)
	var addrs []string
	for _, s := range shards {
		addrs = append(addrs, s.Addr())
	}
	c := newClient(t, tiered.Config{NodeID: "a", Redis: l2.Config{Addrs: addrs}})
	all := func(string) bool { return true }
	redistest.WaitFor(t, 10*time.Second, func() bool { return serversAre(c.Health().Servers, addrs, all) },
		"every shard serving: %+v", c.Health().Servers)
	for _, s := range c.Health().Servers {
		if !s.Watched || s.Breaker != "closed" {
			t.Errorf("shard %+v: want watched, breaker closed", s)
		}
	}
	paused := shards[1].Addr()
	shards[1].Pause()
	redistest.WaitFor(t, 10*time.Second, func() bool {
		return serversAre(c.Health().Servers, addrs, func(a string) bool { return a != paused })
	}, "the paused shard alone out of service, with a reason: %+v", c.Health().Servers)
	shards[1].Resume()
	redistest.WaitFor(t, 10*time.Second, func() bool { return serversAre(c.Health().Servers, addrs, all) },
		"the resumed shard serving again: %+v", c.Health().Servers)
	// Its return moved keys back to it: L1 was dropped, and Health and
	// Stats say so.
	redistest.WaitFor(t, 10*time.Second, func() bool { return c.Stats().RouteFlushes > 0 }, "the route flush counted")
	if f := c.Health().LastFlush; f == nil || !strings.HasPrefix(f.Reason, "L2 routing changed: ") || f.At.IsZero() {
		t.Errorf("last flush %+v, want the route change", f)
	}
}

// Health with a caller's own client: its server, PINGed (no breaker, not
// watched by Strata).
func TestHealthCallerClient(t *testing.T) {
	srv := redistest.Start(t)
	c := newClient(t, tiered.Config{NodeID: "a", Redis: l2.Config{Client: srv.Client(t)}})
	h := c.Health()
	if len(h.Servers) != 1 || h.Servers[0] != (l2.ServerHealth{Addr: srv.Addr(), Serving: true}) {
		t.Errorf("servers %+v, want %s serving, no breaker, not watched", h.Servers, srv.Addr())
	}
}

// gossipConfig joins seeds on loopback.
func gossipConfig(seeds ...string) *cluster.Config {
	return &cluster.Config{BindAddr: "127.0.0.1:0", Profile: cluster.ProfileLocal, Join: seeds}
}

// member returns the member named name in h.
func member(h tiered.Health, name string) (cluster.Member, bool) {
	for _, m := range h.Members {
		if m.Name == name {
			return m, true
		}
	}
	return cluster.Member{}, false
}

// Health with gossip members leaving: a member's Close shows it as left,
// with its address, while the others stay alive.
func TestHealthMembersLeaving(t *testing.T) {
	a := newClient(t, tiered.Config{NodeID: "a", Gossip: gossipConfig()})
	b := newClient(t, tiered.Config{NodeID: "b", Gossip: gossipConfig(a.GossipAddr())})
	c := newClient(t, tiered.Config{NodeID: "c", Gossip: gossipConfig(a.GossipAddr())})
	redistest.WaitFor(t, 10*time.Second, func() bool {
		h := a.Health()
		for _, name := range []string{"a", "b", "c"} {
			if m, _ := member(h, name); m.State != cluster.MemberAlive || m.Since.IsZero() {
				return false
			}
		}
		return len(h.Members) == 3
	}, "three members alive: %+v", a.Health().Members)
	cAddr := c.GossipAddr()
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	for _, observer := range []*tiered.Client{a, b} {
		redistest.WaitFor(t, 10*time.Second, func() bool {
			m, _ := member(observer.Health(), "c")
			return m.State == cluster.MemberLeft && m.Addr == cAddr
		}, "c shown as left: %+v", observer.Health().Members)
	}
	if m, _ := member(a.Health(), "b"); m.State != cluster.MemberAlive {
		t.Errorf("b after c left: %+v, want alive", m)
	}
}

// Two replicas with one NodeID: nothing refuses the second at start (the
// gossip join succeeds), so the conflict shows in both Healths, with both
// addresses, and is logged at WARN.
func TestHealthDuplicateNodeIDConflict(t *testing.T) {
	logs := &logRecorder{}
	a := newClient(t, tiered.Config{NodeID: "dup", Gossip: gossipConfig(), Logger: slog.New(logs)})
	if h := a.Health(); h.Conflicts.Count != 0 || h.Conflicts.Last != nil {
		t.Fatalf("conflicts before a duplicate: %+v", h.Conflicts)
	}
	// The second replica named "dup" refuses to start: it would run with
	// its gossip refused by the others.
	b, err := tiered.NewClient(context.Background(), tiered.Config{NodeID: "dup", Gossip: gossipConfig(a.GossipAddr()), Logger: quietLogger})
	if !errors.Is(err, cluster.ErrNameTaken) {
		if b != nil {
			_ = b.Close()
		}
		t.Fatalf("NewClient of a second dup: %v, want cluster.ErrNameTaken", err)
	}
	redistest.WaitFor(t, 10*time.Second, func() bool { return a.Health().Conflicts.Count > 0 }, "a conflict seen by the first")
	last := a.Health().Conflicts.Last
	if last == nil || last.Name != "dup" || last.Existing != a.GossipAddr() || last.Other == a.GossipAddr() {
		t.Errorf("a's last conflict %+v, want dup at %s claimed from elsewhere", last, a.GossipAddr())
	}
	const warning = "cluster: two nodes claim one name; the newcomer is refused (duplicate NodeID?)"
	if !logs.has(slog.LevelWarn, warning) {
		t.Errorf("no WARN %q logged", warning)
	}
}
