package l2

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
)

// Reachable PINGs every server the store sends to and returns an error
// naming each that did not answer. Each PING is bounded as the store's own
// checks of that server are: a single node's or Ring shard's by
// Config.HealthTimeout (plus DialTimeout for a new connection), a
// Cluster's masters by DialTimeout plus Timeout, and a caller's client's
// servers by callerPingBound (2 s), whatever that client's own timeouts.
func (s *Store) Reachable(ctx context.Context) error {
	var mu sync.Mutex
	var errs []error
	caller := !s.owned // a caller's client, with its own timeouts
	ping := func(ctx context.Context, c *redis.Client) error {
		o := c.Options()
		bound := o.DialTimeout + o.ReadTimeout
		if caller || bound <= 0 {
			// go-redis bounds reads by its ReadTimeout, not the context
			// (unless ContextTimeoutEnabled), and retries: PING over a
			// connection of its own with the bound's timeouts.
			one := *o
			one.DialTimeout, one.ReadTimeout, one.WriteTimeout = callerPingBound/2, callerPingBound/2, callerPingBound/2
			one.MaxRetries, one.PoolSize, one.MinIdleConns, one.MaxIdleConns = -1, 1, 0, 0
			c = redis.NewClient(&one)
			defer c.Close()
			bound = callerPingBound
		}
		pctx, cancel := context.WithTimeout(ctx, bound)
		defer cancel()
		if err := c.Ping(pctx).Err(); err != nil {
			mu.Lock()
			errs = append(errs, fmt.Errorf("Redis at %s does not answer: %w", o.Addr, err))
			mu.Unlock()
		}
		return nil
	}
	var err error
	switch c := s.client.(type) {
	case *redis.ClusterClient:
		err = c.ForEachMaster(ctx, ping)
	case *redis.Ring:
		if s.set != nil {
			var wg sync.WaitGroup
			for _, n := range s.set.nodes {
				wg.Go(func() { _ = ping(ctx, cmp.Or(n.admin, n.client)) })
			}
			wg.Wait()
		} else {
			err = c.ForEachShard(ctx, ping)
		}
	case *redis.Client:
		if s.health != nil {
			err = ping(ctx, cmp.Or(s.health.nodes[0].admin, s.health.nodes[0].client))
		} else {
			err = ping(ctx, c)
		}
	default:
		pctx, cancel := context.WithTimeout(ctx, callerPingBound)
		err = s.client.Ping(pctx).Err()
		cancel()
	}
	if err != nil {
		errs = append(errs, fmt.Errorf("Redis does not answer: %w", err))
	}
	return errors.Join(errs...)
}

// callerPingBound bounds Reachable's PING of a caller's client's server:
// go-redis's defaults (5 s to dial, 3 s to read, with retries) would hold a
// start for 10 s at a hung server.
const callerPingBound = 2 * time.Second
