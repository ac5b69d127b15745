package otelcache_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/strata-cache/strata/internal/clock"
	"github.com/strata-cache/strata/internal/redistest"
	"github.com/strata-cache/strata/l2"
	"github.com/strata-cache/strata/otelcache"
	"github.com/strata-cache/strata/tiered"
)

// replicas are n clients on one Redis and one manual clock, each with its
// own Observer, all recording spans into rec.
type replicas struct {
	traced
	clients []*tiered.Client
}

func newReplicas(t *testing.T, n int, cfg tiered.Config, opts ...otelcache.Option) *replicas {
	t.Helper()
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec), sdktrace.WithSampler(sdktrace.ParentBased(sdktrace.AlwaysSample())))
	t.Cleanup(func() { _ = tp.Shutdown(context.Background()) })
	srv := redistest.Start(t)
	clk := clock.NewManual(time.Unix(1_700_000_000, 0))
	r := &replicas{traced: traced{rec: rec, tp: tp, clk: clk}}
	for i := range n {
		obs, err := otelcache.New(append([]otelcache.Option{otelcache.WithTracerProvider(tp)}, opts...)...)
		if err != nil {
			t.Fatal(err)
		}
		cfg := cfg
		cfg.Observer, cfg.Logger, cfg.Clock, cfg.NodeID = obs, quiet, clk, fmt.Sprintf("replica-%d", i)
		cfg.Redis = l2.Config{Addrs: []string{srv.Addr()}, Timeout: time.Second}
		c, err := tiered.NewClient(context.Background(), cfg)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = c.Close() })
		r.clients = append(r.clients, c)
	}
	r.client = r.clients[0]
	return r
}

// caches opens namespace ns with opts on every replica.
func (r *replicas) caches(t *testing.T, ns string, opts tiered.Options[string]) []*tiered.Cache[string] {
	t.Helper()
	var out []*tiered.Cache[string]
	for _, c := range r.clients {
		cache, err := tiered.NewCache(c, ns, opts)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, cache)
	}
	return out
}

// inTrace returns the ended spans named name in req's trace.
func (r *replicas) inTrace(name string, req sdktrace.ReadOnlySpan) []sdktrace.ReadOnlySpan {
	var out []sdktrace.ReadOnlySpan
	for _, s := range r.spans(name) {
		if s.SpanContext().TraceID() == req.SpanContext().TraceID() {
			out = append(out, s)
		}
	}
	return out
}

// requestSpan returns the ended request span of ctx's trace.
func (r *replicas) requestSpan(t *testing.T, ctx context.Context) sdktrace.ReadOnlySpan {
	t.Helper()
	for _, s := range r.spans("request") {
		if s.SpanContext().TraceID() == traceID(ctx) {
			return s
		}
	}
	t.Fatal("no request span for the trace")
	return nil
}

// A Get on replica B that waits for replica A's load (B finds A's lease)
// answers from L2, coalesced; A's Get is the miss and its load.
func TestLeaseWaiterSpan(t *testing.T) {
	r := newReplicas(t, 2, tiered.Config{})
	cs := r.caches(t, "users", tiered.Options[string]{TTL: time.Minute})
	a, b := cs[0], cs[1]
	started, gate := make(chan struct{}), make(chan struct{})
	ctxA, reqA := r.request(context.Background())
	doneA := make(chan error, 1)
	go func() {
		_, err := a.Get(ctxA, "k", func(context.Context, string) (string, error) {
			close(started)
			<-gate
			return "v", nil
		})
		doneA <- err
	}()
	<-started
	ctxB, reqB := r.request(context.Background())
	doneB := make(chan error, 1)
	go func() {
		_, err := b.Get(ctxB, "k", func(context.Context, string) (string, error) {
			return "", fmt.Errorf("replica B loaded; it should have waited for A's lease")
		})
		doneB <- err
	}()
	redistest.WaitFor(t, 10*time.Second, func() bool { return b.Stats().LeaseWaits == 1 }, "B waits on A's lease")
	close(gate)
	if err := <-doneA; err != nil {
		t.Fatal(err)
	}
	if err := <-doneB; err != nil {
		t.Fatal(err)
	}
	reqA.End()
	reqB.End()

	getA := r.inTrace("strata.cache.get", r.requestSpan(t, ctxA))
	getB := r.inTrace("strata.cache.get", r.requestSpan(t, ctxB))
	if len(getA) != 1 || len(getB) != 1 {
		t.Fatalf("get spans: %d in A's trace, %d in B's; want one each", len(getA), len(getB))
	}
	wantAttr(t, getA[0], otelcache.AttrTier, "loader")
	wantAttr(t, getA[0], otelcache.AttrResult, "miss")
	if _, ok := attr(getA[0], otelcache.AttrCoalesced); ok {
		t.Error("A's get is coalesced; it led the load")
	}
	wantAttr(t, getB[0], otelcache.AttrTier, "l2")
	wantAttr(t, getB[0], otelcache.AttrResult, "hit")
	wantAttr(t, getB[0], otelcache.AttrCoalesced, "true")
	if loads := r.inTrace("strata.cache.load", getB[0]); len(loads) != 0 {
		t.Errorf("%d load spans in B's trace, want none", len(loads))
	}
	if loads := r.inTrace("strata.cache.load", getA[0]); len(loads) != 1 || loads[0].Parent().SpanID() != getA[0].SpanContext().SpanID() {
		t.Errorf("load spans in A's trace: %d; want one, child of A's get", len(loads))
	}
}

// An early refresh (XFetch) is flagged on the hit that started it, an L1
// hit's event or an L2 hit's span, and the refresh's own span is linked to
// the request.
func TestEarlyRefreshSpans(t *testing.T) {
	// Rand near 0 makes every XFetch draw fire once a hit is inside the
	// horizon.
	r := newReplicas(t, 1, tiered.Config{Rand: func() float64 { return 1e-9 }})
	opts := tiered.Options[string]{TTL: time.Minute, EarlyRefreshBeta: 1, Jitter: tiered.Off}
	withL1 := r.caches(t, "l1", opts)[0]
	opts.L1.Disabled = true
	withoutL1 := r.caches(t, "l2", opts)[0]
	refreshes := make(chan struct{}, 4)
	slow := func(context.Context, string) (string, error) {
		r.clk.Advance(time.Second) // the load takes a second: XFetch's delta
		select {
		case refreshes <- struct{}{}:
		default:
		}
		return "v", nil
	}
	for _, tc := range []struct {
		cache    *tiered.Cache[string]
		asEvent  bool
		wantTier string
	}{{withL1, true, "l1"}, {withoutL1, false, "l2"}} {
		t.Run(tc.wantTier, func(t *testing.T) {
			if _, err := tc.cache.Get(context.Background(), "k", slow); err != nil {
				t.Fatal(err)
			}
			<-refreshes
			r.clk.Advance(50 * time.Second) // 9 s before expiry: inside XFetch's horizon
			ctx, req := r.request(context.Background())
			if _, err := tc.cache.Get(ctx, "k", slow); err != nil {
				t.Fatal(err)
			}
			req.End()
			<-refreshes
			redistest.WaitFor(t, 10*time.Second, func() bool { return refreshLinkedTo(r, ctx) != nil }, "the refresh span ends")
			rs := refreshLinkedTo(r, ctx)
			if rs.Parent().IsValid() {
				t.Errorf("refresh span has parent %v, want a root", rs.Parent())
			}
			if tc.asEvent {
				hit := event(t, r.requestSpan(t, ctx), "strata.cache.get")
				wantEventAttr(t, hit, otelcache.AttrTier, tc.wantTier)
				wantEventAttr(t, hit, otelcache.AttrEarlyRefresh, "true")
				if rs.Links()[0].SpanContext.SpanID() != r.requestSpan(t, ctx).SpanContext().SpanID() {
					t.Error("the refresh of an L1 hit is not linked to the request span")
				}
				return
			}
			gets := r.inTrace("strata.cache.get", r.requestSpan(t, ctx))
			if len(gets) != 1 {
				t.Fatalf("%d get spans, want 1", len(gets))
			}
			wantAttr(t, gets[0], otelcache.AttrTier, tc.wantTier)
			wantAttr(t, gets[0], otelcache.AttrEarlyRefresh, "true")
			if rs.Links()[0].SpanContext.SpanID() != gets[0].SpanContext().SpanID() {
				t.Error("the refresh of an L2 hit is not linked to its get span")
			}
		})
	}
}

// refreshLinkedTo returns the ended refresh span linked to a span of ctx's
// trace, or nil.
func refreshLinkedTo(r *replicas, ctx context.Context) sdktrace.ReadOnlySpan {
	for _, s := range r.spans("strata.cache.refresh") {
		for _, l := range s.Links() {
			if l.SpanContext.TraceID() == traceID(ctx) {
				return s
			}
		}
	}
	return nil
}

// A GetMany over keys from every tier counts them by tier on its span,
// with one load span under it for the missing keys.
func TestGetManyMixedTiersSpan(t *testing.T) {
	r := newReplicas(t, 2, tiered.Config{})
	cs := r.caches(t, "users", tiered.Options[string]{TTL: time.Minute})
	a, b := cs[0], cs[1]
	ctx := context.Background()
	if err := a.Set(ctx, "in-l1", "1"); err != nil { // in A's L1
		t.Fatal(err)
	}
	if err := b.Set(ctx, "in-l2", "2"); err != nil { // in L2, not in A's L1
		t.Fatal(err)
	}
	ctx, req := r.request(ctx)
	got, err := a.GetMany(ctx, []string{"in-l1", "in-l2", "loaded", "absent", "in-l1"}, func(_ context.Context, keys []string) (map[string]string, error) {
		return map[string]string{"loaded": "3"}, nil // "absent" is not found
	})
	if err != nil || len(got) != 3 {
		t.Fatalf("GetMany = %v, %v; want 3 values", got, err)
	}
	req.End()
	many := r.inTrace("strata.cache.get_many", r.requestSpan(t, ctx))
	if len(many) != 1 {
		t.Fatalf("%d get_many spans, want 1", len(many))
	}
	s := many[0]
	wantAttr(t, s, otelcache.AttrKeys, "5")
	wantAttr(t, s, otelcache.AttrKeysL1, "1")
	wantAttr(t, s, otelcache.AttrKeysL2, "1")
	wantAttr(t, s, otelcache.AttrKeysMiss, "2")
	wantAttr(t, s, otelcache.AttrKeysStale, "0")
	loads := r.inTrace("strata.cache.load", s)
	if len(loads) != 1 || loads[0].Parent().SpanID() != s.SpanContext().SpanID() {
		t.Errorf("%d load spans; want one, child of get_many", len(loads))
	}
	if st := a.Stats(); st.L1Hits != 1 || st.L2Hits != 1 || st.Misses != 2 {
		t.Errorf("stats %+v; want the span's counts", st)
	}
}

// With WithL1HitSpans an L1 hit is a span of its own, a child of the
// request's, instead of an event.
func TestL1HitSpans(t *testing.T) {
	r := newReplicas(t, 1, tiered.Config{}, otelcache.WithL1HitSpans(true))
	cache := r.caches(t, "users", tiered.Options[string]{TTL: time.Minute, NegativeTTL: time.Minute})[0]
	ctx := context.Background()
	if err := cache.Set(ctx, "k", "v"); err != nil {
		t.Fatal(err)
	}
	if _, err := cache.Get(ctx, "ghost", func(context.Context, string) (string, error) { return "", tiered.ErrNotFound }); err == nil {
		t.Fatal("ghost found")
	}
	ctx, req := r.request(ctx)
	if _, err := cache.Get(ctx, "k", nil); err != nil {
		t.Fatal(err)
	}
	if _, err := cache.Get(ctx, "ghost", nil); err == nil {
		t.Fatal("ghost found")
	}
	req.End()
	rs := r.requestSpan(t, ctx)
	gets := r.inTrace("strata.cache.get", rs)
	if len(gets) != 2 || len(rs.Events()) != 0 {
		t.Fatalf("%d get spans and %d events; want 2 spans, no event", len(gets), len(rs.Events()))
	}
	for i, want := range []string{"hit", "negative"} {
		if gets[i].Parent().SpanID() != rs.SpanContext().SpanID() {
			t.Errorf("get span %d is not the request's child", i)
		}
		wantAttr(t, gets[i], otelcache.AttrTier, "l1")
		wantAttr(t, gets[i], otelcache.AttrResult, want)
		if gets[i].Status().Code != 0 {
			t.Errorf("get span %d: status %v; a negative hit is no error", i, gets[i].Status())
		}
	}
}

func traceID(ctx context.Context) trace.TraceID { return trace.SpanContextFromContext(ctx).TraceID() }
