package l2

import (
	"cmp"
	"context"
	"slices"
	"sync"

	"github.com/redis/go-redis/v9"
)

// callerHealth is Health for a caller's client, which Strata neither guards
// nor watches: it PINGs each server now, all at once, bounded by
// HealthTimeout.
func (s *Store) callerHealth() []ServerHealth {
	ctx, cancel := context.WithTimeout(context.Background(), s.healthTimeout)
	defer cancel()
	var out []ServerHealth
	switch c := s.client.(type) {
	case *redis.Client:
		out = []ServerHealth{ping(ctx, c.Options().Addr, c)}
	case *redis.Ring:
		out = ringHealth(ctx, c)
	case *redis.ClusterClient:
		out = clusterHealth(ctx, c)
	default:
		out = []ServerHealth{ping(ctx, "", s.client)}
	}
	slices.SortFunc(out, func(a, b ServerHealth) int { return cmp.Compare(a.Addr, b.Addr) })
	return out
}

// ping is one server's health from a PING.
func ping(ctx context.Context, addr string, c redis.Cmdable) ServerHealth {
	h := ServerHealth{Addr: addr, Serving: true}
	if err := c.Ping(ctx).Err(); err != nil {
		h.Serving, h.Reason = false, "ping: "+err.Error()
	}
	return h
}

// ringHealth PINGs each shard of a caller's Ring that its heartbeat holds
// up; the others are listed as not serving.
func ringHealth(ctx context.Context, ring *redis.Ring) []ServerHealth {
	up := pingEach(ctx, ring.ForEachShard)
	var out []ServerHealth
	for _, addr := range ring.Options().Addrs {
		h, ok := up[addr]
		if !ok {
			h = ServerHealth{Addr: addr, Reason: "down: the Ring's heartbeat holds it out"}
		}
		out = append(out, h)
	}
	return out
}

// clusterHealth PINGs each master of a caller's ClusterClient; go-redis
// reloads the topology to list them (or, failing that, uses the one it has).
// If it has none, the seeds are listed as not serving.
func clusterHealth(ctx context.Context, c *redis.ClusterClient) []ServerHealth {
	var err error
	up := pingEach(ctx, func(ctx context.Context, fn func(context.Context, *redis.Client) error) error {
		err = c.ForEachMaster(ctx, fn)
		return err
	})
	if len(up) == 0 && err != nil {
		var out []ServerHealth
		for _, addr := range c.Options().Addrs {
			out = append(out, ServerHealth{Addr: addr, Reason: "cluster topology unknown: " + err.Error()})
		}
		return out
	}
	var out []ServerHealth
	for _, h := range up {
		out = append(out, h)
	}
	return out
}

// pingEach PINGs every client forEach visits, by address.
func pingEach(ctx context.Context, forEach func(context.Context, func(context.Context, *redis.Client) error) error) map[string]ServerHealth {
	var mu sync.Mutex
	out := map[string]ServerHealth{}
	_ = forEach(ctx, func(ctx context.Context, c *redis.Client) error {
		h := ping(ctx, c.Options().Addr, c)
		mu.Lock()
		out[h.Addr] = h
		mu.Unlock()
		return nil
	})
	return out
}
