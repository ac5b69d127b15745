package tiered_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/strata-cache/strata/cluster"
	"github.com/strata-cache/strata/coherence"
	"github.com/strata-cache/strata/internal/redistest"
	"github.com/strata-cache/strata/l2"
	"github.com/strata-cache/strata/tiered"
)

// fleet is n replicas over one Redis, with gossip among them when gossip is
// set, each with a cache of namespace "users".
type fleet struct {
	srv     *redistest.Server
	clients []*tiered.Client
	caches  []*tiered.Cache[string]
}

func newFleet(t *testing.T, n int, gossip bool, cfg tiered.Config) *fleet {
	t.Helper()
	f := &fleet{srv: redistest.Start(t)}
	var seed string
	for i := range n {
		c := cfg
		c.NodeID = fmt.Sprintf("replica-%d", i)
		c.Redis = l2.Config{Addrs: []string{f.srv.Addr()}}
		if gossip {
			c.Gossip = localGossip(seed)
		}
		client := newClient(t, c)
		if gossip && seed == "" {
			seed = client.GossipAddr()
		}
		f.clients = append(f.clients, client)
		f.caches = append(f.caches, newCache(t, client, "users", tiered.Options[string]{TTL: time.Hour}))
	}
	return f
}

// warm makes every replica hold key's current value in L1.
// localGossip is a gossip config on a free loopback port, joining seed when
// there is one.
func localGossip(seed string) *cluster.Config {
	g := &cluster.Config{BindAddr: "127.0.0.1:0", Profile: cluster.ProfileLocal}
	if seed != "" {
		g.Join = []string{seed}
	}
	return g
}

func (f *fleet) warm(t *testing.T, key string) {
	t.Helper()
	for _, c := range f.caches {
		if _, err := c.Get(context.Background(), key, func(context.Context, string) (string, error) { return "v0", nil }); err != nil {
			t.Fatal(err)
		}
	}
}

// propagation sets key to value on replica 0 and waits until every other
// replica returns it, reporting how long that took.
func (f *fleet) propagation(t *testing.T, key, value string) time.Duration {
	t.Helper()
	ctx := context.Background()
	if err := f.caches[0].Set(ctx, key, value); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	for _, c := range f.caches[1:] {
		redistest.WaitFor(t, 5*time.Second, func() bool {
			v, err := c.Get(ctx, key, nil)
			return err == nil && v == value
		}, "replica serves "+value)
	}
	return time.Since(start)
}

func percentiles(d []time.Duration) (p50, p99 time.Duration) {
	slices.Sort(d)
	return d[len(d)/2], d[len(d)*99/100]
}

// cutPubSub denies pub/sub to Redis's default user and drops the current
// subscriptions: the pub/sub channel is gone, the data commands stay.
func cutPubSub(t *testing.T, srv *redistest.Server) {
	t.Helper()
	srv.Do(t, "ACL", "SETUSER", "default", "-publish", "-subscribe", "-psubscribe", "-ssubscribe")
	srv.Do(t, "CLIENT", "KILL", "TYPE", "pubsub")
}

func TestPropagationBothLinks(t *testing.T) {
	f := newFleet(t, 3, true, tiered.Config{})
	var lat []time.Duration
	for i := range 30 {
		key := fmt.Sprintf("k%d", i)
		f.warm(t, key)
		lat = append(lat, f.propagation(t, key, "v1"))
	}
	p50, p99 := percentiles(lat)
	t.Logf("both links: every replica serves the new value after p50 %v, p99 %v (polling included)", p50, p99)
}

func TestGossipDeliversWithPubSubCut(t *testing.T) {
	f := newFleet(t, 3, true, tiered.Config{})
	f.warm(t, "k")
	cutPubSub(t, f.srv)
	before := f.clients[1].BusStats().Applied
	f.propagation(t, "k", "v1")
	if f.clients[1].BusStats().Applied == before {
		t.Error("replica 1 applied nothing: the new value came from elsewhere than the bus")
	}
	// Gossip vouches for L1: replicas keep serving it.
	redistest.WaitFor(t, 5*time.Second, func() bool { return f.clients[1].Bus().Trusted() }, "gossip vouches for L1")
}

func TestPubSubDeliversWithoutGossip(t *testing.T) {
	f := newFleet(t, 3, false, tiered.Config{})
	f.warm(t, "k")
	f.propagation(t, "k", "v1")
	if err := f.caches[2].Delete(context.Background(), "k"); err != nil {
		t.Fatal(err)
	}
	redistest.WaitFor(t, 5*time.Second, func() bool {
		_, err := f.caches[0].Get(context.Background(), "k", nil)
		return errors.Is(err, tiered.ErrNotFound)
	}, "replica 0 drops the deleted key")
}

func TestBothLinksCutReadsBypassL1(t *testing.T) {
	ctx := context.Background()
	f := newFleet(t, 2, false, tiered.Config{})
	f.warm(t, "k")
	cutPubSub(t, f.srv)
	start := time.Now()
	redistest.WaitFor(t, 5*time.Second, func() bool { return !f.clients[1].Bus().Trusted() }, "replica 1 stops trusting L1")
	t.Logf("link loss noticed after %v", time.Since(start))
	// A write replica 1 cannot hear about: it must read L2's truth anyway.
	if err := f.caches[0].Set(ctx, "k", "v1"); err != nil {
		t.Fatal(err)
	}
	if v, err := f.caches[1].Get(ctx, "k", nil); err != nil || v != "v1" {
		t.Fatalf("replica 1 with no channel: Get = %q, %v; want L2's v1", v, err)
	}
	// Links back: trust returns, after L1 was dropped.
	f.srv.Do(t, "ACL", "SETUSER", "default", "+@all", "allchannels")
	redistest.WaitFor(t, 10*time.Second, func() bool { return f.clients[1].Bus().Trusted() }, "replica 1 trusts L1 again")
	if s := f.clients[1].BusStats(); s.LinkLosses == 0 || s.Resets == 0 {
		t.Errorf("bus stats %+v, want the link loss and the reset counted", s)
	}
}

func TestFillGuardRefusesInstallAfterInvalidation(t *testing.T) {
	ctx := context.Background()
	f := newFleet(t, 2, false, tiered.Config{})
	if err := f.caches[0].Set(ctx, "k", "old"); err != nil {
		t.Fatal(err)
	}
	paused, resume := make(chan struct{}), make(chan struct{})
	tiered.SetBeforeInstall(f.caches[1], func(string) {
		close(paused)
		<-resume
	})
	got := make(chan string, 1)
	go func() {
		v, _ := f.caches[1].Get(ctx, "k", nil)
		got <- v
	}()
	<-paused // replica 1 read "old" from L2 and is about to install it
	applied := f.clients[1].BusStats().Applied
	if err := f.caches[0].Set(ctx, "k", "new"); err != nil {
		t.Fatal(err)
	}
	redistest.WaitFor(t, 5*time.Second, func() bool { return f.clients[1].BusStats().Applied > applied }, "invalidation applied on replica 1")
	tiered.SetBeforeInstall(f.caches[1], nil)
	close(resume)
	if v := <-got; v != "old" {
		t.Fatalf("the racing Get returned %q, want what it read", v)
	}
	if v, err := f.caches[1].Get(ctx, "k", nil); err != nil || v != "new" {
		t.Fatalf("after the race: Get = %q, %v; the stale fill was installed", v, err)
	}
}

func TestBadMessagesAreDroppedAndCounted(t *testing.T) {
	ctx := context.Background()
	key := []byte("0123456789abcdef")
	f := newFleet(t, 2, false, tiered.Config{InvalidationKey: key})
	f.warm(t, "k")
	raw := f.srv.Client(t)
	channel := "strata:invalidations"
	unsigned := coherence.Encode(&coherence.Message{Origin: "intruder", Epoch: 1, Seq: 1, Kind: coherence.KindKeys, Namespace: "users", Items: []string{"k"}}, nil)
	for _, payload := range [][]byte{nil, []byte("garbage"), {0x53, 0x49, 1, 1, 0, 0xff}, unsigned} {
		if err := raw.Publish(ctx, channel, payload).Err(); err != nil {
			t.Fatal(err)
		}
	}
	// With a key, a message without a MAC is unauthenticated before it is
	// parsed; one that is not even a message is malformed.
	redistest.WaitFor(t, 5*time.Second, func() bool {
		s := f.clients[1].BusStats()
		return s.Malformed >= 2 && s.Unauthenticated >= 2
	}, "bad messages counted")
	if v, err := f.caches[1].Get(ctx, "k", func(context.Context, string) (string, error) { return "reloaded", nil }); err != nil || v != "v0" {
		t.Errorf("after bad messages: Get = %q, %v; the unauthenticated invalidation was applied", v, err)
	}
	// A producer with the key is heard: Client.Invalidate from a process with no cache.
	producer := newClient(t, tiered.Config{NodeID: "cdc", Redis: l2.Config{Addrs: []string{f.srv.Addr()}}, InvalidationKey: key})
	if err := producer.Invalidate(ctx, "users", "k"); err != nil {
		t.Fatal(err)
	}
	redistest.WaitFor(t, 5*time.Second, func() bool {
		_, err := f.caches[1].Get(ctx, "k", nil)
		return errors.Is(err, tiered.ErrNotFound)
	}, "the producer's invalidation reaches replica 1")
}

func TestClearAcrossReplicas(t *testing.T) {
	ctx := context.Background()
	f := newFleet(t, 3, false, tiered.Config{})
	for _, k := range []string{"a", "b"} {
		f.warm(t, k)
	}
	if err := f.caches[1].Clear(ctx); err != nil {
		t.Fatal(err)
	}
	fresh := func(context.Context, string) (string, error) { return "fresh", nil }
	for i, c := range f.caches {
		redistest.WaitFor(t, 5*time.Second, func() bool {
			_, errA := c.Get(ctx, "a", nil)
			b, errB := c.Get(ctx, "b", fresh)
			return errors.Is(errA, tiered.ErrNotFound) && errB == nil && b == "fresh"
		}, "replica %d sees the Clear", i)
	}
	if n := f.srv.Do(t, "EXISTS", "strata:users:{a}").(int64); n != 1 {
		t.Errorf("the old key was deleted (%d); Clear should leave it to expire", n)
	}
	// A replica started after the Clear reads the new version too.
	late := newCache(t, newClient(t, tiered.Config{Redis: l2.Config{Addrs: []string{f.srv.Addr()}}}), "users", tiered.Options[string]{})
	if v, err := late.Get(ctx, "b", nil); err != nil || v != "fresh" {
		t.Errorf("late replica: Get(b) = %q, %v; want the post-Clear value", v, err)
	}
}

func TestInvalidatePatternAcrossReplicas(t *testing.T) {
	ctx := context.Background()
	for _, topology := range []string{"single", "ring", "cluster"} {
		t.Run(topology, func(t *testing.T) {
			var redisCfg l2.Config
			switch topology {
			case "single":
				redisCfg.Addrs = []string{redistest.Start(t).Addr()}
			case "ring":
				for _, s := range redistest.StartShards(t, 3) {
					redisCfg.Addrs = append(redisCfg.Addrs, s.Addr())
				}
			case "cluster":
				redisCfg.ClusterAddrs = redistest.StartCluster(t, 3).Addrs()
			}
			caches := replicas(t, 2, redisCfg, tiered.Options[string]{TTL: time.Hour})
			keys := []string{"user:1", "user:2", "user:30", "order:1"}
			for _, k := range keys {
				if err := caches[0].Set(ctx, k, "v"); err != nil {
					t.Fatal(err)
				}
				if _, err := caches[1].Get(ctx, k, nil); err != nil {
					t.Fatal(err)
				}
			}
			if err := caches[0].InvalidatePattern(ctx, "user:*"); err != nil {
				t.Fatal(err)
			}
			for _, c := range caches {
				for _, k := range keys[:3] {
					redistest.WaitFor(t, 5*time.Second, func() bool {
						_, err := c.Get(ctx, k, nil)
						return errors.Is(err, tiered.ErrNotFound)
					}, "%s gone", k)
				}
				if v, err := c.Get(ctx, "order:1", nil); err != nil || v != "v" {
					t.Errorf("order:1 = %q, %v; a key outside the pattern was lost", v, err)
				}
			}
		})
	}
}

func TestInvalidateTagsAcrossReplicas(t *testing.T) {
	ctx := context.Background()
	srv := redistest.Start(t)
	redisCfg := l2.Config{Addrs: []string{srv.Addr()}}
	opts := tiered.Options[string]{TTL: time.Hour, Tags: func(key, v string) []string {
		return []string{"team:" + v} // the value names its team
	}}
	caches := replicas(t, 2, redisCfg, opts)
	load := func(_ context.Context, k string) (string, error) {
		return map[string]string{"u1": "a", "u2": "a", "u3": "b"}[k], nil
	}
	for _, k := range []string{"u1", "u2", "u3"} {
		for _, c := range caches {
			if _, err := c.Get(ctx, k, load); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := caches[0].Set(ctx, "u4", "c", tiered.WithTags("vip")); err != nil {
		t.Fatal(err)
	}
	if _, err := caches[1].Get(ctx, "u4", nil); err != nil {
		t.Fatal(err)
	}
	if err := caches[0].InvalidateTags(ctx, "team:a", "vip"); err != nil {
		t.Fatal(err)
	}
	for i, c := range caches {
		for _, k := range []string{"u1", "u2", "u4"} {
			redistest.WaitFor(t, 5*time.Second, func() bool {
				_, err := c.Get(ctx, k, nil)
				return errors.Is(err, tiered.ErrNotFound)
			}, "replica %d drops %s", i, k)
		}
		if v, err := c.Get(ctx, "u3", nil); err != nil || v != "b" {
			t.Errorf("replica %d: u3 = %q, %v; an untagged key was lost", i, v, err)
		}
	}
	// A producer with no cache invalidates a tag too.
	producer := newClient(t, tiered.Config{NodeID: "cdc", Redis: redisCfg})
	if err := producer.InvalidateTags(ctx, "users", "team:b"); err != nil {
		t.Fatal(err)
	}
	redistest.WaitFor(t, 5*time.Second, func() bool {
		_, err := caches[1].Get(ctx, "u3", nil)
		return errors.Is(err, tiered.ErrNotFound)
	}, "the producer's tag invalidation reaches replica 1")
}

func TestAcknowledgedWrite(t *testing.T) {
	ctx := context.Background()
	f := newFleet(t, 3, true, tiered.Config{})
	f.warm(t, "k")
	redistest.WaitFor(t, 10*time.Second, func() bool {
		return f.caches[0].Set(tiered.WithAck(ctx, time.Second), "k", "acked") == nil
	}, "an acknowledged Set")
	// Acknowledged means applied: no waiting on the replicas.
	for i, c := range f.caches {
		if v, err := c.Get(ctx, "k", nil); err != nil || v != "acked" {
			t.Errorf("replica %d right after an acknowledged Set: %q, %v", i, v, err)
		}
	}
	// A closed replica leaves the gossip cluster and stops heartbeating: the
	// ack covers the live ones only (once the others notice it left).
	_ = f.clients[2].Close()
	redistest.WaitFor(t, 10*time.Second, func() bool {
		return f.caches[0].Delete(tiered.WithAck(ctx, 500*time.Millisecond), "k") == nil
	}, "an acknowledged Delete with one replica gone")
}

func TestPubSubDeliversWhenGossipIsCut(t *testing.T) {
	ctx := context.Background()
	srv := redistest.Start(t)
	redisCfg := l2.Config{Addrs: []string{srv.Addr()}}
	key := []byte("0123456789abcdef")
	a := newClient(t, tiered.Config{NodeID: "a", Redis: redisCfg, Gossip: &cluster.Config{BindAddr: "127.0.0.1:0", SecretKey: key, Profile: cluster.ProfileLocal}})
	// b gossips with the wrong key: it can never join a's cluster.
	b := newClient(t, tiered.Config{NodeID: "b", Redis: redisCfg, Gossip: &cluster.Config{BindAddr: "127.0.0.1:0", SecretKey: []byte("fedcba9876543210"), Profile: cluster.ProfileLocal}})
	ca := newCache(t, a, "users", tiered.Options[string]{TTL: time.Hour})
	cb := newCache(t, b, "users", tiered.Options[string]{TTL: time.Hour})
	if err := ca.Set(ctx, "k", "v0"); err != nil {
		t.Fatal(err)
	}
	if _, err := cb.Get(ctx, "k", nil); err != nil {
		t.Fatal(err)
	}
	if err := ca.Set(ctx, "k", "v1"); err != nil {
		t.Fatal(err)
	}
	redistest.WaitFor(t, 5*time.Second, func() bool {
		v, _ := cb.Get(ctx, "k", nil)
		return v == "v1"
	}, "pub/sub delivers to b")
	if s := b.BusStats(); s.Applied == 0 {
		t.Errorf("b's bus applied nothing: %+v", s)
	}
}
