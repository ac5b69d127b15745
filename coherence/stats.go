package coherence

import "errors"

// Stats counts what a replica's invalidation bus did: what it sent and
// received on both channels (Redis pub/sub and gossip), and what it dropped.
type Stats struct {
	Published       uint64 `json:"published"`       // invalidation messages sent (one per part of a split invalidation)
	PublishErrors   uint64 `json:"publish_errors"`  // sends that failed on a channel
	Received        uint64 `json:"received"`        // messages received, both channels, heartbeats included
	Applied         uint64 `json:"applied"`         // invalidations applied
	Duplicates      uint64 `json:"duplicates"`      // copies of messages already applied
	Malformed       uint64 `json:"malformed"`       // undecodable messages, dropped
	Unauthenticated uint64 `json:"unauthenticated"` // messages with a missing or bad MAC, dropped
	Gaps            uint64 `json:"gaps"`            // sequences lost on both channels
	Resets          uint64 `json:"resets"`          // L1 drops (gaps, overflows, link recoveries)
	LinkLosses      uint64 `json:"link_losses"`     // times no channel could vouch for L1

	// AppliedByKind splits Applied by what the invalidations covered.
	AppliedByKind Kinds `json:"applied_by_kind"`
	// ResetsByReason splits Resets by why L1 was dropped.
	ResetsByReason Resets `json:"resets_by_reason"`
	// PubSub and Gossip count each channel's own traffic.
	PubSub ChannelStats `json:"pubsub"`
	Gossip ChannelStats `json:"gossip"`
}

// ChannelStats counts one channel's invalidation traffic.
type ChannelStats struct {
	// Sent counts the invalidations this channel carried out, by kind.
	Sent Kinds `json:"sent"`
	// SendErrors counts sends that failed on this channel.
	SendErrors uint64 `json:"send_errors"`
	// Received counts the invalidations that arrived on this channel, by
	// kind: the copy the other channel delivered first included.
	Received Kinds `json:"received"`
	// Dropped counts the messages that arrived on this channel malformed or
	// unauthenticated.
	Dropped uint64 `json:"dropped"`
}

// Kinds counts invalidations by Kind.
type Kinds struct {
	Keys    uint64 `json:"keys"`
	Tags    uint64 `json:"tags"`
	Pattern uint64 `json:"pattern"`
	Clear   uint64 `json:"clear"`
}

// Of returns the count of kind k (0 for heartbeats and acks, which are not
// counted).
func (n Kinds) Of(k Kind) uint64 {
	switch k {
	case KindKeys:
		return n.Keys
	case KindTags:
		return n.Tags
	case KindPattern:
		return n.Pattern
	case KindClear:
		return n.Clear
	}
	return 0
}

// Resets counts L1 drops by reason.
type Resets struct {
	Gap           uint64 `json:"gap"`            // a sequence lost on both channels
	Overflow      uint64 `json:"overflow"`       // the gossip receive queue overflowed
	LinkRecovered uint64 `json:"link_recovered"` // a channel vouches again after none did
}

// ErrNotAcknowledged is wrapped by the error of a write or invalidation
// made under tiered.WithAck when some live replica did not confirm it in
// time; the error names them.
var ErrNotAcknowledged = errors.New("coherence: invalidation not acknowledged")
