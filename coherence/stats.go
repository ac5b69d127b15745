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
}

// ErrNotAcknowledged is wrapped by the error of a write or invalidation
// made under tiered.WithAck when some live replica did not confirm it in
// time; the error names them.
var ErrNotAcknowledged = errors.New("coherence: invalidation not acknowledged")
