// Command otel shows Strata's OpenTelemetry spans and metrics, printed to
// stdout, for a short scenario on two replicas: a miss and its load, an L1
// hit, an L2 hit on the other replica, a stale value served while it is
// refreshed, and an invalidation whose lag the other replica records.
//
// Without STRATA_REDIS it runs on an embedded Redis-compatible server
// (miniredis); STRATA_REDIS=host:port uses a real one.
//
//	go run ./examples/otel
package main

import (
	"context"
	"fmt"
	"io"
	"log"
	"log/slog"
	"os"
	"sync"
	"time"

	"github.com/alicebob/miniredis/v2"
	"go.opentelemetry.io/otel/exporters/stdout/stdoutmetric"
	"go.opentelemetry.io/otel/exporters/stdout/stdouttrace"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"

	"github.com/strata-cache/strata/l2"
	"github.com/strata-cache/strata/otelcache"
	"github.com/strata-cache/strata/tiered"
)

func main() {
	if err := run(context.Background(), os.Stdout); err != nil {
		log.Fatal(err)
	}
}

// run plays the scenario, printing what happens and then the spans and
// metrics to w.
func run(ctx context.Context, out io.Writer) error {
	// The exporters write from the goroutines that end spans (a background
	// refresh's among them) while the scenario prints its steps.
	w := &lockedWriter{w: out}
	addr := os.Getenv("STRATA_REDIS")
	if addr == "" {
		srv, err := miniredis.Run()
		if err != nil {
			return err
		}
		defer srv.Close()
		addr = srv.Addr()
	}
	spans, err := stdouttrace.New(stdouttrace.WithWriter(w), stdouttrace.WithPrettyPrint())
	if err != nil {
		return err
	}
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(spans))
	metrics, err := stdoutmetric.New(stdoutmetric.WithWriter(w), stdoutmetric.WithPrettyPrint())
	if err != nil {
		return err
	}
	reader := sdkmetric.NewPeriodicReader(metrics, sdkmetric.WithInterval(time.Hour)) // flushed at Shutdown
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
	obs, err := otelcache.New(otelcache.WithTracerProvider(tp), otelcache.WithMeterProvider(mp))
	if err != nil {
		return err
	}

	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	opts := tiered.Options[string]{TTL: 300 * time.Millisecond, StaleWhileRevalidate: time.Minute}
	replica := func(name string) (*tiered.Client, *tiered.Cache[string], error) {
		c, err := tiered.NewClient(ctx, tiered.Config{NodeID: name, Observer: obs, Logger: quiet, Redis: l2.Config{Addrs: []string{addr}}})
		if err != nil {
			return nil, nil, err
		}
		cache, err := tiered.NewCache(c, "users", opts)
		return c, cache, err
	}
	ca, a, err := replica("a")
	if err != nil {
		return err
	}
	cb, b, err := replica("b")
	if err != nil {
		return err
	}
	load := func(_ context.Context, key string) (string, error) { return "user " + key, nil }

	// Strata traces an operation inside a sampled span of the caller's:
	// here, one request span around the whole scenario.
	reqCtx, req := tp.Tracer("demo").Start(ctx, "demo-request")
	step := func(what string, f func() error) error {
		if err := f(); err != nil {
			return fmt.Errorf("%s: %w", what, err)
		}
		fmt.Fprintln(w, "#", what)
		return nil
	}
	get := func(c *tiered.Cache[string]) func() error {
		return func() error { _, err := c.Get(reqCtx, "42", load); return err }
	}
	for _, s := range []struct {
		what string
		f    func() error
	}{
		{"a: miss, loaded", get(a)},
		{"a: L1 hit (an event on demo-request's span)", get(a)},
		{"b: L2 hit", get(b)},
		{"a: stale value served while one refresh runs", func() error { time.Sleep(400 * time.Millisecond); return get(a)() }},
		{"a: Set; b applies the invalidation (its lag is recorded)", func() error {
			if err := a.Set(reqCtx, "42", "renamed"); err != nil {
				return err
			}
			time.Sleep(200 * time.Millisecond) // a demo: let the invalidation and the refresh land
			return nil
		}},
	} {
		if err := step(s.what, s.f); err != nil {
			return err
		}
	}
	req.End()
	fmt.Fprintln(w, "\n# metrics (each span above was printed as it ended)")
	if err := mp.Shutdown(ctx); err != nil { // reads the counters of the live clients
		return err
	}
	_ = ca.Close() // waits for the refresh, whose span ends
	_ = cb.Close()
	return tp.Shutdown(ctx)
}

// lockedWriter serialises writes to w.
type lockedWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}
