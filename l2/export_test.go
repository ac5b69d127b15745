package l2

import (
	"context"
	"time"

	"github.com/redis/go-redis/v9"
)

// Test hooks: writes only tests make. Set and SetMany skip the load lease
// protocol (tiered writes through WriteSeeing and fills through Fill);
// Write is WriteSeeing without the version read.

// Set stores data under key for ttl (rounded to a millisecond, at least one).
func (s *Store) Set(ctx context.Context, ns, key string, data []byte, ttl time.Duration) error {
	k, standIn := s.locate(ns, key)
	return s.client.Set(ctx, k, data, roundTTL(s.ttl(standIn, ttl))).Err()
}

// SetMany stores items in one pipeline, split per shard like GetMany.
func (s *Store) SetMany(ctx context.Context, ns string, items []Item) error {
	cmds := make([]redis.Cmder, len(items))
	full, shard, ttl := make([]string, len(items)), make([]int, len(items)), make([]time.Duration, len(items))
	for i, it := range items {
		var standIn bool
		full[i], shard[i], standIn = s.route(ns, it.Key)
		ttl[i] = roundTTL(s.ttl(standIn, it.TTL))
	}
	s.pipelined(ctx, len(items), func(i int) int { return shard[i] }, func(p redis.Pipeliner, i int) {
		cmds[i] = p.Set(ctx, full[i], items[i].Data, ttl[i])
	})
	return cmdErrors(cmds)
}

// Write stores data under key for ttl and ends any load lease on key.
func (s *Store) Write(ctx context.Context, ns, key string, data []byte, ttl time.Duration) error {
	_, _, err := s.WriteSeeing(ctx, ns, key, data, ttl, "")
	return err
}

// StreamsVersion exposes streamsVersion.
var StreamsVersion = streamsVersion

// KeyLayout returns a Store with only a key prefix: enough for the key
// layout methods (Key, LeaseKey, TagKey, StreamKey, ParseKey, VersionKey).
func KeyLayout(prefix string) *Store { return &Store{prefix: prefix} }

// ParseKey exposes parseKey.
func (s *Store) ParseKey(full string) (ns, key string, ok bool) { return s.parseKey(full) }

// VersionKey exposes versionKey.
func (s *Store) VersionKey(ns string) string { return s.versionKey(ns) }

// Key layout helpers, exposed.
var (
	HashTag       = hashTag
	DataKeys      = dataKeys
	StandInPrefix = standInPrefix
)
