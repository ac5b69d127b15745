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
	// EventFlush: a write-behind Flush call took Duration and returned Err.
	EventFlush
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

// An EventFilter is an Observer that says which kinds of event it wants,
// once, at NewClient: the others are not sent to it, so the paths that
// report them (the L1 hit path among them) skip the call.
type EventFilter interface {
	Observer
	Wants(k EventKind) bool
}

// wanted is the set of event kinds o is sent, by bit.
func wanted(o Observer) uint32 {
	if o == nil {
		return 0
	}
	f, ok := o.(EventFilter)
	var bits uint32
	for k := EventHit; k <= EventFlush; k++ {
		if !ok || f.Wants(k) {
			bits |= 1 << k
		}
	}
	return bits
}

// A ClientObserver is an Observer that also reads the client it observes
// (Stats, Health) when it wants, as OpenTelemetry's observable instruments
// do: NewClient hands it the Client before returning it. The hot path then
// pays for one counter (the cache's), not a second one in the Observer.
type ClientObserver interface {
	Observer
	ObserveClient(c *Client)
}

// Op names an operation a SpanObserver hears begin and end.
type Op uint8

// Operations.
const (
	OpGet               Op = iota + 1 // Get and GetWithInfo
	OpGetMany                         // GetMany
	OpSet                             // Set
	OpDelete                          // Delete
	OpInvalidateTags                  // Cache.InvalidateTags and Client.InvalidateTags
	OpInvalidatePattern               // InvalidatePattern
	OpClear                           // Clear
	OpInvalidate                      // Client.Invalidate
	OpLoad                            // a loader call, inside the operation that needed it
	OpRefresh                         // a background refresh (early or stale-while-revalidate), started by a Get
)

// String returns the operation's name in snake case: "get", "get_many", ….
func (o Op) String() string {
	switch o {
	case OpGet:
		return "get"
	case OpGetMany:
		return "get_many"
	case OpSet:
		return "set"
	case OpDelete:
		return "delete"
	case OpInvalidateTags:
		return "invalidate_tags"
	case OpInvalidatePattern:
		return "invalidate_pattern"
	case OpClear:
		return "clear"
	case OpInvalidate:
		return "invalidate"
	case OpLoad:
		return "load"
	case OpRefresh:
		return "refresh"
	}
	return "unknown"
}

// Operation is what a SpanObserver is told when an operation begins.
type Operation struct {
	Op        Op
	Namespace string
	// Key is the key of a one-key operation; empty for the others.
	Key string
	// Keys is how many keys (or tags) the operation covers.
	Keys int
}

// Outcome is how an operation ended.
type Outcome struct {
	// Tier is where a Get's answer came from (TierNone for the other
	// operations, and for a Get that failed).
	Tier Tier
	// Stale reports a stale answer; Negative a cached "not found".
	Stale, Negative bool
	// Coalesced reports a Get that waited on another caller's read or load
	// of its key: on this replica (a shared flight) or on another (its load
	// lease).
	Coalesced bool
	// EarlyRefresh reports a Get whose fresh hit started an early (XFetch)
	// refresh in the background.
	EarlyRefresh bool
	// Batch is how a GetMany answered its distinct keys (zero for the
	// other operations).
	Batch Batch
	// Err is the operation's error (ErrNotFound for a Get that found
	// nothing).
	Err error
}

// Batch counts a GetMany's distinct keys by how each was answered, as Stats
// counts requests: each key in exactly one field.
type Batch struct {
	L1Hits, L2Hits int // fresh from L1, from L2 (cached "not found"s included)
	Stale          int // stale, under StaleWhileRevalidate or StaleIfError
	Misses         int // loaded, not found or failed
}

// Span is an operation in progress: End is called once, when it ends.
type Span interface {
	End(o Outcome)
}

// A SpanObserver is an Observer that also hears every operation begin and
// end, to trace or time them. Start runs on the caller's goroutine before
// the operation; it may return a nil Span when it neither traces nor times
// it. The ctx it returns is the one the operation (and its loader) runs
// with.
//
// A Get answered from a fresh L1 copy, the hot path, is reported once it
// is over, by Hit instead of Start and End: nothing runs inside it to
// parent, so it can be an event on the caller's span rather than a span of
// its own. Hit must return at once, without allocating, when it does not
// trace. An early refresh such a hit starts is linked to ctx's span.
type SpanObserver interface {
	Observer
	Start(ctx context.Context, op Operation) (context.Context, Span)
	Hit(ctx context.Context, op Operation, out Outcome)
}

// start begins op on key (or on n keys) if a SpanObserver traces it.
func (c *Client) start(ctx context.Context, op Op, ns, key string, n int) (context.Context, Span) {
	if c.spans == nil {
		return ctx, nil
	}
	return c.spans.Start(ctx, Operation{Op: op, Namespace: ns, Key: key, Keys: n})
}

// failed reports op on key, refused with err before it began.
func (c *Client) failed(ctx context.Context, op Op, ns, key string, err error) {
	_, sp := c.start(ctx, op, ns, key, 1)
	end(sp, Outcome{Err: err})
}

// soleKey is the key of a one-key call, for its span.
func soleKey(keys []string) string {
	if len(keys) == 1 {
		return keys[0]
	}
	return ""
}

// end ends sp, if there is one.
func end(sp Span, o Outcome) {
	if sp != nil {
		sp.End(o)
	}
}
