package otelcache

import (
	"context"
	"errors"
	"sync"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/trace"

	"github.com/strata-cache/strata/tiered"
)

// scope names the instrumentation scope of every instrument.
const scope = "github.com/strata-cache/strata/otelcache"

// Attribute keys, shared by every instrument that carries them.
const (
	// AttrName is the cache's namespace.
	AttrName = attribute.Key("strata.cache.name")
	// AttrTier is where an answer came from: l1, l2 or loader (none on
	// the span and duration of a Get that no tier answered).
	AttrTier = attribute.Key("strata.cache.tier")
	// AttrResult is how something ended: hit, negative (a cached "not
	// found"), miss or stale for requests, and error too on a Get's span
	// and duration; success, failure or not_found for loads; success or
	// failure for write-behind flushes; applied, expired or dropped for L2
	// retries.
	AttrResult = attribute.Key("strata.cache.result")
	// AttrDirection is an invalidation's way: sent, received, applied or
	// dropped.
	AttrDirection = attribute.Key("strata.cache.direction")
	// AttrOperation names the operation a duration is of: get, get_many,
	// set, delete, invalidate_tags, invalidate_pattern, clear, invalidate.
	AttrOperation = attribute.Key("strata.cache.operation")
)

// Option configures New.
type Option func(*config)

type config struct {
	meters   metric.MeterProvider
	tracers  trace.TracerProvider
	keys     bool
	hitSpans bool
}

// WithMeterProvider makes the instruments with mp. The default is the
// global provider (otel.GetMeterProvider).
func WithMeterProvider(mp metric.MeterProvider) Option {
	return func(c *config) { c.meters = mp }
}

// Observer records a client's metrics and traces its operations. It
// implements tiered.ClientObserver and tiered.SpanObserver; one Observer may
// serve several clients, whose counters it adds up per namespace.
type Observer struct {
	tracer   trace.Tracer
	keys     bool
	hitSpans bool

	loadDuration metric.Float64Histogram
	lag          metric.Float64Histogram
	opDuration   metric.Float64Histogram
	flushDur     metric.Float64Histogram
	flushAttrs   sync.Map // loadKey -> metric.RecordOption
	opAttrs      sync.Map // opKey -> metric.RecordOption
	loadAttrs    sync.Map // loadKey -> metric.RecordOption
	lagAttrs     sync.Map // namespace -> metric.RecordOption
	hitAttrs     sync.Map // hitKey -> trace.EventOption

	mu      sync.Mutex
	clients []*tiered.Client
}

type loadKey struct{ ns, result string }

// New returns an Observer whose instruments come from the meter provider
// and whose spans from the tracer provider: the global ones, unless
// WithMeterProvider and WithTracerProvider say otherwise.
func New(opts ...Option) (*Observer, error) {
	cfg := config{meters: otel.GetMeterProvider(), tracers: otel.GetTracerProvider()}
	for _, o := range opts {
		o(&cfg)
	}
	m := cfg.meters.Meter(scope)
	o := &Observer{tracer: cfg.tracers.Tracer(scope), keys: cfg.keys, hitSpans: cfg.hitSpans}
	var errs [6]error
	o.loadDuration, errs[0] = m.Float64Histogram("strata.cache.load.duration", metric.WithUnit("s"),
		metric.WithDescription("How long loader calls took, by result (a batch loader call counts once)."))
	o.lag, errs[1] = m.Float64Histogram("strata.cache.invalidation.lag", metric.WithUnit("s"),
		metric.WithDescription("From another replica's send to this replica's applying an invalidation; "+
			"measured across hosts, so it includes their clock skew."))
	o.opDuration, errs[2] = m.Float64Histogram("strata.cache.operation.duration", metric.WithUnit("s"),
		metric.WithDescription("How long operations took, by operation, and for a Get by tier and result; "+
			"fresh L1 hits are not timed (strata.cache.requests counts them)."))
	o.flushDur, errs[5] = m.Float64Histogram("strata.cache.writebehind.flush.duration", metric.WithUnit("s"),
		metric.WithDescription("How long write-behind Flush calls took, by result (success, failure)."))
	errs[3] = o.counters(m)
	errs[4] = o.gauges(m)
	if err := errors.Join(errs[:]...); err != nil {
		return nil, err
	}
	return o, nil
}

// Observe implements tiered.Observer. It records the events that carry a
// duration; the counts come from tiered.Stats (see ObserveClient), so hits
// return at once.
func (o *Observer) Observe(ctx context.Context, e tiered.Event) {
	switch e.Kind {
	case tiered.EventLoad:
		o.loadDuration.Record(ctx, e.Duration.Seconds(), o.loadOption(e))
	case tiered.EventInvalidation:
		o.lag.Record(ctx, max(e.Duration.Seconds(), 0), o.lagOption(e.Namespace))
	case tiered.EventFlush:
		o.flushDur.Record(ctx, e.Duration.Seconds(), o.flushOption(e))
	}
}

func (o *Observer) flushOption(e tiered.Event) metric.RecordOption {
	k := loadKey{e.Namespace, "success"}
	if e.Err != nil {
		k.result = "failure"
	}
	if opt, ok := o.flushAttrs.Load(k); ok {
		return opt.(metric.RecordOption)
	}
	opt, _ := o.flushAttrs.LoadOrStore(k, metric.WithAttributeSet(attribute.NewSet(AttrName.String(k.ns), AttrResult.String(k.result))))
	return opt.(metric.RecordOption)
}

// Wants implements tiered.EventFilter: only the events that carry a
// duration (loads, invalidations, write-behind flushes). The L1 hit path then does not call Observe at all.
func (o *Observer) Wants(k tiered.EventKind) bool {
	return k == tiered.EventLoad || k == tiered.EventInvalidation || k == tiered.EventFlush
}

// ObserveClient implements tiered.ClientObserver: c's counters and health
// are read at each collection.
func (o *Observer) ObserveClient(c *tiered.Client) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.clients = append(o.clients, c)
}

func (o *Observer) loadOption(e tiered.Event) metric.RecordOption {
	result := "success"
	switch {
	case errors.Is(e.Err, tiered.ErrNotFound):
		result = "not_found"
	case e.Err != nil:
		result = "failure"
	}
	k := loadKey{e.Namespace, result}
	if opt, ok := o.loadAttrs.Load(k); ok {
		return opt.(metric.RecordOption)
	}
	opt, _ := o.loadAttrs.LoadOrStore(k, metric.WithAttributeSet(attribute.NewSet(AttrName.String(e.Namespace), AttrResult.String(result))))
	return opt.(metric.RecordOption)
}

// opKey is what an operation's duration is recorded with.
type opKey struct {
	ns, op, tier, result, errType string
}

func (o *Observer) opOption(op tiered.Op, ns string, out tiered.Outcome) metric.RecordOption {
	k := opKey{ns: ns, op: op.String()}
	if op == tiered.OpGet {
		k.result = result(out)
		if out.Tier != tiered.TierNone {
			k.tier = out.Tier.String()
		}
	}
	if out.Err != nil && !errors.Is(out.Err, tiered.ErrNotFound) {
		k.errType = errorType(out.Err)
	}
	if opt, ok := o.opAttrs.Load(k); ok {
		return opt.(metric.RecordOption)
	}
	attrs := []attribute.KeyValue{AttrName.String(ns), AttrOperation.String(k.op)}
	if k.tier != "" {
		attrs = append(attrs, AttrTier.String(k.tier))
	}
	if k.result != "" {
		attrs = append(attrs, AttrResult.String(k.result))
	}
	if k.errType != "" {
		attrs = append(attrs, AttrErrorType.String(k.errType))
	}
	opt, _ := o.opAttrs.LoadOrStore(k, metric.WithAttributeSet(attribute.NewSet(attrs...)))
	return opt.(metric.RecordOption)
}

func (o *Observer) lagOption(ns string) metric.RecordOption {
	if opt, ok := o.lagAttrs.Load(ns); ok {
		return opt.(metric.RecordOption)
	}
	opt, _ := o.lagAttrs.LoadOrStore(ns, metric.WithAttributeSet(attribute.NewSet(AttrName.String(ns))))
	return opt.(metric.RecordOption)
}
