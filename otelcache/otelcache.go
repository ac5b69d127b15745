// Package otelcache exports what a Strata client does as OpenTelemetry
// metrics: requests per namespace, tier and result, load durations,
// refreshes, lease waits, rejected fills, L2 errors, and the invalidation
// traffic with its lag. Put the Observer New returns in tiered.Config.Observer.
//
// It is its own module, so that the OpenTelemetry API enters only the go.mod
// of programs that import it; the library's packages never import
// OpenTelemetry.
//
// OpenTelemetry has no semantic convention for caches yet, so the names
// follow its general rules (dot namespaces, UCUM units as metadata, no
// _total suffix, no cache key in any attribute) and the shape Micrometer and
// Caffeine users know. The OpenTelemetry Prometheus exporter renders
// strata.cache.requests as strata_cache_requests_total, and
// strata.cache.load.duration as strata_cache_load_duration_seconds.
//
// The counters a cache keeps anyway (tiered.Stats, tiered.Client.BusStats)
// are read through observable instruments at collection time: the L1 hit
// path pays for the cache's own counter, not a second one here.
package otelcache

import (
	"context"
	"errors"
	"sync"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"

	"github.com/strata-cache/strata/tiered"
)

// scope names the instrumentation scope of every instrument.
const scope = "github.com/strata-cache/strata/otelcache"

// Attribute keys, shared by every instrument that carries them.
const (
	// AttrName is the cache's namespace.
	AttrName = attribute.Key("strata.cache.name")
	// AttrTier is where an answer came from: l1, l2 or loader.
	AttrTier = attribute.Key("strata.cache.tier")
	// AttrResult is how a request or a load ended: hit, miss or stale for
	// requests; success, failure or not_found for loads.
	AttrResult = attribute.Key("strata.cache.result")
	// AttrDirection is an invalidation's way: sent, received or dropped.
	AttrDirection = attribute.Key("strata.cache.direction")
)

// Option configures New.
type Option func(*config)

type config struct {
	meters metric.MeterProvider
}

// WithMeterProvider makes the instruments with mp. The default is the
// global provider (otel.GetMeterProvider).
func WithMeterProvider(mp metric.MeterProvider) Option {
	return func(c *config) { c.meters = mp }
}

// Observer records a client's metrics. It implements tiered.StatsObserver;
// one Observer may serve several clients, whose counters it adds up per
// namespace.
type Observer struct {
	loadDuration metric.Float64Histogram
	lag          metric.Float64Histogram
	loadAttrs    sync.Map // loadKey -> metric.RecordOption
	lagAttrs     sync.Map // namespace -> metric.RecordOption

	mu    sync.Mutex
	reads []func() tiered.ClientStats
}

type loadKey struct{ ns, result string }

// New returns an Observer whose instruments come from the meter provider
// (see WithMeterProvider).
func New(opts ...Option) (*Observer, error) {
	cfg := config{meters: otel.GetMeterProvider()}
	for _, o := range opts {
		o(&cfg)
	}
	m := cfg.meters.Meter(scope)
	o := &Observer{}
	var errs [3]error
	o.loadDuration, errs[0] = m.Float64Histogram("strata.cache.load.duration", metric.WithUnit("s"),
		metric.WithDescription("How long loader calls took, by result (a batch loader call counts once)."))
	o.lag, errs[1] = m.Float64Histogram("strata.cache.invalidation.lag", metric.WithUnit("s"),
		metric.WithDescription("From another replica's send to this replica's applying an invalidation; "+
			"measured across hosts, so it includes their clock skew."))
	errs[2] = o.counters(m)
	if err := errors.Join(errs[:]...); err != nil {
		return nil, err
	}
	return o, nil
}

// Observe implements tiered.Observer. It records the events that carry a
// duration; the counts come from tiered.Stats (see ObserveStats), so hits
// return at once.
func (o *Observer) Observe(ctx context.Context, e tiered.Event) {
	switch e.Kind {
	case tiered.EventLoad:
		o.loadDuration.Record(ctx, e.Duration.Seconds(), o.loadOption(e))
	case tiered.EventInvalidation:
		o.lag.Record(ctx, max(e.Duration.Seconds(), 0), o.lagOption(e.Namespace))
	}
}

// ObserveStats implements tiered.StatsObserver: read is a client's counters,
// read at each collection.
func (o *Observer) ObserveStats(read func() tiered.ClientStats) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.reads = append(o.reads, read)
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

func (o *Observer) lagOption(ns string) metric.RecordOption {
	if opt, ok := o.lagAttrs.Load(ns); ok {
		return opt.(metric.RecordOption)
	}
	opt, _ := o.lagAttrs.LoadOrStore(ns, metric.WithAttributeSet(attribute.NewSet(AttrName.String(ns))))
	return opt.(metric.RecordOption)
}
