package tiered

import (
	"context"
	"time"
)

// Tier names where a value came from.
type Tier uint8

// Tiers.
const (
	TierNone   Tier = iota // neither tier had it
	TierL1                 // the in-process cache
	TierL2                 // Redis
	TierLoader             // the caller's loader
)

// String implements fmt.Stringer.
func (t Tier) String() string {
	switch t {
	case TierL1:
		return "l1"
	case TierL2:
		return "l2"
	case TierLoader:
		return "loader"
	}
	return "none"
}

// EventKind says what an Event reports.
type EventKind uint8

// Event kinds.
const (
	// EventHit: a Get was answered from Tier.
	EventHit EventKind = iota + 1
	// EventMiss: no tier had the key (a load may follow).
	EventMiss
	// EventLoad: a loader ran for Duration and returned Err.
	EventLoad
	// EventL2Error: an L2 command failed with Err; the call went on without L2.
	EventL2Error
	// EventCorrupt: an L2 entry could not be decoded and was deleted.
	EventCorrupt
	// EventStale: a stale value was served from Tier; Err is the loader's
	// error under stale-if-error, nil under stale-while-revalidate.
	EventStale
	// EventRefresh: a background refresh started.
	EventRefresh
	// EventInvalidation: another node's invalidation was applied to this
	// replica's L1; Duration is its lag from the sender's clock to now.
	EventInvalidation
)

// Event is one thing an Observer is told about.
type Event struct {
	Kind      EventKind
	Namespace string
	Tier      Tier
	Duration  time.Duration
	Err       error
}

// Observer receives events for telemetry: implement it to count hits,
// misses, loads and errors per tier, or to trace them.
//
// Observe is called synchronously on the caller's goroutine, including the L1
// hit path: it must be fast, must not block, and must not retain ctx.
type Observer interface {
	Observe(ctx context.Context, e Event)
}

// A StatsObserver is an Observer that also reads the client's counters when
// it wants them, as OpenTelemetry's observable instruments do: NewClient
// hands it Client.Stats. The hot path then pays for one counter (the
// cache's), not a second one in the Observer.
type StatsObserver interface {
	Observer
	ObserveStats(read func() ClientStats)
}
