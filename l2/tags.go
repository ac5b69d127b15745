package l2

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/redis/go-redis/v9"
)

// AddTags adds key to the set of each of its tags, and makes each set live
// at least ttl. Writers call it before writing the value, so that a tag
// invalidation running in between finds the key (and ends its lease).
//
// A tag whose set lives on a Ring shard out of service is an error, as it
// is to PopTags: a membership added to a stand-in's set would not be in
// the set an invalidation pops once the shard serves again, and the value
// would outlive the invalidation. The caller must not keep the value in L2.
func (s *Store) AddTags(ctx context.Context, ns, key string, tags []string, ttl time.Duration) error {
	if err := s.tagsServing(ns, tags); err != nil {
		return err
	}
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
	if s.topo != shardRing {
		return nil
	}
	return func(i int) int {
		at, _ := s.tagShard(ns, tags[i])
		return at
	}
}

// popTagScript: KEYS tag set and, where they share a slot, its popping
// set; ARGV the popping set's life in ms when the set has no expiry. Moves
// the set's members into the popping set and deletes the set, in one step
// (a writer's SADD lands either before, and its key is returned, or after,
// in a new set that the next invalidation finds), and returns {the set's
// remaining time to live in ms (-1 none, -2 no set), the popping set's
// members}. The popping set keeps every member popped for as long as the
// longest-lived set moved into it (sliding extensions push it out too), and
// every pop returns them all again: a pop whose reply was lost (its server
// stopped, then resumed and ran it) leaves its members to the next pop,
// where before they were in no set while their values lived on other
// servers. The price is a pop that deletes again keys an earlier one
// deleted. A tag whose set has no slot of its own (its hash tag would be
// empty: a tag starting with '}') is popped alone, as before.
var popTagScript = redis.NewScript(popTagSrc)

const popTagSrc = `
local ttl = redis.call('PTTL', KEYS[1])
if #KEYS == 1 then
  local m = redis.call('SMEMBERS', KEYS[1])
  redis.call('DEL', KEYS[1])
  return {ttl, m}
end
if ttl ~= -2 then
  local left = redis.call('PTTL', KEYS[2])
  redis.call('SUNIONSTORE', KEYS[2], KEYS[2], KEYS[1])
  redis.call('DEL', KEYS[1])
  local keep = ttl
  if ttl == -1 then keep = tonumber(ARGV[1]) end
  if left > keep then keep = left end
  redis.call('PEXPIRE', KEYS[2], keep)
end
return {ttl, redis.call('SMEMBERS', KEYS[2])}`

// poppingSuffix names a tag set's popping set: prefix:ns#tag:{tag}#popping,
// in the set's slot and shard, and no data key (dataKeys) for a flush to
// remove.
const poppingSuffix = "#popping"

// poppingLife is how long a popping set lives when the set moved into it
// had no expiry (its PEXPIRE was lost): a bound on what it holds.
const poppingLife = 24 * time.Hour

// poppingKey returns the popping set of the tag set k, or "" when the two
// would not share a slot.
func poppingKey(k string) string {
	if hashTag(k) == k {
		return ""
	}
	return k + poppingSuffix
}

// TagSet is a tag set PopTags removed: its members, and how long it had
// left to live (zero: no expiry), for putting it back.
type TagSet struct {
	Members []string
	TTL     time.Duration
}

// PopTags removes the sets of tags and returns them, per tag; a set that
// could not be popped is empty in the result, which still holds the others.
// A tag whose set lives on a shard out of service is an error: the stand-in
// holds at most the memberships added since, and deleting only those would
// look like success.
//
// Writers add a key to its tag sets after writing its value (Set) or before
// filling a leased load (whose lease the caller ends by deleting the key):
// either way a key with a value is never out of the sets of its tags.
func (s *Store) PopTags(ctx context.Context, ns string, tags []string) ([]TagSet, error) {
	if err := s.tagsServing(ns, tags); err != nil {
		return nil, err
	}
	sets := make([]TagSet, len(tags))
	err := s.evalMany(ctx, popTagScript, len(tags), s.tagShards(ns, tags), func(i int) ([]string, []any) {
		k := s.TagKey(ns, tags[i])
		if p := poppingKey(k); p != "" {
			return []string{k, p}, []any{poppingLife.Milliseconds()}
		}
		return []string{k}, nil
	}, func(i int, cmd *redis.Cmd) error {
		res, err := cmd.Slice()
		if err != nil || len(res) != 2 {
			return errors.Join(err, errors.New("l2: malformed tag pop reply"))
		}
		if ms, _ := res[0].(int64); ms > 0 {
			sets[i].TTL = time.Duration(ms) * time.Millisecond
		}
		members, _ := res[1].([]any)
		for _, m := range members {
			if k, ok := m.(string); ok {
				sets[i].Members = append(sets[i].Members, k)
			}
		}
		return nil
	})
	return sets, err
}

// TagsServing fails with ErrUnavailable if the set of one of tags lives
// on a Ring shard out of service, where AddTags would refuse it: a writer
// checks before it writes a tagged value.
func (s *Store) TagsServing(ns string, tags []string) error { return s.tagsServing(ns, tags) }

// tagsServing fails if the set of one of tags lives on a shard out of
// service.
func (s *Store) tagsServing(ns string, tags []string) error {
	if s.topo != shardRing {
		return nil
	}
	for _, t := range tags {
		if _, standIn := s.tagShard(ns, t); standIn {
			return fmt.Errorf("%w: tag %q: its shard %s is out of service", ErrUnavailable, t, s.set.nodes[s.set.all.Get(hashTag(s.TagKey(ns, t)))].addr)
		}
	}
	return nil
}

// ExpireTags makes the sets of tags live at least ttl from now: a sliding
// value's tag sets must outlive it.
func (s *Store) ExpireTags(ctx context.Context, ns string, tags []string, ttl time.Duration) error {
	ms := ms(ttl)
	cmds := make([]redis.Cmder, 2*len(tags)) // pipelines of different shards fill it at once
	s.pipelined(ctx, len(tags), s.tagShards(ns, tags), func(p redis.Pipeliner, i int) {
		k := s.TagKey(ns, tags[i])
		cmds[2*i] = p.Do(ctx, "PEXPIRE", k, ms, "GT")
		if pk := poppingKey(k); pk != "" { // what a lost pop left there lives as long
			cmds[2*i+1] = p.Do(ctx, "PEXPIRE", pk, ms, "GT")
		}
	})
	return cmdErrors(slices.DeleteFunc(cmds, func(c redis.Cmder) bool { return c == nil }))
}

// TagFence is a reading of a namespace's tag-invalidation counter, taken by
// a loader before it reads the source and compared (==) with a second reading
// before it fills: a tag invalidation in between makes them differ, and the
// fill must not happen (the loaded data may predate the invalidation, and the
// key was not yet in the sets it cleared). Readings through different routing
// generations always differ.
type TagFence struct {
	count uint64
	live  *liveShards
}

// tagFenceSuffix names a namespace's tag-invalidation counter:
// prefix:ns#tagfence. Namespaces cannot contain '#'.
const tagFenceSuffix = "#tagfence"

// advanceScript: KEYS counter. Moves it to a value it never held:
// max(value+1, server time in microseconds), so a counter started afresh on
// a stand-in shard never repeats one an owner held.
var advanceScript = redis.NewScript(`
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local n = math.max(tonumber(redis.call('GET', KEYS[1]) or '0') + 1, now)
redis.call('SET', KEYS[1], string.format('%.0f', n))
return 1`)

// tagFenceKey returns the Redis key of ns's tag-invalidation counter and the
// routing it was resolved with.
func (s *Store) tagFenceKey(ns string) (string, *liveShards) {
	k := s.prefix + ":" + ns + tagFenceSuffix
	if s.topo != shardRing {
		return k, nil
	}
	live := s.set.live.Load()
	if _, standIn := s.set.placeIn(live, hashTag(k)); standIn {
		k = standInPrefix(s.prefix, live.epoch) + ":" + ns + tagFenceSuffix
	}
	return k, live
}

// ReadTagFence reads ns's tag-invalidation counter.
func (s *Store) ReadTagFence(ctx context.Context, ns string) (TagFence, error) {
	k, live := s.tagFenceKey(ns)
	n, err := s.client.Get(ctx, k).Uint64()
	if errors.Is(err, redis.Nil) {
		err = nil
	}
	return TagFence{count: n, live: live}, err
}

// AdvanceTagFence moves ns's tag-invalidation counter on, before a tag
// invalidation clears the tag sets: loads that read the source before it
// then refuse to fill.
func (s *Store) AdvanceTagFence(ctx context.Context, ns string) error {
	k, _ := s.tagFenceKey(ns)
	return advanceScript.Run(ctx, s.client, []string{k}).Err()
}
