package otelcache_test

import (
	"context"
	"math"
	"testing"
	"time"

	"go.opentelemetry.io/otel/sdk/metric/metricdata"

	"github.com/strata-cache/strata/internal/redistest"
	"github.com/strata-cache/strata/l2"
	"github.com/strata-cache/strata/tiered"
)

// The consistency auditor's verdicts and nines are exported per namespace.
func TestAuditMetrics(t *testing.T) {
	ctx := context.Background()
	obs, reader := newObserved(t)
	srv := redistest.Start(t)
	c, err := tiered.NewClient(ctx, tiered.Config{Observer: obs, Logger: quiet,
		Redis: l2.Config{Addrs: []string{srv.Addr()}, Timeout: time.Second},
		Audit: tiered.AuditConfig{SampleRate: 1, MaxRate: 10_000}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	cache, err := tiered.NewCache(c, "users", tiered.Options[string]{TTL: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	if err := cache.Set(ctx, "k", "v"); err != nil {
		t.Fatal(err)
	}
	for range 10 {
		if _, err := cache.Get(ctx, "k", nil); err != nil {
			t.Fatal(err)
		}
	}
	redistest.WaitFor(t, 10*time.Second, func() bool { return cache.Stats().Audit.Samples == 10 }, "10 hits audited")
	m := collect(t, reader)
	g, ok := m["strata.cache.audit.nines"].(metricdata.Gauge[float64])
	if !ok || len(g.DataPoints) != 1 || math.Abs(g.DataPoints[0].Value-1) > 1e-9 {
		t.Fatalf("strata.cache.audit.nines = %+v, want one point of 1 (10 consistent samples)", m["strata.cache.audit.nines"])
	}
	s, ok := m["strata.cache.audit.samples"].(metricdata.Sum[int64])
	if !ok {
		t.Fatalf("strata.cache.audit.samples = %+v", m["strata.cache.audit.samples"])
	}
	for _, p := range s.DataPoints {
		if r, _ := p.Attributes.Value("strata.cache.result"); r.AsString() == "consistent" && p.Value != 10 {
			t.Errorf("consistent samples = %d, want 10", p.Value)
		}
	}
}
