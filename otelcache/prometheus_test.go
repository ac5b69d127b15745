package otelcache_test

import (
	"context"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	promclient "github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel/exporters/prometheus"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"

	"github.com/strata-cache/strata/internal/redistest"
	"github.com/strata-cache/strata/otelcache"
	"github.com/strata-cache/strata/tiered"
)

// How OpenTelemetry's Prometheus exporter renders the instruments: the
// names the package doc promises.
func TestPrometheusNames(t *testing.T) {
	ctx := context.Background()
	reg := promclient.NewRegistry()
	exporter, err := prometheus.New(prometheus.WithRegisterer(reg))
	if err != nil {
		t.Fatal(err)
	}
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(exporter))
	t.Cleanup(func() { _ = mp.Shutdown(ctx) })
	obs, err := otelcache.New(otelcache.WithMeterProvider(mp))
	if err != nil {
		t.Fatal(err)
	}
	c, _ := observedClient(t, obs)
	cache, err := tiered.NewCache(c, "users", tiered.Options[string]{TTL: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cache.Get(ctx, "k", func(context.Context, string) (string, error) { return "v", nil }); err != nil {
		t.Fatal(err)
	}
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, f := range families {
		names = append(names, f.GetName())
	}
	for _, want := range []string{
		"strata_cache_requests_total",
		"strata_cache_load_duration_seconds",
		"strata_cache_entry_count",
		"strata_cache_memory_usage_bytes",
		"strata_cache_evictions_total",
		"strata_cache_invalidations_total",
		"strata_cache_l1_flushes_total",
		"strata_cache_link_trusted_ratio",
		"strata_cache_l2_serving_ratio",
	} {
		if !slices.Contains(names, want) {
			t.Errorf("no %s among %v", want, names)
		}
	}
}

// The README's metrics table documents every instrument, and no other.
func TestREADMEListsEveryMetric(t *testing.T) {
	readme, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	_, table, _ := strings.Cut(string(readme), "## Metrics")
	documented := map[string]bool{}
	for _, line := range strings.Split(table, "\n") {
		if m := regexp.MustCompile("^\\| `(strata\\.cache\\.[a-z0-9_.]+)`").FindStringSubmatch(line); m != nil {
			documented[m[1]] = true
		}
	}
	ctx := context.Background()
	obs, reader := newObserved(t)
	c, _ := observedClient(t, obs)
	cache, err := tiered.NewCache(c, "users", tiered.Options[string]{TTL: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cache.Get(ctx, "k", func(context.Context, string) (string, error) { return "v", nil }); err != nil {
		t.Fatal(err)
	}
	redistest.WaitFor(t, 10*time.Second, func() bool { return c.Health().Trusted }, "pub/sub vouches")
	made := map[string]bool{ // recorded only when another replica's invalidation arrives, a write-behind Flush runs or the auditor checked a hit
		"strata.cache.invalidation.lag": true, "strata.cache.writebehind.flush.duration": true, "strata.cache.audit.nines": true}
	for name := range collect(t, reader) {
		made[name] = true
		if !documented[name] {
			t.Errorf("%s is not in README.md's table", name)
		}
	}
	for name := range documented {
		if !made[name] {
			t.Errorf("README.md documents %s, which is not made", name)
		}
	}
}
