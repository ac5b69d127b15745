package l2

import (
	"context"
	"fmt"
	"sync"

	"github.com/redis/go-redis/v9"
)

// DeleteMatching removes the keys of ns whose key matches pattern (Redis
// glob syntax), with their leases: SCAN and UNLINK on every shard or cluster
// master. It returns how many keys it removed.
//
// Each server is scanned twice: first for the load leases of matching keys,
// then for the keys. A SCAN finds only what exists for its whole run, so a
// load that fills its value during the first pass may escape it, but its
// value then exists for the whole second; a lease that escapes the first pass
// ends after it, and its fill fails. Loads that start after the first pass
// read the source after the caller changed it.
func (s *Store) DeleteMatching(ctx context.Context, ns, pattern string) (int, error) {
	matches := []string{s.prefix + ":" + ns + ":{" + pattern + "}"}
	if s.topo == shardRing {
		matches = append(matches, s.prefix+"@*:"+ns+":{"+pattern+"}")
	}
	var mu sync.Mutex
	total := 0
	each := func(ctx context.Context, c *redis.Client) error {
		for _, match := range matches {
			if _, err := scanUnlink(ctx, c, match+leaseSuffix, false); err != nil {
				return err
			}
		}
		for _, match := range matches {
			n, err := scanUnlink(ctx, c, match, true)
			mu.Lock()
			total += n
			mu.Unlock()
			if err != nil {
				return err
			}
		}
		return nil
	}
	err := s.onEveryServer(ctx, each)
	return total, err
}

// onEveryServer runs each on every server that holds keys: each shard or
// Cluster master, in parallel. Where the store heals, a server out of
// service, or one each fails on, is left dirty, to be flushed before it
// serves again: on a Ring that is no failure (the Ring reads no key from it
// meanwhile), on a single node it is.
func (s *Store) onEveryServer(ctx context.Context, each func(context.Context, *redis.Client) error) error {
	switch s.topo {
	case redisCluster:
		return s.client.(*redis.ClusterClient).ForEachMaster(ctx, each)
	case callerRing:
		return s.client.(*redis.Ring).ForEachShard(ctx, each)
	case callerNode:
		return each(ctx, s.client.(*redis.Client))
	case singleNode:
		n := s.health.nodes[0]
		err := each(ctx, n.client)
		if err != nil && n.markDirty(nil, true) {
			s.health.dirtied(0)
		}
		return err
	case shardRing:
		var wg sync.WaitGroup
		for i, n := range s.health.nodes {
			if !n.serving() {
				if n.markDirty(nil, true) {
					s.health.dirtied(i)
				}
				continue
			}
			wg.Go(func() {
				if err := each(ctx, n.client); err != nil && n.markDirty(nil, true) {
					s.health.dirtied(i)
				}
			})
		}
		wg.Wait()
		return nil
	}
	return fmt.Errorf("l2: pattern deletion needs a *redis.Client, Ring or ClusterClient, not %T", s.client)
}

// scanUnlink unlinks every key of one server matching match, and with
// leases the key's lease too.
func scanUnlink(ctx context.Context, c *redis.Client, match string, leases bool) (int, error) {
	total := 0
	var cursor uint64
	for {
		keys, next, err := c.Scan(ctx, cursor, match, 1000).Result()
		if err != nil {
			return total, err
		}
		if len(keys) > 0 {
			// A key and its lease share a slot; different keys may not.
			if _, err := c.Pipelined(ctx, func(p redis.Pipeliner) error {
				for _, k := range keys {
					if leases {
						p.Unlink(ctx, k, k+leaseSuffix)
					} else {
						p.Unlink(ctx, k)
					}
				}
				return nil
			}); err != nil {
				return total, err
			}
			total += len(keys)
		}
		if cursor = next; cursor == 0 {
			return total, nil
		}
	}
}
