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

// Reachable PINGs every server the store sends to, at most bound each
// (the connection's DialTimeout plus Timeout, or 2 s for a caller's
// client), and returns an error naming each that did not answer.
func (s *Store) Reachable(ctx context.Context) error {
	var mu sync.Mutex
	var errs []error
	ping := func(ctx context.Context, c *redis.Client) error {
		o := c.Options()
		bound := o.DialTimeout + o.ReadTimeout
		if bound <= 0 {
			bound = 2 * time.Second
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
		err = s.client.Ping(ctx).Err()
	}
	if err != nil {
		errs = append(errs, fmt.Errorf("Redis does not answer: %w", err))
	}
	return errors.Join(errs...)
}
