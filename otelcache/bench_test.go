package otelcache_test

import (
	"context"
	"testing"
	"time"

	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"

	"github.com/strata-cache/strata/internal/redistest"
	"github.com/strata-cache/strata/l2"
	"github.com/strata-cache/strata/otelcache"
	"github.com/strata-cache/strata/tiered"
)

// benchObserver is otelcache on a real SDK meter provider and a tracer
// provider with sampler s.
func benchObserver(b *testing.B, s sdktrace.Sampler, opts ...otelcache.Option) tiered.Observer {
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(sdkmetric.NewManualReader()))
	tp := sdktrace.NewTracerProvider(sdktrace.WithSampler(s))
	b.Cleanup(func() {
		_ = mp.Shutdown(context.Background())
		_ = tp.Shutdown(context.Background())
	})
	obs, err := otelcache.New(append([]otelcache.Option{otelcache.WithMeterProvider(mp), otelcache.WithTracerProvider(tp)}, opts...)...)
	if err != nil {
		b.Fatal(err)
	}
	return obs
}

// benchCases: no observer; otelcache with parent-based never-sample (what
// an L1 hit costs in an untraced request); otelcache tracing every
// request (a sampled parent span: an L1 hit is an event on it, or with
// WithL1HitSpans a span).
var benchCases = []struct {
	name    string
	obs     func(b *testing.B) tiered.Observer
	sampled bool
}{
	{"bare", func(*testing.B) tiered.Observer { return nil }, false},
	{"otelcache", func(b *testing.B) tiered.Observer {
		return benchObserver(b, sdktrace.ParentBased(sdktrace.NeverSample()))
	}, false},
	{"otelcache-sampled", func(b *testing.B) tiered.Observer { return benchObserver(b, sdktrace.AlwaysSample()) }, true},
	{"otelcache-sampled-hit-spans", func(b *testing.B) tiered.Observer {
		return benchObserver(b, sdktrace.AlwaysSample(), otelcache.WithL1HitSpans(true))
	}, true},
}

func benchGet(b *testing.B, redisAddr string, disableL1 bool) {
	for _, tc := range benchCases {
		b.Run(tc.name, func(b *testing.B) {
			ctx := context.Background()
			cfg := tiered.Config{Logger: quiet}
			if redisAddr != "" {
				cfg.Redis = l2.Config{Addrs: []string{redisAddr}, Timeout: time.Second}
			}
			obs := tc.obs(b)
			if obs != nil {
				cfg.Observer = obs
			}
			c, err := tiered.NewClient(ctx, cfg)
			if err != nil {
				b.Fatal(err)
			}
			b.Cleanup(func() { _ = c.Close() })
			cache, err := tiered.NewCache(c, "bench-"+tc.name, tiered.Options[string]{TTL: time.Hour, L1: tiered.L1Options{Disabled: disableL1}})
			if err != nil {
				b.Fatal(err)
			}
			if err := cache.Set(ctx, "k", "v"); err != nil {
				b.Fatal(err)
			}
			if tc.sampled {
				tp := sdktrace.NewTracerProvider(sdktrace.WithSampler(sdktrace.AlwaysSample()))
				b.Cleanup(func() { _ = tp.Shutdown(context.Background()) })
				ctx, _ = tp.Tracer("bench").Start(ctx, "request")
			}
			b.ReportAllocs()
			for b.Loop() {
				if _, err := cache.Get(ctx, "k", nil); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkL1Hit: L1 hits with and without otelcache (see benchCases).
func BenchmarkL1Hit(b *testing.B) { benchGet(b, "", false) }

// BenchmarkL2Hit: L2 hits (L1 off) with and without otelcache, on real Redis.
func BenchmarkL2Hit(b *testing.B) { benchGet(b, redistest.Start(b).Addr(), true) }
