package l2

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/strata-cache/strata/internal/redistest"
)

// openOn opens a store on servers (one: a single node; more: shards),
// closed when the test ends.
func openOn(t *testing.T, servers ...*redistest.Server) *Store {
	t.Helper()
	var addrs []string
	for _, srv := range servers {
		addrs = append(addrs, srv.Addr())
	}
	s, err := Open(Config{Addrs: addrs})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

// The two ways a returning server is made safe, measured: replaying the
// keys whose writes failed, and flushing everything under the prefix. A flush
// keeps tag sets, namespace versions and the epoch.
func TestCleaningReplayAndFlush(t *testing.T) {
	ctx := context.Background()
	srv := redistest.Start(t)
	s := openOn(t, srv)
	h, n := s.health, s.health.nodes[0]
	const keys = 50_000
	raw := srv.Client(t)
	for i := 0; i < keys; i += 1000 {
		if _, err := raw.Pipelined(ctx, func(p redis.Pipeliner) error {
			for j := i; j < i+1000; j++ {
				k := s.Key("ns", fmt.Sprint("k", j))
				p.Set(ctx, k, "v", time.Hour)
				if j%10 == 0 {
					p.Set(ctx, k+leaseSuffix, "token", time.Hour)
				}
			}
			return nil
		}); err != nil {
			t.Fatal(err)
		}
	}
	keep := []string{s.TagKey("ns", "t"), s.prefix + ":ns" + versionSuffix, epochKey(s.prefix)}
	for _, k := range keep {
		raw.Set(ctx, k, "1", time.Hour)
	}

	replay := make([]string, 1000)
	for i := range replay {
		replay[i] = s.Key("ns", fmt.Sprint("k", i))
	}
	start := time.Now()
	if err := h.replay(maintenance(ctx), n, replay); err != nil {
		t.Fatal(err)
	}
	t.Logf("replay of %d keys took %v", len(replay), time.Since(start))
	if got := raw.Exists(ctx, replay...).Val(); got != 0 {
		t.Errorf("%d replayed keys remain", got)
	}

	start = time.Now()
	removed, err := h.flush(maintenance(ctx), n)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("flush of %d keys took %v", removed, time.Since(start))
	if want := keys - len(replay) + keys/10; removed != want { // leases of replayed keys stay
		t.Errorf("flush removed %d keys, want %d", removed, want)
	}
	if got := raw.Exists(ctx, keep...).Val(); got != int64(len(keep)) {
		t.Errorf("flush removed %d of the tag set, version and epoch keys", int64(len(keep))-got)
	}
	if size := raw.DBSize(ctx).Val(); size != int64(len(keep)) {
		t.Errorf("%d keys remain after the flush, want %d", size, len(keep))
	}
}

// On shards a namespace's version is kept on every shard, so it survives the
// absence, or the loss, of any one of them, and a bump never reuses a
// version.
func TestNamespaceVersionSurvivesAShard(t *testing.T) {
	ctx := context.Background()
	servers := redistest.StartShards(t, 3)
	s := openOn(t, servers...)
	var last uint64
	bump := func(what string) {
		t.Helper()
		v, err := s.BumpVersion(ctx, "ns")
		if err != nil || v <= last {
			t.Fatalf("BumpVersion %s = %d, %v; want above %d", what, v, err, last)
		}
		last = v
	}
	bump("first")
	bump("second")
	servers[0].Kill()
	redistest.WaitFor(t, 5*time.Second, func() bool { return !s.Health()[0].Serving }, "shard 0 leaves")
	if v, err := s.NamespaceVersion(ctx, "ns"); err != nil || v != last {
		t.Errorf("version with shard 0 down = %d, %v; want %d", v, err, last)
	}
	bump("with shard 0 down")
	servers[0].Restart() // empty: it lost its copy
	servers[1].Kill()
	redistest.WaitFor(t, 5*time.Second, func() bool { h := s.Health(); return h[0].Serving && !h[1].Serving }, "shard 0 back, shard 1 gone")
	if v, err := s.NamespaceVersion(ctx, "ns"); err != nil || v != last {
		t.Errorf("version after shard 0 lost its copy and shard 1 left = %d, %v; want %d", v, err, last)
	}
}

// Writes that succeed leave a server clean, including the first script run
// on a server that has not seen the script (NOSCRIPT, then EVAL).
func TestWritesLeaveServerClean(t *testing.T) {
	ctx := context.Background()
	srv := redistest.Start(t)
	s := openOn(t, srv)
	for i := range 3 {
		if err := s.Write(ctx, "ns", fmt.Sprint("k", i), []byte("v"), time.Minute); err != nil {
			t.Fatal(err)
		}
		srv.Do(t, "SCRIPT", "FLUSH")
	}
	if h := s.Health()[0]; !h.Serving || h.Dirty {
		t.Errorf("after good writes: %+v", h)
	}
}

// A shard another replica cannot reach (it keeps an out marker on the serving
// shards) leaves this replica's routing too, and returns when the marker
// lapses: replicas never disagree for long about where a shard's keys live.
func TestOutMarkerMovesEveryReplicaOff(t *testing.T) {
	ctx := context.Background()
	servers := redistest.StartShards(t, 3)
	s := openOn(t, servers...)
	for _, srv := range servers[1:] {
		srv.Do(t, "SET", outKey(s.prefix, "shard0"), "1", "PX", 1500)
	}
	redistest.WaitFor(t, 5*time.Second, func() bool { return !s.Health()[0].Serving }, "shard0 leaves the routing")
	t.Logf("out: %+v", s.Health()[0])
	if err := s.Write(ctx, "ns", "k", []byte("v"), time.Minute); err != nil {
		t.Fatal(err)
	}
	redistest.WaitFor(t, 10*time.Second, func() bool { return s.Health()[0].Serving }, "shard0 returns once the marker lapses")
}

// A replica that reaches a stalled shard again removes the out markers it
// kept for it, so the shard returns within health rounds, not the markers'
// TTL; a marker another replica keeps (it still cannot reach the shard)
// stays and holds the shard out.
func TestReachedAgainRemovesOwnMarkerOnly(t *testing.T) {
	servers := redistest.StartShards(t, 3)
	a, b := openOn(t, servers...), openOn(t, servers...)
	marker := outKey(a.prefix, "shard0")
	markers := func() (n int) {
		for _, srv := range servers[1:] {
			if v, _ := srv.Do(t, "EXISTS", marker).(int64); v == 1 {
				n++
			}
		}
		return n
	}
	servers[0].Pause()
	redistest.WaitFor(t, 10*time.Second, func() bool { return markers() == 2 }, "the replicas mark shard0 out on both serving shards")
	servers[0].Resume()
	for _, srv := range servers[1:] {
		srv.Do(t, "PEXPIRE", marker, 60_000) // they must not merely lapse
	}
	redistest.WaitFor(t, 5*time.Second, func() bool { return markers() == 0 }, "the markers go once shard0 answers")
	redistest.WaitFor(t, 5*time.Second, func() bool { return a.Health()[0].Serving && b.Health()[0].Serving }, "shard0 serves again")

	// Another replica's marker, as if it could not reach shard0.
	for _, srv := range servers[1:] {
		srv.Do(t, "HSET", marker, "another-replica", int64(1)<<50)
		srv.Do(t, "PEXPIRE", marker, 60_000)
	}
	redistest.WaitFor(t, 5*time.Second, func() bool { return !a.Health()[0].Serving }, "another replica's marker takes shard0 out")
	for range 5 {
		a.health.round(false) // rounds that reach shard0 must leave the marker
	}
	if n := markers(); n != 2 || a.Health()[0].Serving {
		t.Errorf("another replica's marker: %d of 2 left, shard0 serving %v; want both left, shard0 out", n, a.Health()[0].Serving)
	}
	// A's own marker beside it goes, and the other stays.
	servers[1].Do(t, "HSET", marker, a.health.id, int64(1)<<50)
	a.health.holdOut(context.Background(), nil, []string{marker}, 0)
	if v, _ := servers[1].Do(t, "HLEN", marker).(int64); v != 1 {
		t.Errorf("after A removed its marker: %d markers, want the other replica's only", v)
	}
}

// A replica that closes holds no shard out: it removes its markers, and
// another replica's stay.
func TestCloseRemovesOwnMarkers(t *testing.T) {
	servers := redistest.StartShards(t, 3)
	a, b := openOn(t, servers...), openOn(t, servers...)
	marker := outKey(a.prefix, "shard0")
	fields := func() int64 { v, _ := servers[1].Do(t, "HLEN", marker).(int64); return v }
	servers[0].Pause()
	defer servers[0].Resume()
	redistest.WaitFor(t, 10*time.Second, func() bool { return fields() == 2 }, "both replicas mark shard0 out")
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	if n := fields(); n != 1 {
		t.Fatalf("after A closed: %d markers, want B's only", n)
	}
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	if n := fields(); n != 0 {
		t.Errorf("after both closed: %d markers, want none", n)
	}
}

// A write or a pipelined delete that times out leaves the server dirty, out
// of service until the keys are deleted from it.
func TestFailedWritesAreReplayed(t *testing.T) {
	ctx := context.Background()
	srv := redistest.Start(t)
	s := openOn(t, srv)
	for _, k := range []string{"a", "b", "c"} {
		if err := s.Write(ctx, "ns", k, []byte("old"), time.Hour); err != nil {
			t.Fatal(err)
		}
	}
	srv.Pause()
	if err := s.Write(ctx, "ns", "a", []byte("new"), time.Hour); err == nil {
		t.Fatal("Write to a paused server succeeded")
	}
	if err := s.Delete(ctx, "ns", "b", "c"); err == nil {
		t.Fatal("Delete on a paused server succeeded")
	}
	if h := s.Health()[0]; h.Serving || !h.Dirty {
		t.Errorf("after failed writes: %+v, want out of service and dirty", h)
	}
	srv.Resume()
	redistest.WaitFor(t, 10*time.Second, func() bool { return s.Health()[0].Serving }, "the server serves again")
	for _, k := range []string{"a", "b", "c"} {
		if v, err := s.Get(ctx, "ns", k); err != nil || v != nil {
			t.Errorf("Get(%s) after the repair = %q, %v; want nothing", k, v, err)
		}
	}
}

// A tag whose set lives on a shard out of service cannot be listed: the
// stand-in would answer with only part of the set.
func TestPopTagsOfAnAbsentShardIsAnError(t *testing.T) {
	ctx := context.Background()
	servers := redistest.StartShards(t, 3)
	s := openOn(t, servers...)
	tag := "t"
	owner := s.set.all.Get(tag)
	if err := s.AddTags(ctx, "ns", "k", []string{tag}, time.Minute); err != nil {
		t.Fatal(err)
	}
	servers[owner].Kill()
	redistest.WaitFor(t, 5*time.Second, func() bool { return !s.Health()[owner].Serving }, "the tag's shard leaves")
	if _, err := s.PopTags(ctx, "ns", []string{tag}); !errors.Is(err, ErrUnavailable) {
		t.Errorf("PopTags with the tag's shard out = %v, want ErrUnavailable", err)
	}
}

// Multi-key commands are split per shard by Strata, single ones by the
// Ring: both must send a key to the same shard, with every shard serving and
// with one out (its keys on stand-ins).
func TestBatchesRouteAsSingleCommands(t *testing.T) {
	ctx := context.Background()
	servers := redistest.StartShards(t, 3)
	s := openOn(t, servers...)
	// Keys and tags with a '}' are routed by the text before it, as the Ring
	// cuts a hash tag there.
	keys := []string{"}x", "}y", "~z", "~}w", "}"}
	tags := []string{"t}1", "x}y", "}t", "plain"}
	for i := range 200 {
		keys = append(keys, fmt.Sprint("k", i), fmt.Sprint("a", i, "}b"), fmt.Sprint("}", i))
	}
	check := func(when string) {
		t.Helper()
		// A tag set on a stand-in can neither be added to nor listed: an
		// invalidation would miss what a stand-in holds once the shard is
		// back.
		var listable []string
		for _, tag := range tags {
			if _, standIn := s.tagShard("ns", tag); !standIn {
				listable = append(listable, tag)
			} else if err := s.AddTags(ctx, "ns", "k", []string{tag}, time.Minute); !errors.Is(err, ErrUnavailable) {
				t.Fatalf("%s: AddTags of tag %q on a stand-in: %v, want ErrUnavailable", when, tag, err)
			}
		}
		for _, k := range keys[:20] {
			if err := s.AddTags(ctx, "ns", k, listable, time.Minute); err != nil {
				t.Fatalf("%s: AddTags: %v", when, err)
			}
		}
		for _, tag := range listable {
			if n, err := s.Client().SCard(ctx, s.TagKey("ns", tag)).Result(); n != 20 || err != nil {
				t.Fatalf("%s: the Ring finds %d members of tag %q (%v), want 20", when, n, tag, err)
			}
		}
		sets, err := s.PopTags(ctx, "ns", listable)
		if err != nil || len(sets) != len(listable) {
			t.Fatalf("%s: PopTags: %d sets, %v; want %d", when, len(sets), err, len(listable))
		}
		for i, set := range sets {
			if len(set.Members) != 20 || set.TTL <= 0 || set.TTL > time.Minute {
				t.Fatalf("%s: PopTags: tag %q has %d members and TTL %v, want 20 and at most a minute", when, listable[i], len(set.Members), set.TTL)
			}
		}
		for _, tag := range listable {
			if n, err := s.Client().Exists(ctx, s.TagKey("ns", tag)).Result(); n != 0 || err != nil {
				t.Fatalf("%s: tag %q's set left after PopTags (%d, %v)", when, tag, n, err)
			}
		}
		items := make([]Item, len(keys))
		for i, k := range keys {
			items[i] = Item{Key: k, Data: []byte(when + k), TTL: time.Minute}
		}
		if err := s.SetMany(ctx, "ns", items); err != nil {
			t.Fatalf("%s: SetMany: %v", when, err)
		}
		vals, err := s.GetMany(ctx, "ns", keys)
		if err != nil {
			t.Fatalf("%s: GetMany: %v", when, err)
		}
		for i, k := range keys {
			one, err := s.Get(ctx, "ns", k)
			if err != nil || string(one) != when+k || string(vals[i]) != when+k {
				t.Fatalf("%s: key %s: Get %q (%v), GetMany %q; want %q", when, k, one, err, vals[i], when+k)
			}
		}
		if err := s.Delete(ctx, "ns", keys...); err != nil {
			t.Fatalf("%s: Delete: %v", when, err)
		}
		for _, k := range keys {
			if one, err := s.Get(ctx, "ns", k); one != nil || err != nil {
				t.Fatalf("%s: key %s after the batched Delete: %q, %v", when, k, one, err)
			}
		}
	}
	check("all serving ")
	servers[1].Kill()
	redistest.WaitFor(t, 5*time.Second, func() bool { return !s.Health()[1].Serving }, "shard 1 leaves")
	check("shard 1 out ")
}
