package tiered_test

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/strata-cache/strata/internal/redistest"
	"github.com/strata-cache/strata/l2"
	"github.com/strata-cache/strata/tiered"
)

// Health on a Redis Cluster: one entry per master, serving, with the
// breaker Strata keeps for it, not watched (go-redis follows failovers).
func TestHealthCluster(t *testing.T) {
	rc := redistest.StartCluster(t, 3)
	c := newClient(t, tiered.Config{NodeID: "a", Redis: l2.Config{ClusterAddrs: rc.Addrs()}})
	cache := newCache(t, c, "users", tiered.Options[string]{})
	if _, err := cache.Get(context.Background(), "k", func(context.Context, string) (string, error) { return "v", nil }); err != nil {
		t.Fatal(err)
	}
	var masters []string
	for _, m := range rc.Masters {
		masters = append(masters, m.Addr())
	}
	slices.Sort(masters)
	redistest.WaitFor(t, 10*time.Second, func() bool {
		h := c.Health()
		if len(h.Servers) != len(masters) {
			return false
		}
		for i, s := range h.Servers {
			if s != (l2.ServerHealth{Addr: masters[i], Serving: true, Breaker: "closed"}) {
				return false
			}
		}
		return true
	}, "the three masters serving, breakers closed: %+v", c.Health().Servers)
}
