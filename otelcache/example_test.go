package otelcache_test

import (
	"context"
	"fmt"
	"log"
	"slices"
	"strings"
	"time"

	promclient "github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/extra/redisotel/v9"
	"go.opentelemetry.io/otel/exporters/prometheus"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/strata-cache/strata/l2"
	"github.com/strata-cache/strata/otelcache"
	"github.com/strata-cache/strata/tiered"
)

// The examples use in-memory readers and recorders so that their output can
// be checked; a service passes its own providers (OTLP, Prometheus), or
// none to use the global ones. Their clients have no Redis.

// requestCounts returns strata.cache.requests' non-zero series as
// "tier/result=n", sorted.
func requestCounts(reader *sdkmetric.ManualReader) []string {
	var rm metricdata.ResourceMetrics
	if err := reader.Collect(context.Background(), &rm); err != nil {
		log.Fatal(err)
	}
	var out []string
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			sum, ok := m.Data.(metricdata.Sum[int64])
			if m.Name != "strata.cache.requests" || !ok {
				continue
			}
			for _, dp := range sum.DataPoints {
				tier, _ := dp.Attributes.Value(otelcache.AttrTier)
				res, _ := dp.Attributes.Value(otelcache.AttrResult)
				if dp.Value > 0 {
					out = append(out, fmt.Sprintf("%s/%s=%d", tier.AsString(), res.AsString(), dp.Value))
				}
			}
		}
	}
	slices.Sort(out)
	return out
}

// New makes the Observer; tiered.Config.Observer hands it the client, whose
// counters are then read at each collection.
func ExampleNew() {
	ctx := context.Background()
	reader := sdkmetric.NewManualReader() // in production: a periodic OTLP reader
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
	defer mp.Shutdown(ctx)

	obs, err := otelcache.New(otelcache.WithMeterProvider(mp))
	if err != nil {
		log.Fatal(err)
	}
	client, err := tiered.NewClient(ctx, tiered.Config{Observer: obs})
	if err != nil {
		log.Fatal(err)
	}
	defer client.Close()
	users, err := tiered.NewCache(client, "users", tiered.Options[string]{})
	if err != nil {
		log.Fatal(err)
	}
	for range 3 {
		_, err := users.Get(ctx, "42", func(ctx context.Context, id string) (string, error) { return "Ada", nil })
		if err != nil {
			log.Fatal(err)
		}
	}

	fmt.Println(requestCounts(reader))
	// Output:
	// [l1/hit=2 loader/miss=1]
}

// Redis command spans come from go-redis's redisotel, on the client Strata
// made; otelcache's spans are their parents. This example needs Redis: it
// compiles but does not run here.
func ExampleNew_redisotel() {
	ctx := context.Background()
	obs, err := otelcache.New() // the global providers
	if err != nil {
		log.Fatal(err)
	}
	client, err := tiered.NewClient(ctx, tiered.Config{
		Observer: obs,
		Redis:    l2.Config{Addrs: []string{"localhost:6379"}},
	})
	if err != nil {
		log.Fatal(err)
	}
	defer client.Close()
	if err := redisotel.InstrumentTracing(client.Redis()); err != nil {
		log.Fatal(err)
	}
	if err := redisotel.InstrumentMetrics(client.Redis()); err != nil {
		log.Fatal(err)
	}
}

// With the OpenTelemetry Prometheus exporter as the meter provider's
// reader, the instruments appear under Prometheus names: dots become
// underscores, counters end in _total, units are spelled out.
func ExampleWithMeterProvider() {
	ctx := context.Background()
	registry := promclient.NewRegistry() // in production: served by promhttp.HandlerFor
	exporter, err := prometheus.New(prometheus.WithRegisterer(registry))
	if err != nil {
		log.Fatal(err)
	}
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(exporter))
	defer mp.Shutdown(ctx)

	obs, err := otelcache.New(otelcache.WithMeterProvider(mp))
	if err != nil {
		log.Fatal(err)
	}
	client, err := tiered.NewClient(ctx, tiered.Config{Observer: obs})
	if err != nil {
		log.Fatal(err)
	}
	defer client.Close()
	users, err := tiered.NewCache(client, "users", tiered.Options[string]{})
	if err != nil {
		log.Fatal(err)
	}
	_, err = users.Get(ctx, "42", func(ctx context.Context, id string) (string, error) { return "Ada", nil })
	if err != nil {
		log.Fatal(err)
	}

	families, err := registry.Gather()
	if err != nil {
		log.Fatal(err)
	}
	for _, f := range families {
		switch f.GetName() {
		case "strata_cache_requests_total", "strata_cache_load_duration_seconds":
			fmt.Println(f.GetName(), f.GetType())
		}
	}
	// Output:
	// strata_cache_load_duration_seconds HISTOGRAM
	// strata_cache_requests_total COUNTER
}

// spanNames returns the names of the spans rec holds, in the order they
// ended.
func spanNames(rec *tracetest.SpanRecorder) []string {
	var names []string
	for _, s := range rec.Ended() {
		names = append(names, s.Name())
	}
	return names
}

// Operations are traced only inside a sampled span of the caller's, as a
// server's instrumentation starts one per request; the loader's span is a
// child of the Get's.
func ExampleWithTracerProvider() {
	ctx := context.Background()
	rec := tracetest.NewSpanRecorder() // in production: a batching OTLP exporter
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	defer tp.Shutdown(ctx)

	obs, err := otelcache.New(otelcache.WithTracerProvider(tp))
	if err != nil {
		log.Fatal(err)
	}
	client, err := tiered.NewClient(ctx, tiered.Config{Observer: obs})
	if err != nil {
		log.Fatal(err)
	}
	defer client.Close()
	users, err := tiered.NewCache(client, "users", tiered.Options[string]{})
	if err != nil {
		log.Fatal(err)
	}

	// Outside a request span: nothing is traced.
	_, _ = users.Get(ctx, "7", func(ctx context.Context, id string) (string, error) { return "Alan", nil })

	reqCtx, req := tp.Tracer("example").Start(ctx, "GET /users/42")
	_, err = users.Get(reqCtx, "42", func(ctx context.Context, id string) (string, error) { return "Ada", nil })
	if err != nil {
		log.Fatal(err)
	}
	req.End()

	fmt.Println(spanNames(rec))
	for _, s := range rec.Ended() {
		if s.Name() == "strata.cache.get" {
			for _, kv := range s.Attributes() {
				fmt.Println(kv.Key, kv.Value.Emit())
			}
		}
	}
	// Output:
	// [strata.cache.load strata.cache.get GET /users/42]
	// strata.cache.name users
	// strata.cache.tier loader
	// strata.cache.result miss
}

// By default an L1 hit inside a request is an event on the request's span,
// a fraction of a span's cost; WithL1HitSpans(true) makes it a span of its
// own, for backends that show only spans.
func ExampleWithL1HitSpans() {
	ctx := context.Background()
	for _, on := range []bool{false, true} {
		rec := tracetest.NewSpanRecorder()
		tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
		obs, err := otelcache.New(otelcache.WithTracerProvider(tp), otelcache.WithL1HitSpans(on))
		if err != nil {
			log.Fatal(err)
		}
		client, err := tiered.NewClient(ctx, tiered.Config{Observer: obs})
		if err != nil {
			log.Fatal(err)
		}
		users, err := tiered.NewCache(client, "users", tiered.Options[string]{})
		if err != nil {
			log.Fatal(err)
		}
		if err := users.Set(ctx, "42", "Ada"); err != nil {
			log.Fatal(err)
		}

		reqCtx, req := tp.Tracer("example").Start(ctx, "GET /users/42")
		if _, err := users.Get(reqCtx, "42", nil); err != nil { // an L1 hit
			log.Fatal(err)
		}
		req.End()

		var events []string
		for _, s := range rec.Ended() {
			for _, e := range s.Events() {
				events = append(events, s.Name()+": "+e.Name)
			}
		}
		fmt.Printf("WithL1HitSpans(%t): spans %v, events %v\n", on, spanNames(rec), events)
		_ = client.Close()
		_ = tp.Shutdown(ctx)
	}
	// Output:
	// WithL1HitSpans(false): spans [GET /users/42], events [GET /users/42: strata.cache.get]
	// WithL1HitSpans(true): spans [strata.cache.get GET /users/42], events []
}

// Keys can be personal data, so they are on no span by default.
// WithKeyAttribute(true) adds them (and errors' messages), for services
// whose keys are safe to export.
func ExampleWithKeyAttribute() {
	ctx := context.Background()
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	defer tp.Shutdown(ctx)
	obs, err := otelcache.New(otelcache.WithTracerProvider(tp), otelcache.WithKeyAttribute(true))
	if err != nil {
		log.Fatal(err)
	}
	client, err := tiered.NewClient(ctx, tiered.Config{Observer: obs})
	if err != nil {
		log.Fatal(err)
	}
	defer client.Close()
	orders, err := tiered.NewCache(client, "orders", tiered.Options[string]{TTL: time.Hour})
	if err != nil {
		log.Fatal(err)
	}

	reqCtx, req := tp.Tracer("example").Start(ctx, "POST /orders")
	if err := orders.Set(reqCtx, "o-1001", "paid"); err != nil {
		log.Fatal(err)
	}
	req.End()

	for _, s := range rec.Ended() {
		for _, kv := range s.Attributes() {
			if strings.HasSuffix(string(kv.Key), ".key") {
				fmt.Println(s.Name(), kv.Key, kv.Value.Emit())
			}
		}
	}
	// Output:
	// strata.cache.set strata.cache.key o-1001
}
