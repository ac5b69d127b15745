package otelcache_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"

	"github.com/strata-cache/strata/internal/redistest"
	"github.com/strata-cache/strata/l2"
	"github.com/strata-cache/strata/tiered"
)

// review7Leaks lists where s carries secret: attributes, events and their
// attributes, status, links.
func review7Leaks(s sdktrace.ReadOnlySpan, secret string) []string {
	var out []string
	has := func(kvs []attribute.KeyValue, where string) {
		for _, kv := range kvs {
			if strings.Contains(kv.Value.Emit(), secret) {
				out = append(out, where+" "+string(kv.Key)+"="+kv.Value.Emit())
			}
		}
	}
	has(s.Attributes(), s.Name()+" attribute")
	for _, e := range s.Events() {
		if strings.Contains(e.Name, secret) {
			out = append(out, s.Name()+" event name "+e.Name)
		}
		has(e.Attributes, s.Name()+" event "+e.Name)
	}
	if strings.Contains(s.Status().Description, secret) {
		out = append(out, s.Name()+" status "+s.Status().Description)
	}
	for _, l := range s.Links() {
		has(l.Attributes, s.Name()+" link")
	}
	return out
}

// Regression (review 7): WithKeyAttribute(false), the default, must put no
// key anywhere. A Set's error names its key ("TTL … of %q", "write-through
// of %q", "set %q in L2"), and the span recorded the error's text as its
// status and exception event; now only error.type is recorded.
func TestReview7NoKeyInErrorSpans(t *testing.T) {
	tr := newTraced(t)
	cache, err := tiered.NewCache(tr.client, "users", tiered.Options[string]{TTL: time.Minute,
		Writer: func(context.Context, string, string) error { return errors.New("db refused") }})
	if err != nil {
		t.Fatal(err)
	}
	const secret = "alice@example.com"
	ctx, req := tr.request(context.Background())
	if err := cache.Set(ctx, secret, "v", tiered.WithTTL(-time.Second)); err == nil {
		t.Fatal("Set with a negative TTL succeeded")
	}
	if err := cache.Set(ctx, secret, "v"); err == nil {
		t.Fatal("Set with a failing Writer succeeded")
	}
	req.End()
	var leaks []string
	for _, s := range tr.rec.Ended() {
		leaks = append(leaks, review7Leaks(s, secret)...)
	}
	if len(leaks) > 0 {
		t.Errorf("the key is on spans without WithKeyAttribute:\n%s", strings.Join(leaks, "\n"))
	}
}

// Regression (review 7): every operation gets one span, on errors too.
// Get's, Set's and Delete's used to start after their keys were checked, so
// an invalid key or a closed client left no trace of those.
func TestReview7EarlyErrorsHaveSpans(t *testing.T) {
	tr := newTraced(t)
	cache, err := tiered.NewCache(tr.client, "users", tiered.Options[string]{TTL: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	ctx, req := tr.request(context.Background())
	_, _ = cache.GetMany(ctx, []string{""}, nil)
	_, _ = cache.Get(ctx, "", nil)
	_, _, _ = cache.GetWithInfo(ctx, "", nil)
	_ = cache.Set(ctx, "", "v")
	_ = cache.Delete(ctx, "")
	_ = tr.client.Close()
	_, _ = cache.Get(ctx, "k", nil)
	req.End()
	for name, want := range map[string]int{"strata.cache.get_many": 1, "strata.cache.get": 3, "strata.cache.set": 1, "strata.cache.delete": 1} {
		spans := tr.spans(name)
		if len(spans) != want {
			t.Errorf("%d %s spans, want %d (one per failed call)", len(spans), name, want)
		}
		for _, s := range spans {
			if s.Status().Code != codes.Error {
				t.Errorf("%s: status %v, want an error", name, s.Status())
			}
		}
	}
}

// Regression (review 7): one Observer may serve several clients, whose
// counters it adds up per namespace. strata.cache.requests is a cumulative
// monotonic counter: it must not go down when one of the clients closes.
// Close emptied the client's cache list, so its Stats vanished from the sum;
// Client.Stats now keeps every cache it made.
func TestReview7SharedObserverCounterIsMonotonic(t *testing.T) {
	ctx := context.Background()
	srv := redistest.Start(t)
	obs, reader := newObserved(t)
	open := func(name string) (*tiered.Client, *tiered.Cache[string]) {
		c, err := tiered.NewClient(ctx, tiered.Config{NodeID: name, Observer: obs, Logger: quiet,
			Redis: l2.Config{Addrs: []string{srv.Addr()}, Timeout: time.Second}})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = c.Close() })
		cache, err := tiered.NewCache(c, "users", tiered.Options[string]{TTL: time.Minute})
		if err != nil {
			t.Fatal(err)
		}
		return c, cache
	}
	_, a := open("a")
	b, cb := open("b")
	load := func(_ context.Context, k string) (string, error) { return "v:" + k, nil }
	for _, k := range []string{"x", "y"} {
		if _, err := a.Get(ctx, k, load); err != nil {
			t.Fatal(err)
		}
	}
	for _, k := range []string{"p", "q", "r"} {
		if _, err := cb.Get(ctx, k, load); err != nil {
			t.Fatal(err)
		}
	}
	miss := []attribute.KeyValue{attribute.String("strata.cache.name", "users"),
		attribute.String("strata.cache.tier", "loader"), attribute.String("strata.cache.result", "miss")}
	before := sum(t, collect(t, reader), "strata.cache.requests", miss...)
	if before != 5 {
		t.Fatalf("requests{loader,miss} = %d, want 5", before)
	}
	_ = b.Close()
	if after := sum(t, collect(t, reader), "strata.cache.requests", miss...); after < before {
		t.Errorf("requests{loader,miss} went from %d to %d when one client closed: a monotonic counter went down", before, after)
	}
}

// Regression (review 7): a background refresh whose load fails ends its
// span with the error (before, only the child load span said so).
func TestReview7FailedRefreshSpanHasError(t *testing.T) {
	tr := newTraced(t)
	swr, err := tiered.NewCache(tr.client, "swr", tiered.Options[string]{TTL: time.Minute, StaleWhileRevalidate: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	if err := swr.Set(context.Background(), "k", "v"); err != nil {
		t.Fatal(err)
	}
	tr.clk.Advance(2 * time.Minute)
	ctx, req := tr.request(context.Background())
	if v, err := swr.Get(ctx, "k", func(context.Context, string) (string, error) { return "", errors.New("db down") }); err != nil || v != "v" {
		t.Fatalf("Get = %q, %v; want the stale value", v, err)
	}
	req.End()
	redistest.WaitFor(t, 10*time.Second, func() bool { return len(tr.spans("strata.cache.refresh")) == 1 }, "the refresh span ends")
	if s := tr.spans("strata.cache.refresh")[0]; s.Status().Code != codes.Error {
		t.Errorf("failed refresh span: status %v, want an error", s.Status())
	}
}
