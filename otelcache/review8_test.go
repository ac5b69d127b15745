package otelcache_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	"go.opentelemetry.io/otel/trace"

	"github.com/strata-cache/strata/otelcache"
	"github.com/strata-cache/strata/tiered"
)

// TestReview8L1HitSeriesNeverNegative shows that the monotonic counter
// strata.cache.requests{tier=l1,result=hit}, exported as
// Stats.L1Hits-Stats.L1NegativeHits, is observed negative (or decreasing)
// while negative L1 hits are being counted: tiered's snapshot reads L1Hits
// before L1NegativeHits, and a hit adds to them in the same order.
func TestReview8L1HitSeriesNeverNegative(t *testing.T) {
	ctx := context.Background()
	obs, reader := newObserved(t)
	c, err := tiered.NewClient(ctx, tiered.Config{NodeID: "a", Observer: obs, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	cache, err := tiered.NewCache(c, "users", tiered.Options[string]{TTL: time.Hour, NegativeTTL: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	absent := func(context.Context, string) (string, error) { return "", tiered.ErrNotFound }
	_, _ = cache.Get(ctx, "absent", absent)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
					_, _ = cache.Get(ctx, "absent", absent)
				}
			}
		}()
	}
	hit := attribute.NewSet(otelcache.AttrName.String("users"), otelcache.AttrTier.String("l1"), otelcache.AttrResult.String("hit"))
	var bad []int64
	prev := int64(0)
	deadline := time.Now().Add(3 * time.Second)
	for time.Now().Before(deadline) && len(bad) == 0 {
		got := collect(t, reader)
		s, _ := got["strata.cache.requests"].(metricdata.Sum[int64])
		for _, dp := range s.DataPoints {
			if dp.Attributes.Equals(&hit) {
				if dp.Value < 0 || dp.Value < prev {
					bad = append(bad, prev, dp.Value)
				}
				prev = dp.Value
			}
		}
	}
	close(stop)
	wg.Wait()
	if len(bad) > 0 {
		t.Errorf("strata.cache.requests{l1,hit} (monotonic, only negative hits made) went from %d to %d", bad[0], bad[1])
	}
}

// TestReview8UntracedHitsDoNotAllocate shows whether untraced L1 hits
// allocate on the other entry points: GetWithInfo, a negative hit, and a
// Get with a loader, with no parent and under an unsampled one.
func TestReview8UntracedHitsDoNotAllocate(t *testing.T) {
	tr := newTraced(t)
	cache, err := tiered.NewCache(tr.client, "users", tiered.Options[string]{TTL: time.Hour, NegativeTTL: time.Hour, EarlyRefreshBeta: tiered.Off})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if err := cache.Set(ctx, "k", "v"); err != nil {
		t.Fatal(err)
	}
	load := func(context.Context, string) (string, error) { return "", tiered.ErrNotFound }
	_, _ = cache.Get(ctx, "absent", load)
	unsampled := trace.ContextWithSpanContext(ctx, trace.NewSpanContext(trace.SpanContextConfig{TraceID: trace.TraceID{1}, SpanID: trace.SpanID{1}}))
	for name, ctx := range map[string]context.Context{"no parent": ctx, "unsampled": unsampled} {
		for what, f := range map[string]func(){
			"GetWithInfo": func() { _, _, _ = cache.GetWithInfo(ctx, "k", nil) },
			"negative":    func() { _, _ = cache.Get(ctx, "absent", load) },
			"with loader": func() { _, _ = cache.Get(ctx, "k", load) },
		} {
			if a := testing.AllocsPerRun(200, f); a != 0 {
				t.Errorf("%s, %s: %v allocs per L1 hit", name, what, a)
			}
		}
	}
	if n := len(tr.rec.Ended()); n != 0 {
		t.Errorf("%d spans ended without a sampled request", n)
	}
}
