package l2

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"
)

// TagKey returns the Redis key of the set of ns's keys tagged tag:
// prefix:ns#tag:{tag}. Namespaces cannot contain '#', so it collides with no
// value key.
func (s *Store) TagKey(ns, tag string) string { return s.prefix + ":" + ns + "#tag:{" + tag + "}" }

// AddTags adds key to the set of each of its tags, and makes each set live
// at least ttl. Writers call it before writing the value, so that a tag
// invalidation running in between finds the key (and ends its lease).
func (s *Store) AddTags(ctx context.Context, ns, key string, tags []string, ttl time.Duration) error {
	ms := ms(ttl)
	cmds := make([]redis.Cmder, 3*len(tags))
	s.pipelined(ctx, len(tags), s.tagShards(ns, tags), func(p redis.Pipeliner, i int) {
		k := s.TagKey(ns, tags[i])
		cmds[3*i] = p.SAdd(ctx, k, key)
		// NX gives a new set its TTL; GT pushes an older one's out.
		cmds[3*i+1] = p.Do(ctx, "PEXPIRE", k, ms, "NX")
		cmds[3*i+2] = p.Do(ctx, "PEXPIRE", k, ms, "GT")
	})
	return cmdErrors(cmds)
}

// tagShards returns the Ring shard of each of ns's tag sets, for pipelined.
func (s *Store) tagShards(ns string, tags []string) func(i int) int {
	if s.set == nil {
		return nil
	}
	return func(i int) int {
		at, _ := s.tagShard(ns, tags[i])
		return at
	}
}

// KeysWithTags returns the keys in the sets of tags (a key may repeat). A
// tag whose set lives on a shard out of service is an error: the stand-in
// holds at most the memberships added since, and deleting only those would
// look like success.
func (s *Store) KeysWithTags(ctx context.Context, ns string, tags []string) ([]string, error) {
	if s.set != nil {
		for _, t := range tags {
			if _, standIn := s.tagShard(ns, t); standIn {
				return nil, fmt.Errorf("%w: tag %q: its shard %s is out of service", ErrUnavailable, t, s.set.nodes[s.set.all.get(hashTag(s.TagKey(ns, t)))].addr)
			}
		}
	}
	cmds := make([]*redis.StringSliceCmd, len(tags))
	s.pipelined(ctx, len(tags), s.tagShards(ns, tags), func(p redis.Pipeliner, i int) {
		cmds[i] = p.SMembers(ctx, s.TagKey(ns, tags[i]))
	})
	var keys []string
	var errs []error
	for _, c := range cmds {
		members, err := c.Result()
		if err != nil && !errors.Is(err, redis.Nil) {
			errs = append(errs, err)
		}
		keys = append(keys, members...)
	}
	return keys, joinDistinct(errs)
}

// DeleteTags removes the sets of tags.
func (s *Store) DeleteTags(ctx context.Context, ns string, tags []string) error {
	cmds := make([]redis.Cmder, len(tags))
	s.pipelined(ctx, len(tags), s.tagShards(ns, tags), func(p redis.Pipeliner, i int) {
		cmds[i] = p.Del(ctx, s.TagKey(ns, tags[i]))
	})
	return cmdErrors(cmds)
}
