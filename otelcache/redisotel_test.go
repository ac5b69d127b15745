package otelcache_test

import (
	"context"
	"testing"
	"time"

	"github.com/redis/go-redis/extra/redisotel/v9"

	"github.com/strata-cache/strata/tiered"
)

// Redis command spans come from go-redis's redisotel on Client.Redis(), not
// from otelcache: under a traced Get they are children of its span (the L2
// round trips), beside the load span.
func TestRedisotelCommandSpans(t *testing.T) {
	r := newReplicas(t, 1, tiered.Config{})
	if err := redisotel.InstrumentTracing(r.client.Redis(), redisotel.WithTracerProvider(r.tp)); err != nil {
		t.Fatal(err)
	}
	cache := r.caches(t, "users", tiered.Options[string]{TTL: time.Minute, L1: tiered.L1Options{Disabled: true}})[0]
	ctx, req := r.request(context.Background())
	load := func(context.Context, string) (string, error) { return "v", nil }
	for range 2 { // a miss with its load and fill, then an L2 hit
		if _, err := cache.Get(ctx, "k", load); err != nil {
			t.Fatal(err)
		}
	}
	req.End()
	gets := r.inTrace("strata.cache.get", r.requestSpan(t, ctx))
	if len(gets) != 2 {
		t.Fatalf("%d get spans, want 2", len(gets))
	}
	for i, g := range gets {
		var cmds []string
		for _, s := range r.rec.Ended() {
			if s.Parent().SpanID() == g.SpanContext().SpanID() && s.Name() != "strata.cache.load" {
				cmds = append(cmds, s.Name())
			}
		}
		// The miss reads and leases, then fills: two round trips; the hit
		// reads: one.
		if want := 2 - i; len(cmds) < want {
			t.Errorf("get %d: Redis spans %v under it, want at least %d", i, cmds, want)
		}
	}
}
