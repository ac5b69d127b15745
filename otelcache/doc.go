// Package otelcache exports what a Strata client does as OpenTelemetry
// spans and metrics. Put the [Observer] that [New] returns in
// tiered.Config.Observer.
//
//	obs, err := otelcache.New() // the global providers; or WithTracerProvider, WithMeterProvider
//	if err != nil {
//		return err
//	}
//	client, err := tiered.NewClient(ctx, tiered.Config{Observer: obs, Redis: redisCfg})
//	if err != nil {
//		return err
//	}
//	// Redis command spans: go-redis's own redisotel (InstrumentMetrics for its pool).
//	err = redisotel.InstrumentTracing(client.Redis())
//
// One Observer may serve several clients; it adds their counters up per
// namespace. Its methods are called by tiered, not by the program.
//
// # Spans
//
// One span per operation (strata.cache.get, .get_many, .set, .delete,
// .invalidate_tags, .invalidate_pattern, .clear, .invalidate), kind
// internal, with the namespace, and for a Get the tier, the result, and
// whether it was coalesced or started an early refresh; a child span per
// loader call (strata.cache.load); a background refresh's own span
// (strata.cache.refresh), linked to the request that started it. Only
// operations inside a sampled span of the caller's are traced: elsewhere
// nothing is started, and an L1 hit allocates nothing. A sampled request's
// L1 hit is an event on the request's span, a fraction of a span's cost
// ([WithL1HitSpans] makes it a span). Keys are on no span unless
// [WithKeyAttribute]. Redis commands get their spans from go-redis's
// redisotel on tiered.Client.Redis().
//
// # Metrics
//
// Requests per namespace, tier and result; operation and load durations;
// refreshes, lease waits, rejected fills and L2 errors; L1's entries, bytes,
// evictions and rejected sets; write-behind flushing; the invalidation
// traffic per transport, direction and kind, with its lag, gaps and L1
// flushes; and gauges of channel trust and Redis server health. The
// attribute keys are the Attr constants ([AttrName], [AttrTier],
// [AttrResult], …).
//
// The counters a cache keeps anyway (tiered.Stats, tiered.Client.BusStats)
// are read through observable instruments at collection time: the L1 hit
// path pays for the cache's own counter, not a second one here. The
// module's README.md lists every span and instrument beside the Stats field
// that carries the same count, with the measurements behind these choices.
//
// # Names
//
// OpenTelemetry has no semantic convention for caches yet, so the names
// follow its general rules (dot namespaces, UCUM units as metadata, no
// _total suffix, no cache key in any attribute) and the shape Micrometer and
// Caffeine users know. The OpenTelemetry Prometheus exporter renders
// strata.cache.requests as strata_cache_requests_total, and
// strata.cache.load.duration as strata_cache_load_duration_seconds.
//
// # Module
//
// It is its own module, so that the OpenTelemetry API enters only the go.mod
// of programs that import it; the library's packages never import
// OpenTelemetry.
package otelcache
