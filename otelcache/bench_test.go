package otelcache_test

import (
	"context"
	"testing"
	"time"

	sdkmetric "go.opentelemetry.io/otel/sdk/metric"

	"github.com/strata-cache/strata/otelcache"
	"github.com/strata-cache/strata/tiered"
)

// L1 hits with and without the Observer, on a real SDK meter provider: the
// Observer's share of a hit is one type switch (the counts come from Stats
// at collection time).
func BenchmarkL1Hit(b *testing.B) {
	for _, tc := range []struct {
		name string
		obs  func(b *testing.B) tiered.Observer
	}{
		{"bare", func(*testing.B) tiered.Observer { return nil }},
		{"otelcache", func(b *testing.B) tiered.Observer {
			mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(sdkmetric.NewManualReader()))
			b.Cleanup(func() { _ = mp.Shutdown(context.Background()) })
			obs, err := otelcache.New(otelcache.WithMeterProvider(mp))
			if err != nil {
				b.Fatal(err)
			}
			return obs
		}},
	} {
		b.Run(tc.name, func(b *testing.B) {
			ctx := context.Background()
			cfg := tiered.Config{Logger: quiet}
			if o := tc.obs(b); o != nil {
				cfg.Observer = o
			}
			c, err := tiered.NewClient(ctx, cfg)
			if err != nil {
				b.Fatal(err)
			}
			b.Cleanup(func() { _ = c.Close() })
			cache, err := tiered.NewCache(c, "bench", tiered.Options[string]{TTL: time.Hour})
			if err != nil {
				b.Fatal(err)
			}
			if err := cache.Set(ctx, "k", "v"); err != nil {
				b.Fatal(err)
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
