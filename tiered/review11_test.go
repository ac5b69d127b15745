package tiered_test

import (
	"context"
	"errors"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/strata-cache/strata/cluster"
	"github.com/strata-cache/strata/internal/redistest"
	"github.com/strata-cache/strata/l2"
	"github.com/strata-cache/strata/tiered"
)

// review11Loader answers "v1", "v2", ... one per call.
type review11Loader struct{ calls atomic.Int64 }

func (l *review11Loader) load(context.Context, string) (string, error) {
	return "v" + strconv.FormatInt(l.calls.Add(1), 10), nil
}

// TestReview11ForeignSWRRefreshFillsOverForeignEntry: a Cache[string] that
// loaded around a Cache[int]'s entry keeps its value in L1 only. Once that
// L1 copy is stale inside StaleWhileRevalidate, the background refresh
// (Cache.refresh: readL2 finds the foreign entry and returns nil, then
// TryLease, then a leased Fill) overwrites the other type's entry in L2 —
// the fill over it that Options.Schema says never happens. Early refresh
// (XFetch) goes through the same refresh function.
func TestReview11ForeignSWRRefreshFillsOverForeignEntry(t *testing.T) {
	ctx := context.Background()
	srv := redistest.Start(t)
	cfg := tiered.Config{Redis: l2.Config{Addrs: []string{srv.Addr()}}}
	old := newCache(t, newClient(t, cfg), "users", tiered.Options[int]{TTL: 24 * time.Hour})
	if err := old.Set(ctx, "k", 1); err != nil {
		t.Fatal(err)
	}
	written := srv.Do(t, "GET", "strata:users:{k}")
	// Subscribed after the Set: its invalidation cannot fence the load below.
	next := newCache(t, newClient(t, cfg), "users", tiered.Options[string]{
		TTL: 200 * time.Millisecond, StaleWhileRevalidate: time.Hour, Jitter: -1, EarlyRefreshBeta: -1,
	})

	var l review11Loader
	if v, err := next.Get(ctx, "k", l.load); err != nil || v != "v1" {
		t.Fatalf("Get = %q, %v; want the loader's v1", v, err)
	}
	if s := next.Stats(); s.TypeMismatches != 1 {
		t.Fatalf("%d type mismatches, want 1", s.TypeMismatches)
	}
	// Once the L1 copy is past its TTL, inside SWR, a Get serves it stale
	// and refreshes it in the background.
	redistest.WaitFor(t, 10*time.Second, func() bool {
		_, info, err := next.GetWithInfo(ctx, "k", l.load)
		return err == nil && info.Stale
	}, "a stale serve from L1")
	// The refresh's outcome lands in L1 (after its fill, when it fills).
	redistest.WaitFor(t, 10*time.Second, func() bool {
		v, info, err := next.GetWithInfo(ctx, "k", nil)
		return err == nil && v != "v1" && !info.Stale
	}, "the background refresh's value")
	if now := srv.Do(t, "GET", "strata:users:{k}"); now != written {
		t.Errorf("the refresh filled over the other type's entry: L2 now %q, was %q", now, written)
	}
	if v, err := old.Get(ctx, "k", nil); err != nil || v != 1 {
		t.Errorf("the other type's Get = %d, %v; want its own entry 1", v, err)
	}
}

// TestReview11ForeignSlidingShortensForeignEntry: with Sliding, an L1 hit
// on a value loaded around another type's entry PEXPIREs that entry to this
// cache's TTL: a one-minute TTL cuts the other type's 24-hour entry short.
// The foreign entry is meant to be left alone.
func TestReview11ForeignSlidingShortensForeignEntry(t *testing.T) {
	ctx := context.Background()
	srv := redistest.Start(t)
	cfg := tiered.Config{Redis: l2.Config{Addrs: []string{srv.Addr()}}}
	old := newCache(t, newClient(t, cfg), "users", tiered.Options[int]{TTL: 24 * time.Hour})
	if err := old.Set(ctx, "k", 1); err != nil {
		t.Fatal(err)
	}
	// Subscribed after the Set: its invalidation cannot fence the load below.
	nextClient := newClient(t, cfg)
	next := newCache(t, nextClient, "users", tiered.Options[string]{TTL: time.Minute, Sliding: true, Jitter: -1})
	var l review11Loader
	for range 2 { // a load around the entry, then an L1 hit (an extension is due)
		if _, err := next.Get(ctx, "k", l.load); err != nil {
			t.Fatal(err)
		}
	}
	if s := next.Stats(); s.TypeMismatches != 1 || l.calls.Load() != 1 {
		t.Fatalf("%d type mismatches, %d loads; want 1 and 1", s.TypeMismatches, l.calls.Load())
	}
	// The hit on the L1-only copy extends nothing: it is not L2's.
	if s := next.Stats(); s.Extensions != 0 {
		t.Errorf("%d extensions of a value L2 holds nothing of", s.Extensions)
	}
	ttl, _ := srv.Do(t, "PTTL", "strata:users:{k}").(int64)
	if ttl < int64(time.Hour/time.Millisecond) {
		t.Errorf("the other type's 24h entry now expires in %v: a sliding extension of a value loaded around it",
			time.Duration(ttl)*time.Millisecond)
	}
}

// TestReview11AuditFlagsL1OnlyCopyAsInconsistent: a value kept in L1 only
// (here: loaded around another type's entry; likewise a load while L2 was
// out, or while the namespace version was unknown) has no L2 entry of its
// own. When the other type's entry expires, a sampled hit on the L1 copy
// finds L2 empty, and the recheck Window later counts it inconsistent,
// although no write or invalidation of the key ever happened: the copy is
// exactly what the loader returns.
func TestReview11AuditFlagsL1OnlyCopyAsInconsistent(t *testing.T) {
	ctx := context.Background()
	srv := redistest.Start(t)
	cfg := tiered.Config{Redis: l2.Config{Addrs: []string{srv.Addr()}}}
	old := newCache(t, newClient(t, cfg), "users", tiered.Options[int]{TTL: time.Hour})
	acfg := cfg
	acfg.Audit = tiered.AuditConfig{SampleRate: 1, Window: 50 * time.Millisecond}
	if err := old.Set(ctx, "k", 1); err != nil {
		t.Fatal(err)
	}
	// Subscribed after the Set: its invalidation cannot fence the load below.
	next := newCache(t, newClient(t, acfg), "users", tiered.Options[string]{TTL: time.Hour, EarlyRefreshBeta: -1})
	var l review11Loader
	if _, err := next.Get(ctx, "k", l.load); err != nil {
		t.Fatal(err)
	}
	if s := next.Stats(); s.TypeMismatches != 1 {
		t.Fatalf("%d type mismatches, want 1", s.TypeMismatches)
	}
	// The other type's entry reaches its end of life in L2 (its TTL, or an
	// eviction): no invalidation, nothing any replica must drop.
	srv.Do(t, "PEXPIRE", "strata:users:{k}", 1)
	redistest.WaitFor(t, 5*time.Second, func() bool { return srv.Do(t, "EXISTS", "strata:users:{k}") == int64(0) }, "the entry expires")
	if v, err := next.Get(ctx, "k", l.load); err != nil || v != "v1" {
		t.Fatalf("L1 hit = %q, %v", v, err)
	}
	redistest.WaitFor(t, 10*time.Second, func() bool { a := next.Stats().Audit; return a.Samples+a.Skipped >= 1 }, "the sample is judged")
	if a := next.Stats().Audit; a.Inconsistent != 0 {
		t.Errorf("audit: %+v; a correct L1-only copy was counted inconsistent", a)
	}
}

// TestReview11SetCancelledMidwayFailsVersionCheck: on a Ring the Set's
// namespace check after its L2 write (underVersion → LatestVersion) runs
// under the caller's ctx, not the detached one (Delete passes wctx). A
// caller whose ctx ends once the Set has begun (here inside the Writer) gets
// a "namespace version unchecked: context canceled" error for a Set whose
// L2 write and message did happen, and the re-run under a Clear that moved
// the namespace is skipped.
func TestReview11SetCancelledMidwayFailsVersionCheck(t *testing.T) {
	shards := []*redistest.Server{redistest.Start(t), redistest.Start(t), redistest.Start(t)}
	addrs := make([]string, len(shards))
	for i, s := range shards {
		addrs[i] = s.Addr()
	}
	c := newClient(t, tiered.Config{Redis: l2.Config{Addrs: addrs}})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	cache := newCache(t, c, "users", tiered.Options[string]{
		Writer: func(context.Context, string, string) error { cancel(); return nil },
	})
	if err := cache.Set(ctx, "k", "v"); err != nil {
		t.Errorf("Set whose ctx ended after it began = %v; want it to finish detached, as Delete does", err)
	}
	if s := cache.Stats(); s.L2Errors != 0 {
		t.Errorf("%d L2 errors counted for a caller's cancellation", s.L2Errors)
	}
}

// TestReview11AckWaitOutlivesCancelledCaller: the WithAck wait now runs on
// the detached ctx, so a caller that gives up can no longer end it: a Set
// whose ctx is cancelled after it began waits out the whole ack timeout for
// a member that never confirms (and Close waits behind it, c.writes). Only
// the L2 write and the send need detaching; the confirmation is the
// caller's to abandon.
func TestReview11AckWaitOutlivesCancelledCaller(t *testing.T) {
	srv := redistest.Start(t)
	redisCfg := l2.Config{Addrs: []string{srv.Addr()}}
	a := newClient(t, tiered.Config{NodeID: "a", Redis: redisCfg, Gossip: localGossip("")})
	mute, err := cluster.Start(cluster.Config{BindAddr: "127.0.0.1:0", Profile: cluster.ProfileLocal, Join: []string{a.GossipAddr()}},
		"mute", func([]byte) {}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer mute.Close()
	redistest.WaitFor(t, 10*time.Second, func() bool { return len(mute.Members()) == 2 }, "the mute member joins")

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	cache := newCache(t, a, "users", tiered.Options[string]{
		Writer: func(context.Context, string, string) error { cancel(); return nil },
	})
	done := make(chan error, 1)
	go func() { done <- cache.Set(tiered.WithAck(ctx, 20*time.Second), "k", "v") }()
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) && err != nil {
			t.Logf("Set = %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("a Set whose caller cancelled still waits for acknowledgements (up to WithAck's 20 s)")
	}
}

// TestReview11SlidingExtensionShortensL2Life: a sliding extension PEXPIREs
// the key to TTL (+ stale windows) from the access, even when the entry's
// jittered life in L2 ran longer: with Jitter 0.5 (and Rand at its top) an
// entry fresh for 1.5 h is cut to 1 h by the first hit. L2 then drops a value
// whose FreshUntil is still ahead while every L1 copy keeps serving it, and
// the auditor (whose claims cover sliding expiration) counts those hits
// inconsistent: "L2 held nothing for the key ... while L1 kept the copy".
func TestReview11SlidingExtensionShortensL2Life(t *testing.T) {
	ctx := context.Background()
	srv := redistest.Start(t)
	c := newClient(t, tiered.Config{Redis: l2.Config{Addrs: []string{srv.Addr()}}, Rand: func() float64 { return 0.999999 }})
	cache := newCache(t, c, "users", tiered.Options[string]{TTL: time.Hour, Sliding: true, Jitter: 0.5, EarlyRefreshBeta: -1})
	var l review11Loader
	for range 2 { // the load (fresh for about 1.5 h), then an L1 hit: an extension is due
		if _, err := cache.Get(ctx, "k", l.load); err != nil {
			t.Fatal(err)
		}
	}
	if s := cache.Stats(); s.Extensions != 1 {
		t.Fatalf("%d extensions, want 1", s.Extensions)
	}
	redistest.WaitFor(t, 10*time.Second, func() bool { return srv.CommandCount(t, "pexpire") >= 1 }, "the extension ran")
	ttl, _ := srv.Do(t, "PTTL", "strata:users:{k}").(int64)
	if life := time.Duration(ttl) * time.Millisecond; life < 80*time.Minute {
		t.Errorf("after the extension L2 keeps the entry %v, less than its fresh life of about 1.5 h", life)
	}
}

// TestReview11ClosedWinsOverEndedCtx: on a closed client, a call whose ctx
// has also ended gets ErrClosed from Set and Delete (check runs first) but
// the ctx's error from Clear, InvalidateTags, InvalidatePattern and
// Client.Invalidate (detach runs before beginWrite): one state, two answers.
func TestReview11ClosedWinsOverEndedCtx(t *testing.T) {
	c, _ := newRedisClient(t, tiered.Config{})
	cache := newCache(t, c, "ns", tiered.Options[string]{})
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	for name, op := range map[string]func() error{
		"Set":               func() error { return cache.Set(ctx, "k", "v") },
		"Delete":            func() error { return cache.Delete(ctx, "k") },
		"Clear":             func() error { return cache.Clear(ctx) },
		"InvalidateTags":    func() error { return cache.InvalidateTags(ctx, "t") },
		"InvalidatePattern": func() error { return cache.InvalidatePattern(ctx, "k*") },
		"Client.Invalidate": func() error { return c.Invalidate(ctx, "ns", "k") },
	} {
		if err := op(); !errors.Is(err, tiered.ErrClosed) {
			t.Errorf("%s on a closed client with an ended ctx = %v, want ErrClosed (as Set and Delete)", name, err)
		}
	}
}
