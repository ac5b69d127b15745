package coherence

import "errors"

// Stats counts what a replica's invalidation bus did: what it sent and
// received on both channels (Redis pub/sub and gossip), and what it dropped.
type Stats struct {
	Published       uint64 // invalidation messages sent (one per part of a split invalidation)
	PublishErrors   uint64 // sends that failed on a channel
	Received        uint64 // messages received, both channels, heartbeats included
	Applied         uint64 // invalidations applied
	Duplicates      uint64 // copies of messages already applied
	Malformed       uint64 // undecodable messages, dropped
	Unauthenticated uint64 // messages with a missing or bad MAC, dropped
	Gaps            uint64 // sequences lost on both channels
	Resets          uint64 // L1 drops (gaps, overflows, link recoveries)
	LinkLosses      uint64 // times no channel could vouch for L1
}

// ErrNotAcknowledged is wrapped by the error of a write or invalidation
// made under tiered.WithAck when some live replica did not confirm it in
// time; the error names them.
var ErrNotAcknowledged = errors.New("coherence: invalidation not acknowledged")
