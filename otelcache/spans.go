package otelcache

import (
	"context"
	"errors"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/strata-cache/strata/l2"
	"github.com/strata-cache/strata/tiered"
)

// More attribute keys, on spans only.
const (
	// AttrKeys is how many keys (or tags) a batch operation covers.
	AttrKeys = attribute.Key("strata.cache.keys")
	// AttrCoalesced reports a Get that waited on another caller's read or
	// load of its key.
	AttrCoalesced = attribute.Key("strata.cache.coalesced")
	// AttrKey is the cache key of a one-key operation; only with
	// WithKeyAttribute(true).
	AttrKey = attribute.Key("strata.cache.key")
	// AttrEarlyRefresh reports a Get whose hit started an early (XFetch)
	// refresh in the background.
	AttrEarlyRefresh = attribute.Key("strata.cache.early_refresh")
	// AttrKeysL1, AttrKeysL2, AttrKeysStale and AttrKeysMiss count a
	// GetMany's distinct keys by how each was answered: fresh from L1, fresh
	// from L2, stale, or missed (loaded, not found or failed).
	AttrKeysL1    = attribute.Key("strata.cache.keys.l1")
	AttrKeysL2    = attribute.Key("strata.cache.keys.l2")
	AttrKeysStale = attribute.Key("strata.cache.keys.stale")
	AttrKeysMiss  = attribute.Key("strata.cache.keys.miss")
)

var _ tiered.SpanObserver = (*Observer)(nil)

// WithTracerProvider makes the spans with tp. The default is the global
// provider (otel.GetTracerProvider).
func WithTracerProvider(tp trace.TracerProvider) Option {
	return func(c *config) { c.tracers = tp }
}

// WithKeyAttribute puts each one-key operation's key on its span (or its
// L1-hit event) as strata.cache.key, and records the message of an error
// that ends a span, which may name a key. Off by default: keys can be
// personal data, and a span then carries only error.type. Metrics never
// carry keys.
func WithKeyAttribute(on bool) Option {
	return func(c *config) { c.keys = on }
}

// WithL1HitSpans records each L1 hit of a sampled request as a span of its
// own (strata.cache.get) instead of an event of that name on the request's
// span. Off by default: an event costs a fraction of a span (see the
// package doc), and an L1 hit has no children and takes well under a
// microsecond, so a span adds no timing a trace could use.
func WithL1HitSpans(on bool) Option {
	return func(c *config) { c.hitSpans = on }
}

// spanNames are the span names per operation: strata.cache.get, ….
var spanNames = func() map[tiered.Op]string {
	m := map[tiered.Op]string{}
	for op := tiered.OpGet; op <= tiered.OpRefresh; op++ {
		m[op] = "strata.cache." + op.String()
	}
	return m
}()

// Start implements tiered.SpanObserver. An operation is traced only inside
// a sampled span of the caller's (a request's): without one, or under one
// that is not sampled, Start only times the operation for
// strata.cache.operation.duration (loads and refreshes not even that: they
// have histograms and counters of their own). A background refresh gets a
// span of its own, linked to the request that started it.
func (o *Observer) Start(ctx context.Context, op tiered.Operation) (context.Context, tiered.Span) {
	return o.start(ctx, op, op.Op != tiered.OpLoad && op.Op != tiered.OpRefresh)
}

func (o *Observer) start(ctx context.Context, op tiered.Operation, timed bool) (context.Context, tiered.Span) {
	parent := trace.SpanContextFromContext(ctx)
	if !parent.IsSampled() {
		if !timed {
			return ctx, nil
		}
		return ctx, &span{o: o, op: op.Op, ns: op.Namespace, timed: true, start: time.Now()}
	}
	attrs := []attribute.KeyValue{AttrName.String(op.Namespace)}
	if op.Keys != 1 {
		attrs = append(attrs, AttrKeys.Int(op.Keys))
	}
	if o.keys && op.Key != "" {
		attrs = append(attrs, AttrKey.String(op.Key))
	}
	opts := []trace.SpanStartOption{trace.WithSpanKind(trace.SpanKindInternal), trace.WithAttributes(attrs...)}
	if op.Op == tiered.OpRefresh {
		opts = append(opts, trace.WithNewRoot(), trace.WithLinks(trace.Link{SpanContext: parent}))
	}
	sp := &span{o: o, op: op.Op, ns: op.Namespace, timed: timed}
	if timed {
		sp.start = time.Now()
	}
	ctx, sp.Span = o.tracer.Start(ctx, spanNames[op.Op], opts...)
	return ctx, sp
}

// Hit implements tiered.SpanObserver: a sampled request's L1 hit becomes
// an event named strata.cache.get on the request's span, with the same
// attributes a span would have (or a span, with WithL1HitSpans). Elsewhere
// it returns at once and allocates nothing.
func (o *Observer) Hit(ctx context.Context, op tiered.Operation, out tiered.Outcome) {
	parent := trace.SpanFromContext(ctx)
	if !parent.SpanContext().IsSampled() {
		return
	}
	if o.hitSpans || !parent.IsRecording() {
		// A remote parent cannot take an event: the hit gets a span. It
		// is not timed: no L1 hit is (see operation.duration).
		_, sp := o.start(ctx, op, false)
		sp.End(out)
		return
	}
	k := hitKey{op.Namespace, result(out), out.EarlyRefresh}
	if o.keys {
		parent.AddEvent(spanNames[op.Op], trace.WithAttributes(append(k.attrs(), AttrKey.String(op.Key))...))
		return
	}
	opt, ok := o.hitAttrs.Load(k)
	if !ok {
		opt, _ = o.hitAttrs.LoadOrStore(k, trace.WithAttributes(k.attrs()...))
	}
	parent.AddEvent(spanNames[op.Op], opt.(trace.EventOption))
}

// hitKey is what an L1 hit's event says, besides its key: its attribute
// sets are made once (hitAttrs) so the event allocates no option.
type hitKey struct {
	ns, result string
	early      bool
}

func (k hitKey) attrs() []attribute.KeyValue {
	attrs := []attribute.KeyValue{AttrName.String(k.ns), AttrTier.String(tiered.TierL1.String()), AttrResult.String(k.result)}
	if k.early {
		attrs = append(attrs, AttrEarlyRefresh.Bool(true))
	}
	return attrs
}

// span is an operation in progress: its trace span (nil when the
// operation is only timed), and when it started if it is timed.
type span struct {
	trace.Span
	o     *Observer
	op    tiered.Op
	ns    string
	timed bool
	start time.Time
}

// End implements tiered.Span: it records the operation's duration, and on
// its trace span the answer's tier and result, and the error (a Get that
// found nothing is a miss, not an error).
func (s *span) End(out tiered.Outcome) {
	if s.timed {
		s.o.opDuration.Record(context.Background(), time.Since(s.start).Seconds(), s.o.opOption(s.op, s.ns, out))
	}
	if s.Span == nil {
		return
	}
	if out.Tier != tiered.TierNone {
		s.SetAttributes(AttrTier.String(out.Tier.String()), AttrResult.String(result(out)))
	}
	if out.Coalesced {
		s.SetAttributes(AttrCoalesced.Bool(true))
	}
	if out.EarlyRefresh {
		s.SetAttributes(AttrEarlyRefresh.Bool(true))
	}
	if s.op == tiered.OpGetMany {
		b := out.Batch
		s.SetAttributes(AttrKeysL1.Int(b.L1Hits), AttrKeysL2.Int(b.L2Hits), AttrKeysStale.Int(b.Stale), AttrKeysMiss.Int(b.Misses))
	}
	if out.Err != nil && !errors.Is(out.Err, tiered.ErrNotFound) {
		s.SetAttributes(AttrErrorType.String(errorType(out.Err)))
		if s.o.keys {
			s.RecordError(out.Err)
			s.SetStatus(codes.Error, out.Err.Error())
		} else {
			// Strata's error messages name the key; the type says enough.
			s.SetStatus(codes.Error, "")
		}
	}
	s.Span.End()
}

// AttrErrorType is OpenTelemetry's error.type: what kind of error ended an
// operation, without its message.
const AttrErrorType = attribute.Key("error.type")

// errorTypes name the errors callers can test for, most specific first.
var errorTypes = []struct {
	err  error
	name string
}{
	{tiered.ErrInvalidKey, "invalid_key"},
	{tiered.ErrInvalidNamespace, "invalid_namespace"},
	{tiered.ErrValueTooLarge, "value_too_large"},
	{tiered.ErrClosed, "closed"},
	{tiered.ErrVersionUnknown, "version_unknown"},
	{l2.ErrUnavailable, "l2_unavailable"},
	{context.Canceled, "canceled"},
	{context.DeadlineExceeded, "timeout"},
}

// errorType is err's error.type: a known error's name, a *tiered.PanicError
// as "panic", anything else "_OTHER" (OpenTelemetry's fallback).
func errorType(err error) string {
	for _, t := range errorTypes {
		if errors.Is(err, t.err) {
			return t.name
		}
	}
	if pe := (*tiered.PanicError)(nil); errors.As(err, &pe) {
		return "panic"
	}
	return "_OTHER"
}

// result names how a Get ended: hit, stale, negative or miss.
func result(out tiered.Outcome) string {
	switch {
	case out.Err != nil && !errors.Is(out.Err, tiered.ErrNotFound):
		return "error"
	case out.Stale:
		return "stale"
	case out.Negative:
		return "negative"
	case out.Tier == tiered.TierL1 || out.Tier == tiered.TierL2:
		return "hit"
	}
	return "miss"
}
