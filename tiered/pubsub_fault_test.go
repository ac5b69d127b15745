package tiered_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/strata-cache/strata/internal/redistest"
	"github.com/strata-cache/strata/l2"
	"github.com/strata-cache/strata/tiered"
)

// channelOwner returns the shard of f that carries c's invalidation channel.
func (f *shardFleet) channelOwner(t *testing.T, c *tiered.Client) *redistest.Server {
	t.Helper()
	addr := c.L2().PubSubClient(c.L2().Prefix() + ":invalidations").(*redis.Client).Options().Addr
	for _, s := range f.shards {
		if s.Addr() == addr {
			return s
		}
	}
	t.Fatalf("no shard at %s", addr)
	return nil
}

// othersOut returns the shards other than addr that c holds out of service.
func othersOut(c *tiered.Client, addr string) []string {
	var out []string
	for _, h := range c.L2().Health() {
		if !h.Serving && h.Addr != addr {
			out = append(out, h.Addr+" ("+h.Reason+")")
		}
	}
	return out
}

// Issue 10 item 8: while the shard carrying the pub/sub channel is stalled,
// writes of keys on the other shards fail to publish there. Those failures
// fence nothing (no shard but the stalled one goes out of service, on any
// replica), and the other replica still learns of every write, by gossip.
func TestChannelOwnerStallFencesNothingElse(t *testing.T) {
	ctx := context.Background()
	f := newShardFleet(t, 3)
	a, b := f.replica(t), f.replica(t)
	ca := newCache(t, a, "users", tiered.Options[string]{TTL: time.Hour})
	cb := newCache(t, b, "users", tiered.Options[string]{TTL: time.Hour})
	owner := f.channelOwner(t, a)
	var keys []string
	for _, k := range shardKeys(60) {
		if f.owner(t, a, "users", k) != owner {
			keys = append(keys, k)
		}
	}
	for _, k := range keys {
		setAndRead(t, ca, cb, "v1", k)
	}
	before := a.BusStats().PublishErrors
	owner.Pause()
	defer owner.Resume()
	check := func(when string) {
		for i, c := range []*tiered.Client{a, b} {
			if out := othersOut(c, owner.Addr()); len(out) > 0 {
				t.Fatalf("%s: replica %d holds healthy shards out of service: %v", when, i, out)
			}
		}
	}
	for i, k := range keys {
		v := fmt.Sprintf("v2-%d", i)
		var err error
		if i%2 == 0 {
			err = ca.Set(ctx, k, v)
		} else {
			err = ca.Delete(ctx, k)
			v = ""
		}
		if err != nil {
			t.Fatalf("write of %s on a healthy shard: %v", k, err)
		}
		redistest.WaitFor(t, 5*time.Second, func() bool {
			got, err := cb.Get(ctx, k, nil)
			if v == "" {
				return err != nil
			}
			return err == nil && got == v
		}, "replica B learns of the write of %s", k)
		check("during the stall")
	}
	if n := a.BusStats().PublishErrors - before; n == 0 {
		t.Error("no publish failed: the stall did not reach the channel")
	} else {
		t.Logf("%d publishes failed on the stalled channel shard; %d writes reached B by gossip", n, len(keys))
	}
	owner.Resume()
	redistest.WaitFor(t, 10*time.Second, func() bool {
		return serving(a, owner.Addr()) && serving(b, owner.Addr())
	}, "both replicas serve the channel shard again")
	check("after the stall")
}

// A kill and restart of the shard carrying the channel: both replicas
// resubscribe, and with no gossip, pub/sub carries invalidations again.
func TestChannelOwnerRestartResubscribes(t *testing.T) {
	ctx := context.Background()
	shards := redistest.StartShards(t, 3)
	var addrs []string
	for _, s := range shards {
		addrs = append(addrs, s.Addr())
	}
	cfg := l2.Config{Addrs: addrs}
	a := newClient(t, tiered.Config{NodeID: "a", Redis: cfg})
	b := newClient(t, tiered.Config{NodeID: "b", Redis: cfg})
	ca := newCache(t, a, "users", tiered.Options[string]{TTL: time.Hour})
	cb := newCache(t, b, "users", tiered.Options[string]{TTL: time.Hour})
	f := &shardFleet{shards: shards, addrs: addrs}
	owner := f.channelOwner(t, a)
	owner.Kill()
	redistest.WaitFor(t, 10*time.Second, func() bool {
		return !serving(a, owner.Addr()) && !serving(b, owner.Addr())
	}, "both replicas take the killed shard out of service")
	owner.Restart()
	redistest.WaitFor(t, 10*time.Second, func() bool {
		return serving(a, owner.Addr()) && serving(b, owner.Addr())
	}, "both replicas serve the restarted shard")
	applied := b.BusStats().Applied
	redistest.WaitFor(t, 10*time.Second, func() bool {
		_ = ca.Set(ctx, "k", "v")
		return b.BusStats().Applied > applied
	}, "replica B receives A's invalidations over pub/sub again")
	redistest.WaitFor(t, 10*time.Second, func() bool { return b.Bus().Trusted() }, "replica B's channel vouches for L1 again")
	if v, err := cb.Get(ctx, "k", nil); err != nil || v != "v" {
		t.Errorf("B's Get = %q, %v; want v", v, err)
	}
}

// Issue 10 item 5 on a Cluster: the master carrying the invalidation
// channel is killed while replicas keep reading its keys (their breakers for
// it open) and restarted. Both replicas resubscribe through the guarded
// client, and with no gossip, pub/sub carries invalidations again. (That
// the handshake of a new connection never counts against or is refused by
// a breaker is l2's TestBreakerRecoversThroughNewConnections.)
func TestClusterChannelMasterRestartResubscribes(t *testing.T) {
	waitGoroutinesGone(t)
	ctx := context.Background()
	c := redistest.StartCluster(t, 3)
	p := newClusterPair(t, c)
	a, b := p.caches(t, "users", tiered.Options[string]{TTL: time.Hour})
	channelMaster := slotMaster(t, p.raw, p.a.L2().Prefix()+":invalidations")
	var onIt []string
	for _, k := range numberedKeys("user", 200) {
		if slotMaster(t, p.raw, p.a.L2().Key("users", k)) == channelMaster {
			onIt = append(onIt, k)
		}
	}
	srv := serverAt(t, c, channelMaster)
	srv.Kill()
	for _, cl := range []*tiered.Client{p.a, p.b} {
		openBreaker(t, cl, p.a.L2().Key("users", onIt[0]))
	}
	var l countingLoader
	for _, k := range onIt[:10] { // reads go on without L2
		if _, err := b.Get(ctx, k, l.load); err != nil {
			t.Fatalf("Get of %s with its master down: %v", k, err)
		}
	}
	srv.Restart()
	applied := p.b.BusStats().Applied
	redistest.WaitFor(t, 20*time.Second, func() bool {
		if a.Set(ctx, onIt[0], "v") != nil {
			return false // the breaker's cool-down may not be over
		}
		return p.b.BusStats().Applied > applied
	}, "replica B receives A's invalidations over pub/sub again")
	redistest.WaitFor(t, 10*time.Second, func() bool { return p.b.Bus().Trusted() && p.a.Bus().Trusted() }, "both replicas' channel vouches for L1 again")
	if v, err := b.Get(ctx, onIt[0], nil); err != nil || v != "v" {
		t.Errorf("B's Get = %q, %v; want v", v, err)
	}
}
