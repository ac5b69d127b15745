package tiered

import (
	"time"

	"github.com/strata-cache/strata/cluster"
	"github.com/strata-cache/strata/l2"
)

// Health is one replica's view of its tiers and channels, for probes and
// dashboards (see the debughttp package). Every field is read when Health
// is called; nothing in it costs a round trip to Redis except a caller's
// own client (l2.Config.Client), whose servers are PINGed then, for at most
// l2.Config.HealthTimeout.
type Health struct {
	// NodeID is this replica's ID.
	NodeID string `json:"node_id"`
	// Trusted reports that some invalidation channel vouches for L1; while
	// none does, reads bypass L1.
	Trusted bool `json:"trusted"`
	// Servers are the Redis servers as L2Health returns them: a single
	// node's or Ring's, a Redis Cluster's masters, a caller's client's
	// servers (see l2.ServerHealth for what Serving means in each); empty
	// without L2.
	Servers []l2.ServerHealth `json:"servers,omitempty"`
	// Channels are the invalidation channels configured: Redis pub/sub,
	// gossip.
	Channels []ChannelHealth `json:"channels,omitempty"`
	// Members are the gossip cluster's members by NodeID, this one
	// included, with their states: alive, and for a while those that left
	// or died (see cluster.Node.MemberStates); empty without gossip.
	Members []cluster.Member `json:"members,omitempty"`
	// Conflicts are the gossip name conflicts seen: another replica tried
	// to join with this one's NodeID from another address (its NewClient
	// fails with cluster.ErrNameTaken). Zero without gossip.
	Conflicts cluster.Conflicts `json:"conflicts,omitzero"`
	// DuplicateNodeID reports another running replica with this one's
	// NodeID: it sends heartbeats under the name on an invalidation
	// channel (its invalidations still apply here, but gap detection and
	// WithAck confuse the two), or this replica's background gossip join
	// found the name taken and left the gossip cluster
	// (cluster.Node.Refused). With gossip NewClient refuses a duplicate it
	// finds at start; otherwise this is how one shows, with an ERROR
	// logged.
	DuplicateNodeID bool `json:"duplicate_node_id,omitempty"`
	// LastFlush is the latest drop of the whole L1, for a possibly missed
	// invalidation or because L2's routing changed, or nil.
	LastFlush *Flush `json:"last_flush,omitempty"`
}

// ChannelHealth is one invalidation channel's state.
type ChannelHealth struct {
	// Name is "pubsub" or "gossip".
	Name string `json:"name"`
	// Vouches reports that the channel vouches for L1 now: pub/sub while
	// its subscription shows activity, gossip while every other member was
	// heard from lately.
	Vouches bool `json:"vouches"`
	// LastHeard is the channel's latest activity; zero before the first.
	LastHeard time.Time `json:"last_heard,omitzero"`
}

// Flush is a drop of the whole L1: why, and when.
type Flush struct {
	// Reason says why: "sequence gap", "link recovered" (trust regained
	// after a channel outage), "gossip receive queue overflow", or "L2
	// routing changed: " and the change (its epoch advanced, a shard came
	// back).
	Reason string `json:"reason"`
	// At is when.
	At time.Time `json:"at"`
}

// health is Client.Health.
func (c *Client) health() Health {
	h := Health{NodeID: c.cfg.NodeID, Trusted: c.trusted.Load(), Servers: c.L2Health()}
	if c.bus != nil {
		for _, l := range c.bus.Links() {
			h.Channels = append(h.Channels, ChannelHealth{Name: l.Channel.String(), Vouches: l.Vouches, LastHeard: l.LastHeard})
		}
		h.DuplicateNodeID = c.bus.TwinSeen()
		if r := c.bus.LastReset(); r != nil {
			h.LastFlush = &Flush{Reason: r.Reason, At: r.At}
		}
	}
	if r := c.lastRouteFlush.Load(); r != nil && (h.LastFlush == nil || r.At.After(h.LastFlush.At)) {
		h.LastFlush = r
	}
	if c.gossip != nil {
		h.Members, h.Conflicts = c.gossip.MemberStates(), c.gossip.Conflicts()
		h.DuplicateNodeID = h.DuplicateNodeID || c.gossip.Refused() != nil
	}
	return h
}
