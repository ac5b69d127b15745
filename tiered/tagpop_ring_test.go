package tiered_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/strata-cache/strata/internal/redistest"
	"github.com/strata-cache/strata/l2"
	"github.com/strata-cache/strata/tiered"
)

// TestTagPopReplyLostOnRing is the chaos soak's Ring stale read (seed
// 1796227265044766488): InvalidateTags pops a tag's set on a shard that is
// stopped (SIGSTOP) past the command timeout. The shard runs the pop when
// it resumes, but the reply is lost: the keys the set listed, which live on
// other shards, were not deleted. The shard is flushed before it serves
// again, which removes no key of another shard. The application retries
// InvalidateTags; the retry must still find the keys (the popping set) and
// delete them.
func TestTagPopReplyLostOnRing(t *testing.T) {
	ctx := context.Background()
	shards := redistest.StartShards(t, 3)
	var addrs []string
	for _, s := range shards {
		addrs = append(addrs, s.Addr())
	}
	cfg := tiered.Config{Redis: l2.Config{Addrs: addrs, Timeout: 300 * time.Millisecond}}
	c := newClient(t, cfg)
	cache := newCache(t, c, "users", tiered.Options[string]{TTL: time.Hour})
	probe := newCache(t, newClient(t, cfg), "users", tiered.Options[string]{L1: tiered.L1Options{Disabled: true}})
	// The tag fence's shard must not be the one stopped: its advance, not
	// the pop, would time out.
	if err := cache.InvalidateTags(ctx, "warm-up"); err != nil {
		t.Fatal(err)
	}
	shardOf := func(key string) int {
		for i, s := range shards {
			if s.Do(t, "EXISTS", key) == int64(1) {
				return i
			}
		}
		return -1
	}
	fence := shardOf("strata:users#tagfence")
	tag, home := "", -1
	for i := 0; i < 50 && home < 0; i++ {
		tag = fmt.Sprintf("t%d", i)
		if err := cache.Set(ctx, "finder", "x", tiered.WithTags(tag)); err != nil {
			t.Fatal(err)
		}
		if at := shardOf("strata:users#tag:{" + tag + "}"); at >= 0 && at != fence {
			home = at
		}
	}
	if home < 0 {
		t.Fatal("no tag's set found apart from the tag fence")
	}
	// The pop script is loaded on the shard (EVALSHA would meet NOSCRIPT).
	if err := cache.InvalidateTags(ctx, tag); err != nil {
		t.Fatal(err)
	}
	// Tagged keys on the other shards.
	var keys []string
	for i := 0; len(keys) < 5 && i < 200; i++ {
		k := fmt.Sprintf("user:%d", i)
		if err := cache.Set(ctx, k, "old", tiered.WithTags(tag)); err != nil {
			t.Fatal(err)
		}
		if shards[home].Do(t, "EXISTS", "strata:users:{"+k+"}") == int64(0) {
			keys = append(keys, k)
		}
	}
	shards[home].Pause()
	err := cache.InvalidateTags(ctx, tag)
	shards[home].Resume()
	if err == nil {
		t.Skip("the pop answered in time: nothing lost")
	}

	// The shard ran the pop on resuming: no set holds the keys now, unless
	// the popping set does.
	redistest.WaitFor(t, 10*time.Second, func() bool { return shards[home].Do(t, "EXISTS", "strata:users#tag:{"+tag+"}") == int64(0) },
		"the stopped shard runs the pop when it resumes")
	redistest.WaitFor(t, 20*time.Second, func() bool { return cache.InvalidateTags(ctx, tag) == nil }, "a retried InvalidateTags succeeds")
	for _, k := range keys {
		if v, err := probe.Get(ctx, k, nil); !errors.Is(err, tiered.ErrNotFound) {
			t.Errorf("%s after InvalidateTags succeeded: L2 still has %q (%v)", k, v, err)
		}
	}
}
