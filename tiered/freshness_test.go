package tiered_test

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/strata-cache/strata/internal/clock"
	"github.com/strata-cache/strata/internal/redistest"
	"github.com/strata-cache/strata/l2"
	"github.com/strata-cache/strata/tiered"
)

// versioned is a loader returning "v1", "v2", ... on successive calls, or
// failing while fail is set.
type versioned struct {
	calls atomic.Int64
	fail  atomic.Bool
}

var errSource = errors.New("source unavailable")

func (l *versioned) load(context.Context, string) (string, error) {
	n := l.calls.Add(1)
	if l.fail.Load() {
		return "", errSource
	}
	return "v" + string(rune('0'+n)), nil
}

// manualCache is a cache over a fresh Redis whose clock the test moves.
func manualCache(t *testing.T, opts tiered.Options[string]) (*tiered.Cache[string], *clock.Manual) {
	t.Helper()
	clk := clock.NewManual(time.Unix(1_700_000_000, 0))
	srv := redistest.Start(t)
	c := newClient(t, tiered.Config{Redis: l2.Config{Addrs: []string{srv.Addr()}}, Clock: clk})
	opts.Jitter = -1
	return newCache(t, c, "users", opts), clk
}

func TestStaleWhileRevalidate(t *testing.T) {
	ctx := context.Background()
	cache, clk := manualCache(t, tiered.Options[string]{TTL: time.Minute, StaleWhileRevalidate: time.Minute})
	var l versioned
	if v, _ := cache.Get(ctx, "k", l.load); v != "v1" {
		t.Fatalf("first Get = %q", v)
	}
	clk.Advance(90 * time.Second)
	for range 20 {
		v, info, err := cache.GetWithInfo(ctx, "k", l.load)
		if err != nil || (v != "v1" && v != "v2") {
			t.Fatalf("Get in the SWR window = %q, %v", v, err)
		}
		if v == "v1" && (!info.Stale || info.Cause != nil) {
			t.Fatalf("stale answer without Info.Stale: %+v", info)
		}
	}
	redistest.WaitFor(t, 10*time.Second, func() bool {
		v, _ := cache.Get(ctx, "k", l.load)
		return v == "v2"
	}, "the background refresh installs v2")
	if n := l.calls.Load(); n != 2 {
		t.Errorf("loader ran %d times, want 2 (one refresh for the whole stale window)", n)
	}
	if s := cache.Stats(); s.StaleHits == 0 || s.Refreshes != 1 {
		t.Errorf("stats %+v, want stale hits and exactly one refresh", s)
	}
	clk.Advance(3 * time.Minute)
	if v, info, _ := cache.GetWithInfo(ctx, "k", l.load); v != "v3" || info.Stale {
		t.Errorf("past the SWR window: Get = %q (%+v), want a synchronous load", v, info)
	}
}

func TestStaleIfError(t *testing.T) {
	ctx := context.Background()
	cache, clk := manualCache(t, tiered.Options[string]{TTL: time.Minute, StaleIfError: time.Minute})
	var l versioned
	if _, err := cache.Get(ctx, "k", l.load); err != nil {
		t.Fatal(err)
	}
	l.fail.Store(true)
	clk.Advance(90 * time.Second)
	v, info, err := cache.GetWithInfo(ctx, "k", l.load)
	if err != nil || v != "v1" || !info.Stale || !errors.Is(info.Cause, errSource) {
		t.Fatalf("inside the SIE window: %q, %+v, %v; want v1, stale, caused by the loader's error", v, info, err)
	}
	if v, err := cache.Get(ctx, "k", l.load); err != nil || v != "v1" {
		t.Fatalf("plain Get inside the SIE window = %q, %v", v, err)
	}
	if s := cache.Stats(); s.StaleOnError != 2 || s.LoadErrors != 2 {
		t.Errorf("stats %+v, want 2 stale-on-error answers and the 2 load errors", s)
	}
	clk.Advance(time.Minute)
	if _, err := cache.Get(ctx, "k", l.load); !errors.Is(err, errSource) {
		t.Fatalf("past the SIE window: err = %v, want the loader's", err)
	}
}

func TestNoStaleValueAfterInvalidation(t *testing.T) {
	ctx := context.Background()
	opts := tiered.Options[string]{TTL: time.Minute, StaleWhileRevalidate: time.Hour, StaleIfError: time.Hour}
	for _, invalidate := range []string{"delete", "set"} {
		t.Run(invalidate, func(t *testing.T) {
			cache, clk := manualCache(t, opts)
			var l versioned
			if _, err := cache.Get(ctx, "k", l.load); err != nil {
				t.Fatal(err)
			}
			clk.Advance(2 * time.Minute)
			if invalidate == "delete" {
				if err := cache.Delete(ctx, "k"); err != nil {
					t.Fatal(err)
				}
			} else if err := cache.Set(ctx, "k", "written"); err != nil {
				t.Fatal(err)
			}
			l.fail.Store(true)
			v, err := cache.Get(ctx, "k", l.load)
			switch {
			case invalidate == "delete" && !errors.Is(err, errSource):
				t.Errorf("after Delete: Get = %q, %v; want the loader's error, never the stale v1", v, err)
			case invalidate == "set" && v != "written":
				t.Errorf("after Set: Get = %q, %v", v, err)
			}
		})
	}
}

func TestEarlyRefreshUnderSteadyLoad(t *testing.T) {
	ctx := context.Background()
	srv := redistest.Start(t)
	c := newClient(t, tiered.Config{Redis: l2.Config{Addrs: []string{srv.Addr()}}})
	const ttl, loadTime = 400 * time.Millisecond, 40 * time.Millisecond
	cache := newCache(t, c, "users", tiered.Options[string]{TTL: ttl, Jitter: -1})
	var loads atomic.Int64
	load := func(ctx context.Context, _ string) (string, error) {
		loads.Add(1)
		t := time.NewTimer(loadTime) // the database's latency, not synchronisation
		defer t.Stop()
		select {
		case <-t.C:
			return "v", nil
		case <-ctx.Done():
			return "", ctx.Err()
		}
	}
	if _, err := cache.Get(ctx, "hot", load); err != nil {
		t.Fatal(err)
	}
	const span = 5 * ttl // about 5 expiries
	tick := time.NewTicker(time.Millisecond)
	defer tick.Stop()
	var slowest time.Duration
	for end := time.Now().Add(span); time.Now().Before(end); <-tick.C {
		start := time.Now()
		if _, err := cache.Get(ctx, "hot", load); err != nil {
			t.Fatal(err)
		}
		slowest = max(slowest, time.Since(start))
	}
	// Loads is counted when a load returns: wait for the last refresh to end.
	redistest.WaitFor(t, 10*time.Second, func() bool { return int64(cache.Stats().Loads) == loads.Load() }, "refreshes settle")
	s := cache.Stats()
	expiries := int64(span / ttl)
	t.Logf("%d loads over %d expiries, slowest Get %v (load takes %v), stats %+v", loads.Load(), expiries, slowest, loadTime, s)
	if s.Misses != 1 || s.Loads != s.Refreshes+1 {
		t.Errorf("stats %+v: a caller waited on the loader after the first load", s)
	}
	if n := loads.Load() - 1; n > 2*(expiries+1) {
		t.Errorf("%d regenerations over %d expiries, want at most 2 per expiry", n, expiries)
	}
}

func TestSlidingExpiration(t *testing.T) {
	ctx := context.Background()
	clk := clock.NewManual(time.Unix(1_700_000_000, 0))
	srv := redistest.Start(t)
	c := newClient(t, tiered.Config{Redis: l2.Config{Addrs: []string{srv.Addr()}}, Clock: clk})
	cache := newCache(t, c, "users", tiered.Options[string]{TTL: time.Minute, Sliding: true, Jitter: -1})
	if err := cache.Set(ctx, "k", "v"); err != nil {
		t.Fatal(err)
	}
	srv.ResetStats(t)
	// 100 reads spread over 2 minutes: one extension per 30 s at most.
	for range 100 {
		if v, err := cache.Get(ctx, "k", nil); err != nil || v != "v" {
			t.Fatalf("Get = %q, %v", v, err)
		}
		clk.Advance(1200 * time.Millisecond)
	}
	redistest.WaitFor(t, 10*time.Second, func() bool {
		return srv.CommandCount(t, "pexpire") == int64(cache.Stats().Extensions)
	}, "extensions reach Redis")
	n := srv.CommandCount(t, "pexpire")
	if n < 4 || n > 5 {
		t.Errorf("%d PEXPIREs for 100 reads over 2 minutes with TTL 1m, want one per 30 s", n)
	}
	if pttl := srv.Do(t, "PTTL", "strata:users:{k}").(int64); pttl < 59_000 {
		t.Errorf("PTTL %d ms after the last extension, want about a minute", pttl)
	}
}

// Keys GetMany filled refresh early (XFetch) like keys Get filled: both
// carry their load's duration. The clock is manual (a load takes a second
// of it) and Rand draws the smallest number, so a hit inside the XFetch
// horizon always refreshes.
func TestGetManyFilledKeysRefreshEarly(t *testing.T) {
	ctx := context.Background()
	clk := clock.NewManual(time.Unix(1_700_000_000, 0))
	srv := redistest.Start(t)
	c := newClient(t, tiered.Config{Redis: l2.Config{Addrs: []string{srv.Addr()}}, Clock: clk, Rand: func() float64 { return 1e-9 }})
	cache := newCache(t, c, "users", tiered.Options[string]{TTL: time.Minute, Jitter: -1})
	load := func(context.Context, string) (string, error) { clk.Advance(time.Second); return "v", nil }
	loadMany := func(_ context.Context, keys []string) (map[string]string, error) {
		clk.Advance(time.Second)
		out := map[string]string{}
		for _, k := range keys {
			out[k] = "v"
		}
		return out, nil
	}
	if _, err := cache.Get(ctx, "by-get", load); err != nil {
		t.Fatal(err)
	}
	if _, err := cache.GetMany(ctx, []string{"by-getmany"}, loadMany); err != nil {
		t.Fatal(err)
	}
	clk.Advance(50 * time.Second) // fresh for about 10 s more: inside the horizon (30 × 1 s)
	for i, key := range []string{"by-get", "by-getmany"} {
		before := cache.Stats().Refreshes
		if _, err := cache.Get(ctx, key, load); err != nil {
			t.Fatal(err)
		}
		if n := cache.Stats().Refreshes - before; n != 1 {
			t.Errorf("key %d (%s): %d early refreshes near expiry, want 1", i, key, n)
		}
		redistest.WaitFor(t, 5*time.Second, func() bool { return cache.Stats().Loads == uint64(3+i) }, "the refresh of %s loads", key)
	}
}
