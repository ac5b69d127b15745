package tiered_test

import (
	"context"
	"testing"
	"time"

	"github.com/strata-cache/strata/internal/redistest"
	"github.com/strata-cache/strata/l1"
	"github.com/strata-cache/strata/l2"
	"github.com/strata-cache/strata/tiered"
)

// TestOtterEngine: a cache on the Otter engine serves L1 hits, and takes
// another replica's writes, deletes and tag invalidations like the default
// engine (the convergence property and the chaos soak mix both engines too).
func TestOtterEngine(t *testing.T) {
	ctx := context.Background()
	srv := redistest.Start(t)
	cfg := func(id string) tiered.Config {
		return tiered.Config{NodeID: id, Redis: l2.Config{Addrs: []string{srv.Addr()}}}
	}
	opts := func(e l1.Engine) tiered.Options[string] {
		return tiered.Options[string]{TTL: time.Hour, L1: tiered.L1Options{Engine: e},
			Tags: func(key, _ string) []string { return []string{"t:" + key} }}
	}
	writer := newCache(t, newClient(t, cfg("writer")), "otter", opts(l1.Ristretto))
	reader := newCache(t, newClient(t, cfg("reader")), "otter", opts(l1.Otter))
	load := func(context.Context, string) (string, error) { return "loaded", nil }

	if err := writer.Set(ctx, "k", "v1"); err != nil {
		t.Fatal(err)
	}
	if v, info, err := reader.GetWithInfo(ctx, "k", load); err != nil || v != "v1" || info.Tier != tiered.TierL2 {
		t.Fatalf("first Get = %q, %+v, %v; want v1 from L2", v, info, err)
	}
	// A fill may be refused once, by the write's own invalidation arriving
	// after the first Get began: the next one fills.
	if !eventually(5*time.Second, func() bool {
		v, info, err := reader.GetWithInfo(ctx, "k", load)
		return err == nil && v == "v1" && info.Tier == tiered.TierL1
	}) {
		t.Fatal("the reader never served v1 from the otter L1")
	}
	if s := reader.Stats().L1; s.Entries != 1 || s.Cost <= 0 {
		t.Fatalf("L1 stats %+v, want one entry with its cost", s)
	}
	sees := func(want string) {
		t.Helper()
		if !eventually(5*time.Second, func() bool { v, err := reader.Get(ctx, "k", load); return err == nil && v == want }) {
			t.Fatalf("the otter replica never served %q", want)
		}
	}
	if err := writer.Set(ctx, "k", "v2"); err != nil {
		t.Fatal(err)
	}
	sees("v2")
	if err := writer.InvalidateTags(ctx, "t:k"); err != nil {
		t.Fatal(err)
	}
	sees("loaded")
	if err := writer.Set(ctx, "k", "v3"); err != nil {
		t.Fatal(err)
	}
	sees("v3")
	if err := writer.Delete(ctx, "k"); err != nil {
		t.Fatal(err)
	}
	sees("loaded")
}
