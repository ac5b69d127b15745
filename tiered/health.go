package tiered

import (
	"time"

	"github.com/strata-cache/strata/l2"
)

// Health is one replica's view of its tiers and channels, for probes and
// dashboards (see the debughttp package). Every field is read when Health
// is called.
type Health struct {
	// NodeID is this replica's ID.
	NodeID string `json:"node_id"`
	// Trusted reports that some invalidation channel vouches for L1; while
	// none does, reads bypass L1.
	Trusted bool `json:"trusted"`
	// Servers are the Redis servers of a single node or a Ring, as
	// L2Health returns them (empty for a Redis Cluster or a caller's own
	// client, and without L2).
	Servers []l2.ServerHealth `json:"servers,omitempty"`
	// Channels are the invalidation channels configured: Redis pub/sub,
	// gossip.
	Channels []ChannelHealth `json:"channels,omitempty"`
	// Members are the gossip cluster's members by NodeID, this one
	// included (empty without gossip).
	Members []string `json:"members,omitempty"`
	// LastFlush is the latest drop of the whole L1 for a possibly missed
	// invalidation, or nil.
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
	Reason string    `json:"reason"`
	At     time.Time `json:"at"`
}

// health is Client.Health.
func (c *Client) health() Health {
	h := Health{NodeID: c.cfg.NodeID, Trusted: c.trusted.Load(), Servers: c.L2Health()}
	if c.bus != nil {
		for _, l := range c.bus.Links() {
			h.Channels = append(h.Channels, ChannelHealth{Name: l.Channel.String(), Vouches: l.Vouches, LastHeard: l.LastHeard})
		}
		if r := c.bus.LastReset(); r != nil {
			h.LastFlush = &Flush{Reason: r.Reason, At: r.At}
		}
	}
	if c.gossip != nil {
		h.Members = c.gossip.Members()
	}
	return h
}
