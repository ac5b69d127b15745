package tiered_test

import (
	"context"
	"errors"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/strata-cache/strata/internal/redistest"
	"github.com/strata-cache/strata/l2"
	"github.com/strata-cache/strata/tiered"
)

// Review: InvalidateTags over two tags where popping one set succeeds and
// the other fails (any per-shard or per-command failure) returns an error but
// neither deletes the keys it popped nor restores their memberships
// (tiered/tags.go invalidateTagsL2: restoreTags only runs after a failed
// Delete). The retry the error invites then finds nothing: the tagged value
// stays in L2 for good.
func TestReviewPartialTagPopLosesMemberships(t *testing.T) {
	ctx := context.Background()
	r := newStickReplicas(t, 1, tiered.Options[string]{TTL: time.Hour})
	a := r.caches[0]
	if err := a.Set(ctx, "k1", "v1", tiered.WithTags("t1")); err != nil {
		t.Fatal(err)
	}
	raw := r.srv.Client(t)
	bad := r.clients[0].L2().TagKey("users", "t2")
	// t2's set has the wrong type: its pop fails, t1's succeeds.
	if err := raw.Set(ctx, bad, "not a set", 0).Err(); err != nil {
		t.Fatal(err)
	}
	if err := a.InvalidateTags(ctx, "t1", "t2"); err == nil {
		t.Fatal("InvalidateTags with a failing pop succeeded")
	}
	if err := raw.Del(ctx, bad).Err(); err != nil {
		t.Fatal(err)
	}
	// The caller retries, as the error tells it to.
	if err := a.InvalidateTags(ctx, "t1", "t2"); err != nil {
		t.Fatal(err)
	}
	if inL2 := r.inL2(t, "k1"); inL2 != "" {
		t.Fatalf("after a failed InvalidateTags and a successful retry, L2 still holds %q for k1 (tag t1): the popped membership was lost", inL2)
	}
}

// Review: setVersion (tiered/clear.go) moves c.version with a CAS and then
// stores c.l2name in a second step; two calls with different versions can
// interleave CAS(1→2), CAS(2→3), Store(ns#3), Store(ns#2), leaving version 3
// with L2 name ns#2. underVersion compares versions only, so every later
// read and write goes to the old namespace until the next version change.
// Reached by a Clear message on the bus goroutine racing a local Clear or a
// writer's underVersion that read a newer version.
func TestReviewSetVersionNameMatchesVersion(t *testing.T) {
	c := newClient(t, tiered.Config{})
	cache := newCache(t, c, "users", tiered.Options[string]{})
	deadline := time.Now().Add(time.Second)
	for round := uint64(1); time.Now().Before(deadline); round++ {
		var start sync.WaitGroup
		var wg sync.WaitGroup
		start.Add(1)
		for _, v := range []uint64{2 * round, 2*round + 1} {
			wg.Add(1)
			go func() {
				defer wg.Done()
				start.Wait()
				tiered.SetVersionForTest(cache, v)
			}()
		}
		start.Done()
		wg.Wait()
		v, _ := tiered.VersionKnown(cache)
		if want, got := "users#"+strconv.FormatUint(v, 10), tiered.L2NameForTest(cache); got != want {
			t.Fatalf("round %d: version %d but L2 name %q", round, v, got)
		}
	}
}

// pauseAfter is a go-redis hook that, while armed, holds the first command
// match accepts right after its reply came back, until release is closed.
type pauseAfter struct {
	match   func(redis.Cmder) bool
	armed   atomic.Bool
	paused  chan struct{}
	release chan struct{}
}

func newPauseAfter(match func(redis.Cmder) bool) *pauseAfter {
	return &pauseAfter{match: match, paused: make(chan struct{}), release: make(chan struct{})}
}

func (h *pauseAfter) DialHook(next redis.DialHook) redis.DialHook { return next }
func (h *pauseAfter) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return next
}
func (h *pauseAfter) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		err := next(ctx, cmd)
		if h.match(cmd) && h.armed.CompareAndSwap(true, false) {
			close(h.paused)
			<-h.release
		}
		return err
	}
}

// Review: reloadVersion (tiered/clear.go) skips when a reload is running. A
// reset that comes while a reload's version read is already answered (with
// the version before a Clear whose message this replica lost) is dropped:
// the running reload ends with the old version, and nothing reads it again.
// The replica then serves the pre-Clear namespace from L2 indefinitely.
func TestReviewResetDuringReloadIsLost(t *testing.T) {
	ctx := context.Background()
	srv := redistest.Start(t)
	hooked := srv.Client(t)
	versionRead := newPauseAfter(func(cmd redis.Cmder) bool {
		args := cmd.Args()
		if len(args) != 2 || cmd.Name() != "get" {
			return false
		}
		k, _ := args[1].(string)
		return len(k) > 8 && k[len(k)-8:] == "#version"
	})
	hooked.AddHook(versionRead)
	// Different invalidation keys: A drops what B sends, as if it were lost.
	ca := newClient(t, tiered.Config{Redis: l2.Config{Client: hooked}, InvalidationKey: []byte("a")})
	cb := newClient(t, tiered.Config{Redis: l2.Config{Addrs: []string{srv.Addr()}}, InvalidationKey: []byte("b")})
	a := newCache(t, ca, "users", tiered.Options[string]{TTL: time.Hour})
	b := newCache(t, cb, "users", tiered.Options[string]{TTL: time.Hour})
	if err := a.Set(ctx, "k", "old"); err != nil {
		t.Fatal(err)
	}
	// First reset (a lost invalidation, say): its reload reads version 0...
	versionRead.armed.Store(true)
	tiered.Reset(a)
	<-versionRead.paused
	// ...and just after, B clears (message lost to A) and writes anew.
	if err := b.Clear(ctx); err != nil {
		t.Fatal(err)
	}
	if err := b.Set(ctx, "k", "new"); err != nil {
		t.Fatal(err)
	}
	// The lost Clear is noticed: a second reset, while the first reload is
	// still finishing.
	tiered.Reset(a)
	close(versionRead.release)
	redistest.WaitFor(t, 5*time.Second, func() bool { return !tiered.ReloadingForTest(a) }, "the reload ends")
	if v, _ := tiered.VersionKnown(a); v != 1 {
		t.Errorf("after two resets, A uses namespace version %d; L2's is 1", v)
	}
	if got := lookup(t, a, "k"); got != "new" {
		t.Fatalf("after two resets, A answers %q from the namespace before the Clear; L2 (version 1) holds \"new\"", got)
	}
}

// Review: a key whose tags changed between Sets stays in the L2 set of its
// old tag (Set only adds memberships). InvalidateTags of the old tag then
// deletes the key from L2, but L1's tag index knows only the new tags, so
// replicas keep serving the value L2 no longer holds (guarantee 13).
func TestReviewRetaggedKeyDivergesAfterOldTagInvalidation(t *testing.T) {
	ctx := context.Background()
	r := newStickReplicas(t, 2, tiered.Options[string]{TTL: time.Hour})
	a, b := r.caches[0], r.caches[1]
	if err := a.Set(ctx, "k", "v1", tiered.WithTags("old")); err != nil {
		t.Fatal(err)
	}
	if err := a.Set(ctx, "k", "v2", tiered.WithTags("new")); err != nil {
		t.Fatal(err)
	}
	if got := lookup(t, b, "k"); got != "v2" { // B fills its L1 too
		t.Fatalf("B answers %q", got)
	}
	before := r.clients[0].BusStats().Applied
	if err := b.InvalidateTags(ctx, "old"); err != nil {
		t.Fatal(err)
	}
	// The tags message, and (since 150eb1d) the deleted keys' message.
	applied(t, r.clients[0], before+2)
	inL2 := r.inL2(t, "k")
	for i, c := range r.caches {
		if got := lookup(t, c, "k"); got != inL2 {
			t.Errorf("replica %d answers %q, L2 holds %q", i, got, inL2)
		}
	}
}

// failOnce is a go-redis hook that, while armed, fails the first command
// match accepts (and, with ctxKey set, whose context carries that key):
// without sending it, or with after, once the server ran it, as when its
// reply is lost.
type failOnce struct {
	match  func(redis.Cmder) bool
	ctxKey any
	after  bool
	armed  atomic.Bool
}

func (h *failOnce) DialHook(next redis.DialHook) redis.DialHook { return next }
func (h *failOnce) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return next
}
func (h *failOnce) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		hit := func() bool {
			return (h.ctxKey == nil || ctx.Value(h.ctxKey) != nil) && h.match(cmd) && h.armed.CompareAndSwap(true, false)
		}
		if !h.after && hit() {
			err := errors.New("review: injected failure")
			cmd.SetErr(err)
			return err
		}
		err := next(ctx, cmd)
		if h.after && err == nil && hit() {
			err = errors.New("review: reply lost")
			cmd.SetErr(err)
		}
		return err
	}
}

// Review: when InvalidateTags popped a tag set but could not delete its
// keys, restoreTags puts the memberships back with a fixed 24 h TTL
// (tiered/tags.go restoredTagTTL), whatever the values' own TTLs. A value
// written WithTTL(48h) then outlives its restored tag set by a day, during
// which no InvalidateTags can find it.
func TestReviewRestoredTagSetOutlivedByValue(t *testing.T) {
	ctx := context.Background()
	srv := redistest.Start(t)
	hooked := srv.Client(t)
	del := &failOnce{match: func(cmd redis.Cmder) bool { return cmd.Name() == "del" || cmd.Name() == "unlink" }}
	hooked.AddHook(del)
	c := newClient(t, tiered.Config{Redis: l2.Config{Client: hooked}})
	a := newCache(t, c, "users", tiered.Options[string]{TTL: time.Hour})
	if err := a.Set(ctx, "k", "v", tiered.WithTags("t"), tiered.WithTTL(48*time.Hour)); err != nil {
		t.Fatal(err)
	}
	del.armed.Store(true)
	if err := a.InvalidateTags(ctx, "t"); err == nil {
		t.Fatal("InvalidateTags with a failing delete succeeded")
	}
	raw := srv.Client(t)
	setTTL := raw.PTTL(ctx, c.L2().TagKey("users", "t")).Val()
	valueTTL := raw.PTTL(ctx, c.L2().Key("users", "k")).Val()
	if setTTL+time.Second < valueTTL { // both were set to the entry's deadline, to the millisecond
		t.Fatalf("restored tag set lives %v, its value %v: the value outlives its membership", setTTL, valueTTL)
	}
}
