package otelcache_test

import (
	"context"
	"io"
	"log/slog"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	"go.uber.org/goleak"

	"github.com/strata-cache/strata/internal/redistest"
	"github.com/strata-cache/strata/l2"
	"github.com/strata-cache/strata/otelcache"
	"github.com/strata-cache/strata/tiered"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

// newObserved returns an Observer on a fresh meter provider read by hand.
func newObserved(t testing.TB) (*otelcache.Observer, *sdkmetric.ManualReader) {
	t.Helper()
	reader := sdkmetric.NewManualReader()
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
	t.Cleanup(func() { _ = mp.Shutdown(context.Background()) })
	obs, err := otelcache.New(otelcache.WithMeterProvider(mp))
	if err != nil {
		t.Fatal(err)
	}
	return obs, reader
}

func collect(t *testing.T, r *sdkmetric.ManualReader) map[string]metricdata.Aggregation {
	t.Helper()
	var rm metricdata.ResourceMetrics
	if err := r.Collect(context.Background(), &rm); err != nil {
		t.Fatal(err)
	}
	out := map[string]metricdata.Aggregation{}
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			out[m.Name] = m.Data
		}
	}
	return out
}

// sum returns the value of counter name at the data point with attrs.
func sum(t *testing.T, got map[string]metricdata.Aggregation, name string, attrs ...attribute.KeyValue) int64 {
	t.Helper()
	s, ok := got[name].(metricdata.Sum[int64])
	if !ok {
		t.Fatalf("%s: %T, want an int64 sum", name, got[name])
	}
	want := attribute.NewSet(attrs...)
	for _, dp := range s.DataPoints {
		if dp.Attributes.Equals(&want) {
			return dp.Value
		}
	}
	return 0
}

// Two replicas on one Redis: a miss and its load, an L1 hit, an L2 hit on
// the other replica, and an invalidation whose lag the other replica
// records.
func TestMetricsAcrossTiers(t *testing.T) {
	ctx := context.Background()
	srv := redistest.Start(t)
	obsA, readerA := newObserved(t)
	obsB, readerB := newObserved(t)
	open := func(name string, obs tiered.Observer) *tiered.Cache[string] {
		c, err := tiered.NewClient(ctx, tiered.Config{NodeID: name, Observer: obs, Logger: quiet,
			Redis: l2.Config{Addrs: []string{srv.Addr()}, Timeout: time.Second}})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = c.Close() })
		cache, err := tiered.NewCache(c, "users", tiered.Options[string]{TTL: time.Hour})
		if err != nil {
			t.Fatal(err)
		}
		return cache
	}
	a, b := open("a", obsA), open("b", obsB)
	load := func(context.Context, string) (string, error) { return "v", nil }
	for _, get := range []*tiered.Cache[string]{a, a, b} { // miss + load, L1 hit, L2 hit
		if _, err := get.Get(ctx, "k", load); err != nil {
			t.Fatal(err)
		}
	}
	name := otelcache.AttrName.String("users")
	gotA, gotB := collect(t, readerA), collect(t, readerB)
	for _, tc := range []struct {
		got        map[string]metricdata.Aggregation
		tier, res  string
		want       int64
		replicaTag string
	}{
		{gotA, "loader", "miss", 1, "a"}, {gotA, "l1", "hit", 1, "a"}, {gotB, "l2", "hit", 1, "b"}, {gotB, "l1", "hit", 0, "b"},
	} {
		if n := sum(t, tc.got, "strata.cache.requests", name, otelcache.AttrTier.String(tc.tier), otelcache.AttrResult.String(tc.res)); n != tc.want {
			t.Errorf("replica %s: requests{tier=%s,result=%s} = %d, want %d", tc.replicaTag, tc.tier, tc.res, n, tc.want)
		}
	}
	loads, ok := gotA["strata.cache.load.duration"].(metricdata.Histogram[float64])
	if !ok || len(loads.DataPoints) != 1 || loads.DataPoints[0].Count != 1 {
		t.Errorf("load.duration on a: %+v, want one load", gotA["strata.cache.load.duration"])
	}

	// A's Set reaches B's L1 as an invalidation: B records its lag.
	if err := a.Set(ctx, "k", "w"); err != nil {
		t.Fatal(err)
	}
	redistest.WaitFor(t, 10*time.Second, func() bool {
		lag, ok := collect(t, readerB)["strata.cache.invalidation.lag"].(metricdata.Histogram[float64])
		return ok && len(lag.DataPoints) == 1 && lag.DataPoints[0].Count >= 1
	}, "B records the invalidation's lag")
	if n := sum(t, collect(t, readerA), "strata.cache.invalidations", otelcache.AttrDirection.String("sent")); n < 1 {
		t.Errorf("invalidations sent by a = %d, want at least 1", n)
	}
}

// The gauges read each client's Health: the pub/sub channel vouching and
// its server serving, with its breaker closed.
func TestGauges(t *testing.T) {
	ctx := context.Background()
	srv := redistest.Start(t)
	obs, reader := newObserved(t)
	c, err := tiered.NewClient(ctx, tiered.Config{NodeID: "a", Observer: obs, Logger: quiet,
		Redis: l2.Config{Addrs: []string{srv.Addr()}, Timeout: time.Second}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	gauge := func(got map[string]metricdata.Aggregation, name string, attrs ...attribute.KeyValue) (int64, bool) {
		g, ok := got[name].(metricdata.Gauge[int64])
		if !ok {
			return 0, false
		}
		want := attribute.NewSet(attrs...)
		for _, dp := range g.DataPoints {
			if dp.Attributes.Equals(&want) {
				return dp.Value, true
			}
		}
		return 0, false
	}
	node := otelcache.AttrNode.String("a")
	redistest.WaitFor(t, 10*time.Second, func() bool {
		v, ok := gauge(collect(t, reader), "strata.cache.link.trusted", node, otelcache.AttrChannel.String("pubsub"))
		return ok && v == 1
	}, "the pub/sub channel vouching")
	got := collect(t, reader)
	server := otelcache.AttrServer.String(srv.Addr())
	if v, ok := gauge(got, "strata.cache.l2.serving", node, server); !ok || v != 1 {
		t.Errorf("l2.serving = %d (%v), want 1", v, ok)
	}
	if v, ok := gauge(got, "strata.cache.l2.breaker.state", node, server); !ok || v != 0 {
		t.Errorf("l2.breaker.state = %d (%v), want 0 (closed)", v, ok)
	}
}
