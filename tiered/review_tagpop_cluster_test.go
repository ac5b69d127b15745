package tiered_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/strata-cache/strata/internal/redistest"
	"github.com/strata-cache/strata/l2"
	"github.com/strata-cache/strata/tiered"
)

// TestTagPopReplyLostOnCluster is the chaos soak's Cluster stale read,
// minimised: InvalidateTags pops a tag's set on a master that is stopped
// (SIGSTOP) past the command timeout. The pop runs when the master
// resumes, but its reply is lost, so the keys it listed are not deleted;
// InvalidateTags fails and the application retries it. The retry must
// still delete the tagged value from L2.
func TestTagPopReplyLostOnCluster(t *testing.T) {
	waitsMostly(t)
	ctx := context.Background()
	cl := redistest.StartCluster(t, 3)
	cfg := tiered.Config{Redis: l2.Config{ClusterAddrs: cl.Addrs(), Timeout: 200 * time.Millisecond}}
	cache := newCache(t, newClient(t, cfg), "users", tiered.Options[string]{TTL: time.Hour,
		Tags: func(string, string) []string { return []string{"t"} }})
	probe := newCache(t, newClient(t, cfg), "users", tiered.Options[string]{L1: tiered.L1Options{Disabled: true}})
	cc := cl.Client(t)
	tagMaster, err := cc.MasterForKey(ctx, "strata:users#tag:{t}")
	if err != nil {
		t.Fatal(err)
	}
	var paused *redistest.Server
	for _, m := range cl.Masters {
		if m.Addr() == tagMaster.Options().Addr {
			paused = m
		}
	}
	// A key served by another master than the tag's set.
	key := ""
	for _, k := range []string{"a", "b", "c", "d", "e", "f", "g", "h"} {
		m, err := cc.MasterForKey(ctx, "strata:users:{"+k+"}")
		if err == nil && m.Options().Addr != tagMaster.Options().Addr {
			key = k
			break
		}
	}
	// The pop script is loaded on the master (EVALSHA would meet NOSCRIPT
	// when it resumes, and run nothing).
	if err := cache.InvalidateTags(ctx, "t"); err != nil {
		t.Fatal(err)
	}
	if err := cache.Set(ctx, key, "old"); err != nil {
		t.Fatal(err)
	}
	paused.Pause()
	err = cache.InvalidateTags(ctx, "t")
	paused.Resume()
	if err == nil {
		t.Skip("the pop answered in time: nothing lost") // not what this test is about
	}
	redistest.WaitFor(t, 10*time.Second, func() bool {
		return cache.InvalidateTags(ctx, "t") == nil
	}, "a retried InvalidateTags succeeds")
	if v, err := probe.Get(ctx, key, nil); !errors.Is(err, tiered.ErrNotFound) {
		t.Fatalf("after InvalidateTags succeeded on retry: L2 still has %q (%v)", v, err)
	}
}

// TestTagStartingWithBraceOnCluster: a tag whose set has no hash tag of
// its own (it starts with '}') is popped alone, without a popping set in
// another slot (CROSSSLOT).
func TestTagStartingWithBraceOnCluster(t *testing.T) {
	waitsMostly(t)
	ctx := context.Background()
	cl := redistest.StartCluster(t, 3)
	cfg := tiered.Config{Redis: l2.Config{ClusterAddrs: cl.Addrs(), Timeout: time.Second}}
	cache := newCache(t, newClient(t, cfg), "users", tiered.Options[string]{TTL: time.Hour})
	probe := newCache(t, newClient(t, cfg), "users", tiered.Options[string]{L1: tiered.L1Options{Disabled: true}})
	for _, tag := range []string{"}x", "a}b", "{y}"} {
		if err := cache.Set(ctx, "k", "v", tiered.WithTags(tag)); err != nil {
			t.Fatal(err)
		}
		if err := cache.InvalidateTags(ctx, tag); err != nil {
			t.Fatalf("InvalidateTags(%q): %v", tag, err)
		}
		if _, err := probe.Get(ctx, "k", nil); !errors.Is(err, tiered.ErrNotFound) {
			t.Fatalf("after InvalidateTags(%q): %v, want ErrNotFound", tag, err)
		}
	}
}
