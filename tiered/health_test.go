package tiered_test

import (
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
