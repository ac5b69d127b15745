package tiered_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/strata-cache/strata/internal/redistest"
	"github.com/strata-cache/strata/l2"
	"github.com/strata-cache/strata/tiered"
)

// Review 2: a Clear whose version bump reached L2 but whose reply did not
// (a timeout after INCR ran; on a Ring, BumpVersion failing on one shard
// after writing others) returns an error before setVersion, dropAll and
// publish (tiered/clear.go Clear). L2's namespace moved, yet no replica is
// told: no message, so no gap and no reset. A replica that only reads keeps
// reading the old namespace for good, while a writer elsewhere finds the new
// version through underVersion (and tells nobody either). After a Set that
// returned successfully, the replicas then answer differently, and the
// reading one never answers what L2 holds (guarantee 13).
func TestReview2ClearWithLostReplyLeavesReplicasInOldNamespace(t *testing.T) {
	ctx := context.Background()
	srv := redistest.Start(t)
	hooked := srv.Client(t)
	incr := &failOnce{after: true, match: func(cmd redis.Cmder) bool { return cmd.Name() == "incr" }}
	hooked.AddHook(incr)
	ca := newClient(t, tiered.Config{Redis: l2.Config{Client: hooked}})
	cb := newClient(t, tiered.Config{Redis: l2.Config{Addrs: []string{srv.Addr()}}})
	a := newCache(t, ca, "users", tiered.Options[string]{TTL: time.Hour})
	b := newCache(t, cb, "users", tiered.Options[string]{TTL: time.Hour})
	if err := a.Set(ctx, "k", "old"); err != nil {
		t.Fatal(err)
	}
	incr.armed.Store(true)
	if err := a.Clear(ctx); err == nil {
		t.Fatal("Clear with a lost reply succeeded")
	}
	if got := srv.Do(t, "GET", ca.L2().Prefix()+":users#version"); got != "1" {
		t.Fatalf("L2's namespace version is %v; the bump should have run", got)
	}
	// Any write on B finds version 1 (and tells no one); B's later writes
	// go to version 1 only.
	if err := b.Set(ctx, "other", "x"); err != nil {
		t.Fatal(err)
	}
	if v, _ := tiered.VersionKnown(b); v != 1 {
		t.Fatalf("B uses version %d after a write", v)
	}
	applied(t, ca, 1) // A applied that Set: the next one counted is k's
	before := ca.BusStats().Applied
	if err := b.Set(ctx, "k", "new"); err != nil {
		t.Fatal(err)
	}
	applied(t, ca, before+1)
	// A fresh replica reads what L2 holds now.
	fresh := newCache(t, newClient(t, tiered.Config{Redis: l2.Config{Addrs: []string{srv.Addr()}}}), "users",
		tiered.Options[string]{TTL: time.Hour, L1: tiered.L1Options{Disabled: true}})
	inL2 := lookup(t, fresh, "k")
	if inL2 != "new" {
		t.Fatalf("L2 (version 1) holds %q", inL2)
	}
	if got := lookup(t, b, "k"); got != inL2 {
		t.Errorf("B answers %q, L2 holds %q", got, inL2)
	}
	if got := lookup(t, a, "k"); got != inL2 {
		t.Errorf("after B's Set returned, A answers %q from the namespace before the Clear; L2 holds %q", got, inL2)
	}
}

// Review 2: lookupMany (tiered/getmany.go) answers a key from L1, even one
// no channel vouches for, whenever the L2 read returned an error, though the
// error may be another key's: a GetMany over several shards (a Ring, a
// Cluster) where one key's read fails answers the other keys' definite L2
// misses from L1. Get of the same key, with the same L1 and L2, answers
// ErrNotFound. So while the bus does not vouch for L1, GetMany serves a
// value that another replica deleted (its message lost with the link), and
// that L2 has just answered is gone (guarantee 5).
func TestReview2GetManyLookupServesDeletedValueOnOtherKeysError(t *testing.T) {
	ctx := context.Background()
	srv := redistest.Start(t)
	// B goes through a caller's Ring: GetMany reads key by key, and a
	// failure of one key leaves the others' answers standing.
	ring := redis.NewRing(&redis.RingOptions{Addrs: map[string]string{"s0": srv.Addr()}})
	t.Cleanup(func() { _ = ring.Close() })
	ca := newClient(t, tiered.Config{Redis: l2.Config{Addrs: []string{srv.Addr()}}})
	cb := newClient(t, tiered.Config{Redis: l2.Config{Client: ring}})
	a := newCache(t, ca, "users", tiered.Options[string]{TTL: time.Hour})
	b := newCache(t, cb, "users", tiered.Options[string]{TTL: time.Hour})
	if err := a.Set(ctx, "k", "old"); err != nil {
		t.Fatal(err)
	}
	redistest.WaitFor(t, 5*time.Second, func() bool { // B holds k in L1
		v, info, err := b.GetWithInfo(ctx, "k", nil)
		return err == nil && v == "old" && info.Tier == tiered.TierL1
	}, "B serves k from L1")
	// The pub/sub link goes: B's L1 is no longer vouched for.
	cutPubSub(t, srv)
	redistest.WaitFor(t, 10*time.Second, func() bool { return !cb.Bus().Trusted() }, "B's bus stops vouching")
	// A deletes k: L2 is updated, the message is lost with the link.
	if err := a.Delete(ctx, "k"); err != nil {
		t.Fatal(err)
	}
	// Another key's read fails (a wrong-type reply stands in for any
	// per-key or per-shard failure).
	srv.Do(t, "RPUSH", cb.L2().Key("users", "j"), "x")
	if got := lookup(t, b, "k"); got != "" {
		t.Fatalf("B's Get answers %q for the deleted key", got)
	}
	got, err := b.GetMany(ctx, []string{"k", "j"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if v, ok := got["k"]; ok {
		t.Fatalf("B's GetMany answers %q for k from unvouched L1, though L2 answered k is gone (B's Get: not found)", v)
	}
}

// isVersionRead matches a GET of a namespace version counter.
func isVersionRead(cmd redis.Cmder) bool {
	args := cmd.Args()
	if len(args) != 2 || cmd.Name() != "get" {
		return false
	}
	k, _ := args[1].(string)
	return strings.HasSuffix(k, "#version")
}

// Review 2: on a Ring every write now reads the namespace version from every
// serving shard after its L2 write (tiered/clear.go underVersion,
// l2.Store.NamespaceVersion). One failed read on any shard (a blip, or a
// shard hung but not yet out of service: up to two health rounds) fails the
// write's L2 part although the value reached its own, healthy shard; Set
// then publishes with L2Missed (tiered/write.go set), and every other
// replica marks the healthy shard of the key dirty (tiered/coherence.go
// invalidate, l2.Store.MarkDirty): it leaves service, the routing epoch
// moves, and the shard is flushed whole before it serves again. A fault of
// one server takes another out of service and empties it (guarantee 10),
// and the Set, which returned nil, is undone in L2.
func TestReview2VersionReadBlipOnOneShardFlushesAnother(t *testing.T) {
	ctx := context.Background()
	f := newShardFleet(t, 3)
	a, b := f.replica(t), f.replica(t)
	opts := tiered.Options[string]{TTL: time.Hour}
	ca := newCache(t, a, "users", opts)
	_ = newCache(t, b, "users", opts)
	// k and k2 live on shard y; the blip is on another shard, x.
	const k = "user:0"
	y := f.owner(t, a, "users", k)
	var k2 string
	for _, key := range shardKeys(100)[1:] {
		if f.owner(t, a, "users", key) == y {
			k2 = key
			break
		}
	}
	var x *redistest.Server
	for _, s := range f.shards {
		if s != y {
			x = s
			break
		}
	}
	if err := ca.Set(ctx, k2, "other"); err != nil {
		t.Fatal(err)
	}
	applied(t, b, 1) // B applied that Set: the next one counted is the faulty one
	// Only the Set's own version read fails (a background reread of the
	// version must not take the failure).
	type marker struct{}
	blip := &failOnce{ctxKey: marker{}, match: isVersionRead}
	_ = a.L2().Client().(*redis.Ring).ForEachShard(ctx, func(_ context.Context, cl *redis.Client) error {
		if cl.Options().Addr == x.Addr() {
			cl.AddHook(blip)
		}
		return nil
	})
	before := b.BusStats().Applied
	blip.armed.Store(true)
	if err := ca.Set(context.WithValue(ctx, marker{}, true), k, "v"); err != nil {
		t.Fatalf("Set: %v", err)
	}
	if blip.armed.Load() {
		t.Fatal("the version read on shard x did not happen")
	}
	applied(t, b, before+1)
	// B applied the message: what it does to y is done (MarkDirty fences
	// synchronously), and y returns only after a cleaning round.
	for _, h := range b.L2().Health() {
		if h.Addr == y.Addr() && (!h.Serving || h.Dirty) {
			t.Errorf("B took healthy shard y out of service (%q) after one failed version read on shard x", h.Reason)
		}
	}
	redistest.WaitFor(t, 10*time.Second, func() bool { return serving(b, y.Addr()) && serving(a, y.Addr()) }, "shard y serves")
	raw := y.Client(t)
	for _, key := range []string{k, k2} {
		if n := raw.Exists(ctx, a.L2().Key("users", key)).Val(); n != 1 {
			t.Errorf("healthy shard y lost %q after one failed version read on shard x (Set returned nil)", key)
		}
	}
}
