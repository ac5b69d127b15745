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

	"github.com/redis/go-redis/v9"

	"github.com/strata-cache/strata/coherence"
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

// observedClient is a client named "a" with obs on a Redis of its own,
// closed at the end of the test.
func observedClient(t *testing.T, obs tiered.Observer) (*tiered.Client, *redistest.Server) {
	t.Helper()
	srv := redistest.Start(t)
	c, err := tiered.NewClient(context.Background(), tiered.Config{NodeID: "a", Observer: obs, Logger: quiet,
		Redis: l2.Config{Addrs: []string{srv.Addr()}, Timeout: time.Second}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c, srv
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
	keys := otelcache.AttrKind.String("keys")
	pubsub := otelcache.AttrTransport.String("pubsub")
	if n := sum(t, collect(t, readerA), "strata.cache.invalidations", pubsub, otelcache.AttrDirection.String("sent"), keys); n < 1 {
		t.Errorf("invalidations{pubsub,sent,keys} by a = %d, want at least 1", n)
	}
	gotB = collect(t, readerB)
	if n := sum(t, gotB, "strata.cache.invalidations", pubsub, otelcache.AttrDirection.String("received"), keys); n < 1 {
		t.Errorf("invalidations{pubsub,received,keys} on b = %d, want at least 1", n)
	}
	if n := sum(t, gotB, "strata.cache.invalidations", otelcache.AttrDirection.String("applied"), keys); n < 1 {
		t.Errorf("invalidations{applied,keys} on b = %d, want at least 1", n)
	}
}

// A cached "not found" counts as a negative result per tier, and L1's
// contents are read from its own stats.
func TestNegativeAndL1Metrics(t *testing.T) {
	ctx := context.Background()
	obs, reader := newObserved(t)
	c, _ := observedClient(t, obs)
	cache, err := tiered.NewCache(c, "users", tiered.Options[string]{TTL: time.Hour, NegativeTTL: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	for range 3 { // a miss, then two negative L1 hits
		if _, err := cache.Get(ctx, "ghost", func(context.Context, string) (string, error) { return "", tiered.ErrNotFound }); err == nil {
			t.Fatal("ghost found")
		}
	}
	if err := cache.Set(ctx, "k", "value"); err != nil {
		t.Fatal(err)
	}
	got := collect(t, reader)
	name := otelcache.AttrName.String("users")
	l1 := otelcache.AttrTier.String("l1")
	if n := sum(t, got, "strata.cache.requests", name, l1, otelcache.AttrResult.String("negative")); n != 2 {
		t.Errorf("requests{l1,negative} = %d, want 2", n)
	}
	if n := sum(t, got, "strata.cache.requests", name, l1, otelcache.AttrResult.String("hit")); n != 0 {
		t.Errorf("requests{l1,hit} = %d, want 0 (the hits were negative)", n)
	}
	st := cache.Stats().L1
	if n := sum(t, got, "strata.cache.entry.count", name); n != 2 || n != st.Entries {
		t.Errorf("entry.count = %d, want 2 (the negative entry and k), as Stats.L1 says (%d)", n, st.Entries)
	}
	if n := sum(t, got, "strata.cache.memory.usage", name); n <= 0 || n != st.Cost {
		t.Errorf("memory.usage = %d, want Stats.L1.Cost (%d)", n, st.Cost)
	}
}

// A sequence lost on both channels shows as a gap and an L1 flush with its
// reason; a forged, undecodable message as dropped on its transport.
func TestGapAndFlushMetrics(t *testing.T) {
	ctx := context.Background()
	obs, reader := newObserved(t)
	c, srv := observedClient(t, obs)
	redistest.WaitFor(t, 10*time.Second, func() bool { return c.Health().Trusted }, "pub/sub vouches")
	rdb := redis.NewClient(&redis.Options{Addr: srv.Addr()})
	t.Cleanup(func() { _ = rdb.Close() })
	channel := l2.DefaultPrefix + ":invalidations"
	for _, seq := range []uint64{1, 3} { // 2 is lost
		m := coherence.Message{Origin: "ghost", Epoch: 1, Seq: seq, Kind: coherence.KindKeys, Namespace: "users",
			Items: []string{"x"}, SentAt: time.Now().UnixNano()}
		if err := rdb.Publish(ctx, channel, coherence.Encode(&m, nil)).Err(); err != nil {
			t.Fatal(err)
		}
	}
	if err := rdb.Publish(ctx, channel, "not a message").Err(); err != nil {
		t.Fatal(err)
	}
	pubsub := otelcache.AttrTransport.String("pubsub")
	redistest.WaitFor(t, 10*time.Second, func() bool {
		got := collect(t, reader)
		return sum(t, got, "strata.cache.invalidation.gaps") == 1 &&
			sum(t, got, "strata.cache.l1.flushes", otelcache.AttrReason.String("gap")) == 1
	}, "the gap counted, with its flush")
	got := collect(t, reader)
	if n := sum(t, got, "strata.cache.invalidations", pubsub, otelcache.AttrDirection.String("received"), otelcache.AttrKind.String("keys")); n != 2 {
		t.Errorf("invalidations{pubsub,received,keys} = %d, want 2", n)
	}
	if n := sum(t, got, "strata.cache.invalidations", pubsub, otelcache.AttrDirection.String("dropped")); n != 1 {
		t.Errorf("invalidations{pubsub,dropped} = %d, want 1", n)
	}
	if n := sum(t, got, "strata.cache.l1.flushes", otelcache.AttrReason.String("trust_regained")); n != 0 {
		t.Errorf("l1.flushes{trust_regained} = %d, want 0", n)
	}
	if h := c.Health(); h.LastFlush == nil || h.LastFlush.Reason != "sequence gap" {
		t.Errorf("Health().LastFlush = %+v, want the gap", h.LastFlush)
	}
}

// The gauges read each client's Health: the pub/sub channel vouching and
// its server serving, with its breaker closed.
func TestGauges(t *testing.T) {
	obs, reader := newObserved(t)
	_, srv := observedClient(t, obs)
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

// Every operation but a fresh L1 hit is timed, by operation, tier and
// result, with error.type on failures; untraced requests too.
func TestOperationDuration(t *testing.T) {
	ctx := context.Background()
	obs, reader := newObserved(t)
	c, _ := observedClient(t, obs)
	cache, err := tiered.NewCache(c, "users", tiered.Options[string]{TTL: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	load := func(context.Context, string) (string, error) { return "v", nil }
	for range 3 { // a miss, then two L1 hits
		if _, err := cache.Get(ctx, "k", load); err != nil {
			t.Fatal(err)
		}
	}
	if err := cache.Set(ctx, "k", "w"); err != nil {
		t.Fatal(err)
	}
	if err := cache.Set(ctx, "", "w"); err == nil {
		t.Fatal("empty key accepted")
	}
	if _, err := cache.GetMany(ctx, []string{"k", "j"}, nil); err != nil {
		t.Fatal(err)
	}
	h, ok := collect(t, reader)["strata.cache.operation.duration"].(metricdata.Histogram[float64])
	if !ok {
		t.Fatal("no strata.cache.operation.duration histogram")
	}
	name := otelcache.AttrName.String("users")
	count := func(attrs ...attribute.KeyValue) uint64 {
		want := attribute.NewSet(append(attrs, name)...)
		for _, dp := range h.DataPoints {
			if dp.Attributes.Equals(&want) {
				return dp.Count
			}
		}
		return 0
	}
	op := otelcache.AttrOperation.String
	for _, tc := range []struct {
		attrs []attribute.KeyValue
		want  uint64
	}{
		{[]attribute.KeyValue{op("get"), otelcache.AttrTier.String("loader"), otelcache.AttrResult.String("miss")}, 1},
		{[]attribute.KeyValue{op("get"), otelcache.AttrTier.String("l1"), otelcache.AttrResult.String("hit")}, 0},
		{[]attribute.KeyValue{op("set")}, 1},
		{[]attribute.KeyValue{op("set"), otelcache.AttrErrorType.String("invalid_key")}, 1},
		{[]attribute.KeyValue{op("get_many")}, 1},
	} {
		if n := count(tc.attrs...); n != tc.want {
			t.Errorf("operation.duration%v: %d points, want %d", tc.attrs, n, tc.want)
		}
	}
	if len(h.DataPoints) != 4 {
		t.Errorf("%d series, want 4: %+v", len(h.DataPoints), h.DataPoints)
	}
}

// A write-behind cache's flushing shows as counters and a flush-duration
// histogram.
func TestWriteBehindMetrics(t *testing.T) {
	ctx := context.Background()
	obs, reader := newObserved(t)
	c, _ := observedClient(t, obs)
	cache, err := tiered.NewCache(c, "users", tiered.Options[string]{TTL: time.Hour, WriteBehind: &tiered.WriteBehind[string]{
		Flush: func(context.Context, []tiered.Write[string]) error { return nil }, Interval: 5 * time.Millisecond}})
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"a", "b"} {
		if err := cache.Set(ctx, k, "v"); err != nil {
			t.Fatal(err)
		}
	}
	name := otelcache.AttrName.String("users")
	redistest.WaitFor(t, 10*time.Second, func() bool {
		return sum(t, collect(t, reader), "strata.cache.writebehind.flushed", name) == 2
	}, "two writes flushed")
	h, ok := collect(t, reader)["strata.cache.writebehind.flush.duration"].(metricdata.Histogram[float64])
	if !ok || len(h.DataPoints) == 0 || h.DataPoints[0].Count == 0 {
		t.Errorf("flush.duration: %+v, want the Flush calls", h)
	}
}
