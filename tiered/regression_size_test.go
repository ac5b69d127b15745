package tiered_test

import (
	"context"
	"testing"

	"github.com/strata-cache/strata/internal/redistest"
	"github.com/strata-cache/strata/l2"
	"github.com/strata-cache/strata/tiered"
)

// A loaded value larger than MaxValueSize is "returned but not cached"
// (Options.MaxValueSize). loadLocal, the path without L2 (none configured, or
// L2 failing), installs it in L1 anyway, with Size 0, so its L1 cost is the
// key plus the fixed overhead: MaxCost no longer bounds L1's memory.
func TestReviewOversizedValueNotCachedWithoutL2(t *testing.T) {
	for _, mode := range []string{"no L2", "L2 down"} {
		t.Run(mode, func(t *testing.T) {
			ctx := context.Background()
			var c *tiered.Client
			if mode == "no L2" {
				c = newClient(t, tiered.Config{})
			} else {
				srv := redistest.Start(t)
				c = newClient(t, tiered.Config{Redis: l2.Config{Addrs: []string{srv.Addr()}}})
				srv.Kill()
			}
			cache := newCache(t, c, "users", tiered.Options[string]{MaxValueSize: 4})
			var l countingLoader
			for range 2 {
				if v, err := cache.Get(ctx, "key", l.load); err != nil || v != "v:key" {
					t.Fatalf("Get = %q, %v", v, err)
				}
			}
			if l.calls.Load() != 2 {
				t.Errorf("loads %d, stats %+v; want the oversized value served but never cached", l.calls.Load(), cache.Stats())
			}
		})
	}
}
