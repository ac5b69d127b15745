package otelcache_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/strata-cache/strata/internal/clock"
	"github.com/strata-cache/strata/internal/redistest"
	"github.com/strata-cache/strata/l2"
	"github.com/strata-cache/strata/otelcache"
	"github.com/strata-cache/strata/tiered"
)

// traced is a client on a fresh Redis whose Observer records spans.
type traced struct {
	rec    *tracetest.SpanRecorder
	tp     *sdktrace.TracerProvider
	client *tiered.Client
	clk    *clock.Manual
}

func newTraced(t *testing.T, opts ...otelcache.Option) *traced {
	t.Helper()
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec), sdktrace.WithSampler(sdktrace.ParentBased(sdktrace.AlwaysSample())))
	t.Cleanup(func() { _ = tp.Shutdown(context.Background()) })
	obs, err := otelcache.New(append([]otelcache.Option{otelcache.WithTracerProvider(tp)}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	srv := redistest.Start(t)
	clk := clock.NewManual(time.Unix(1_700_000_000, 0))
	c, err := tiered.NewClient(context.Background(), tiered.Config{Observer: obs, Logger: quiet, Clock: clk,
		Redis: l2.Config{Addrs: []string{srv.Addr()}, Timeout: time.Second}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return &traced{rec: rec, tp: tp, client: c, clk: clk}
}

// request starts a sampled request span, as a server's instrumentation would.
func (tr *traced) request(ctx context.Context) (context.Context, trace.Span) {
	return tr.tp.Tracer("test").Start(ctx, "request")
}

// spans returns the ended spans named name.
func (tr *traced) spans(name string) []sdktrace.ReadOnlySpan {
	var out []sdktrace.ReadOnlySpan
	for _, s := range tr.rec.Ended() {
		if s.Name() == name {
			out = append(out, s)
		}
	}
	return out
}

func attr(s sdktrace.ReadOnlySpan, k attribute.Key) (attribute.Value, bool) {
	for _, kv := range s.Attributes() {
		if kv.Key == k {
			return kv.Value, true
		}
	}
	return attribute.Value{}, false
}

// event returns s's only event named name.
func event(t *testing.T, s sdktrace.ReadOnlySpan, name string) sdktrace.Event {
	t.Helper()
	var found []sdktrace.Event
	for _, e := range s.Events() {
		if e.Name == name {
			found = append(found, e)
		}
	}
	if len(found) != 1 {
		t.Fatalf("%s has %d %s events, want 1", s.Name(), len(found), name)
	}
	return found[0]
}

func wantEventAttr(t *testing.T, e sdktrace.Event, k attribute.Key, want string) {
	t.Helper()
	for _, kv := range e.Attributes {
		if kv.Key == k {
			if kv.Value.Emit() != want {
				t.Errorf("event %s: %s = %q, want %q", e.Name, k, kv.Value.Emit(), want)
			}
			return
		}
	}
	t.Errorf("event %s: no %s, want %q", e.Name, k, want)
}

func wantAttr(t *testing.T, s sdktrace.ReadOnlySpan, k attribute.Key, want string) {
	t.Helper()
	if v, ok := attr(s, k); !ok || v.Emit() != want {
		t.Errorf("%s: %s = %q (set %v), want %q", s.Name(), k, v.Emit(), ok, want)
	}
}

func TestSpans(t *testing.T) {
	tr := newTraced(t, otelcache.WithKeyAttribute(true))
	cache, err := tiered.NewCache(tr.client, "users", tiered.Options[string]{TTL: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	ctx, req := tr.request(context.Background())
	load := func(context.Context, string) (string, error) { return "v", nil }
	if _, err := cache.Get(ctx, "k", load); err != nil { // miss, load
		t.Fatal(err)
	}
	if _, err := cache.Get(ctx, "k", load); err != nil { // L1 hit
		t.Fatal(err)
	}
	if _, err := cache.GetMany(ctx, []string{"k", "j"}, nil); err != nil {
		t.Fatal(err)
	}
	if err := cache.Set(ctx, "k", "w"); err != nil {
		t.Fatal(err)
	}
	if err := cache.Delete(ctx, "k"); err != nil {
		t.Fatal(err)
	}
	req.End()

	gets := tr.spans("strata.cache.get")
	if len(gets) != 1 {
		t.Fatalf("%d get spans, want 1 (the L1 hit is an event)", len(gets))
	}
	for _, s := range gets {
		if s.Parent().SpanID() != req.SpanContext().SpanID() || s.SpanKind() != trace.SpanKindInternal {
			t.Errorf("get span's parent %v kind %v; want the request's, internal", s.Parent().SpanID(), s.SpanKind())
		}
		wantAttr(t, s, otelcache.AttrName, "users")
		wantAttr(t, s, otelcache.AttrKey, "k")
	}
	wantAttr(t, gets[0], otelcache.AttrTier, "loader")
	wantAttr(t, gets[0], otelcache.AttrResult, "miss")
	hit := event(t, tr.spans("request")[0], "strata.cache.get")
	wantEventAttr(t, hit, otelcache.AttrTier, "l1")
	wantEventAttr(t, hit, otelcache.AttrResult, "hit")
	wantEventAttr(t, hit, otelcache.AttrKey, "k")
	loads := tr.spans("strata.cache.load")
	if len(loads) != 1 || loads[0].Parent().SpanID() != gets[0].SpanContext().SpanID() {
		t.Errorf("load spans %d; want one, child of the first get", len(loads))
	}
	if many := tr.spans("strata.cache.get_many"); len(many) != 1 {
		t.Errorf("%d get_many spans, want 1", len(many))
	} else {
		wantAttr(t, many[0], otelcache.AttrKeys, "2")
	}
	for _, name := range []string{"strata.cache.set", "strata.cache.delete"} {
		if n := len(tr.spans(name)); n != 1 {
			t.Errorf("%d %s spans, want 1", n, name)
		}
	}
}

// Without a sampled request span, nothing is traced, and an L1 hit
// allocates nothing.
func TestUnsampledIsNotTraced(t *testing.T) {
	tr := newTraced(t)
	cache, err := tiered.NewCache(tr.client, "users", tiered.Options[string]{TTL: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	if err := cache.Set(context.Background(), "k", "v"); err != nil {
		t.Fatal(err)
	}
	unsampled := trace.ContextWithSpanContext(context.Background(), trace.NewSpanContext(trace.SpanContextConfig{
		TraceID: trace.TraceID{1}, SpanID: trace.SpanID{1}}))
	for _, ctx := range []context.Context{context.Background(), unsampled} {
		if allocs := testing.AllocsPerRun(100, func() {
			if _, err := cache.Get(ctx, "k", nil); err != nil {
				t.Fatal(err)
			}
		}); allocs != 0 {
			t.Errorf("an untraced L1 hit allocates %v times", allocs)
		}
	}
	if n := len(tr.rec.Ended()); n != 0 {
		t.Errorf("%d spans without a sampled request, want none", n)
	}
}

// Stale-if-error: the load's span records the loader's error; the Get's
// says it answered stale. Stale-while-revalidate: the background refresh
// has its own span, linked to the request.
func TestStaleSpans(t *testing.T) {
	tr := newTraced(t)
	cache, err := tiered.NewCache(tr.client, "users", tiered.Options[string]{TTL: time.Minute,
		StaleIfError: time.Hour, EarlyRefreshBeta: tiered.Off})
	if err != nil {
		t.Fatal(err)
	}
	if err := cache.Set(context.Background(), "k", "v"); err != nil {
		t.Fatal(err)
	}
	tr.clk.Advance(2 * time.Minute)
	boom := errors.New("database down")
	ctx, req := tr.request(context.Background())
	if v, err := cache.Get(ctx, "k", func(context.Context, string) (string, error) { return "", boom }); err != nil || v != "v" {
		t.Fatalf("Get = %q, %v; want the stale value", v, err)
	}
	req.End()
	loads := tr.spans("strata.cache.load")
	if len(loads) != 1 || loads[0].Status().Code != codes.Error {
		t.Fatalf("load spans %v; want one with the loader's error", loads)
	}
	// Without WithKeyAttribute the error's message (which may name a key)
	// stays off the span: its type says what failed.
	wantAttr(t, loads[0], otelcache.AttrErrorType, "_OTHER")
	wantAttr(t, tr.spans("strata.cache.get")[0], otelcache.AttrResult, "stale")

	swr, err := tiered.NewCache(tr.client, "swr", tiered.Options[string]{TTL: time.Minute, StaleWhileRevalidate: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	if err := swr.Set(context.Background(), "k", "v"); err != nil {
		t.Fatal(err)
	}
	tr.clk.Advance(2 * time.Minute)
	ctx, req = tr.request(context.Background())
	var once sync.Once
	refreshed := make(chan struct{})
	if _, err := swr.Get(ctx, "k", func(context.Context, string) (string, error) {
		once.Do(func() { close(refreshed) })
		return "w", nil
	}); err != nil {
		t.Fatal(err)
	}
	req.End()
	<-refreshed
	redistest.WaitFor(t, 10*time.Second, func() bool { return len(tr.spans("strata.cache.refresh")) == 1 }, "the refresh span ends")
	r := tr.spans("strata.cache.refresh")[0]
	var get sdktrace.ReadOnlySpan
	for _, s := range tr.spans("strata.cache.get") {
		if s.SpanContext().TraceID() == req.SpanContext().TraceID() {
			get = s
		}
	}
	if r.Parent().IsValid() || len(r.Links()) != 1 || get == nil || r.Links()[0].SpanContext.SpanID() != get.SpanContext().SpanID() {
		t.Errorf("refresh span: parent %v, links %v; want a root linked to the Get that started it", r.Parent(), r.Links())
	}
	wantAttr(t, get, otelcache.AttrResult, "stale")
}
