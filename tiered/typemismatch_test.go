package tiered_test

import (
	"context"
	"errors"
	"strconv"
	"testing"
	"time"

	"github.com/strata-cache/strata/internal/redistest"
	"github.com/strata-cache/strata/l2"
	"github.com/strata-cache/strata/tiered"
)

// TestTypeChangeIsAMissNotChurn is issue 15's codec mismatch between
// replicas: a Cache[int] and a Cache[string] on one namespace (a rolling
// deploy that changed V) each miss on the other's entries, load around them
// and leave them in L2, instead of deleting each other's entries as
// corrupt; writes and invalidations of either still reach both.
func TestTypeChangeIsAMissNotChurn(t *testing.T) {
	ctx := context.Background()
	srv := redistest.Start(t)
	cfg := tiered.Config{Redis: l2.Config{Addrs: []string{srv.Addr()}}}
	old := newCache(t, newClient(t, cfg), "users", tiered.Options[int]{})
	if err := old.Set(ctx, "k", 1); err != nil {
		t.Fatal(err)
	}
	// Subscribed after the Set: its invalidation cannot fence the load
	// below (the fill guard would rightly keep it out of L1).
	next := newCache(t, newClient(t, cfg), "users", tiered.Options[string]{})
	written := srv.Do(t, "GET", "strata:users:{k}")

	var l countingLoader
	for range 2 { // the second from L1: the load was kept there
		if v, err := next.Get(ctx, "k", l.load); err != nil || v != "v:k" {
			t.Fatalf("Get on the new type = %q, %v; want the loader's value", v, err)
		}
	}
	if l.calls.Load() != 1 {
		t.Errorf("%d loads, want 1 (then L1)", l.calls.Load())
	}
	got, err := next.GetMany(ctx, []string{"k", "other"}, func(_ context.Context, keys []string) (map[string]string, error) {
		out := map[string]string{}
		for _, k := range keys {
			out[k] = "batch:" + k
		}
		return out, nil
	})
	if err != nil || got["k"] != "v:k" || got["other"] != "batch:other" {
		t.Fatalf("GetMany = %v, %v", got, err)
	}
	if now := srv.Do(t, "GET", "strata:users:{k}"); now != written {
		t.Fatalf("the old type's entry was replaced or deleted: %q, was %q", now, written)
	}
	if v, err := old.Get(ctx, "k", nil); err != nil || v != 1 {
		t.Fatalf("the old type's Get = %d, %v; want its own entry", v, err)
	}
	s := next.Stats()
	if s.TypeMismatches == 0 || s.CorruptEntries != 0 {
		t.Errorf("stats: %d type mismatches, %d corrupt; want some and none", s.TypeMismatches, s.CorruptEntries)
	}

	// The old type's Delete reaches the new type's L1 copy.
	if err := old.Delete(ctx, "k"); err != nil {
		t.Fatal(err)
	}
	if !eventually(5*time.Second, func() bool {
		_, err := next.Get(ctx, "k", nil)
		return errors.Is(err, tiered.ErrNotFound)
	}) {
		t.Fatal("the new type's L1 copy outlived the old type's Delete")
	}
	// The new type's Set takes the key over; the old type misses on it.
	if err := next.Set(ctx, "k", "two"); err != nil {
		t.Fatal(err)
	}
	v, err := old.Get(ctx, "k", func(context.Context, string) (int, error) { return 2, nil })
	if err != nil || v != 2 {
		t.Fatalf("old type's Get after the new type's Set = %d, %v; want its loader's 2", v, err)
	}
	if v, err := next.Get(ctx, "k", nil); err != nil || v != "two" {
		t.Fatalf("new type's Get = %q, %v; want its own Set", v, err)
	}
}

// TestSchemaNamesTheFingerprint: Options.Schema replaces the type names in
// the fingerprint. Two Go types that encode alike share entries under one
// schema, and a change of schema on one type is a miss, not corruption.
func TestSchemaNamesTheFingerprint(t *testing.T) {
	ctx := context.Background()
	srv := redistest.Start(t)
	cfg := tiered.Config{Redis: l2.Config{Addrs: []string{srv.Addr()}}}
	type userA struct{ Name string }
	type userB struct{ Name string }
	a := newCache(t, newClient(t, cfg), "users", tiered.Options[userA]{Schema: "user/1"})
	b := newCache(t, newClient(t, cfg), "users", tiered.Options[userB]{Schema: "user/1", L1: tiered.L1Options{Disabled: true}})
	if err := a.Set(ctx, "k", userA{"ann"}); err != nil {
		t.Fatal(err)
	}
	if v, err := b.Get(ctx, "k", nil); err != nil || v.Name != "ann" {
		t.Fatalf("one schema, two types: Get = %+v, %v; want the shared entry", v, err)
	}

	type user struct {
		Name int // changed its type: the encoding is no longer compatible
	}
	bumped := newCache(t, newClient(t, cfg), "users", tiered.Options[user]{Schema: "user/2", L1: tiered.L1Options{Disabled: true}})
	if _, err := bumped.Get(ctx, "k", nil); !errors.Is(err, tiered.ErrNotFound) {
		t.Fatalf("a new schema's lookup = %v, want ErrNotFound", err)
	}
	if s := bumped.Stats(); s.TypeMismatches != 1 || s.CorruptEntries != 0 {
		t.Errorf("stats: %d type mismatches, %d corrupt; want 1 and 0", s.TypeMismatches, s.CorruptEntries)
	}
	if v, err := b.Get(ctx, "k", nil); err != nil || v.Name != "ann" {
		t.Fatalf("after the new schema's read: Get = %+v, %v; want the entry untouched", v, err)
	}
}

// TestTypeMismatchUnderLeases: replicas of another type waiting on the old
// type's lease, or finding its entry while polling, load around it rather
// than fill over it; none of them waits out LeaseWait.
func TestTypeMismatchUnderLeases(t *testing.T) {
	ctx := context.Background()
	srv := redistest.Start(t)
	cfg := tiered.Config{Redis: l2.Config{Addrs: []string{srv.Addr()}}}
	old := newCache(t, newClient(t, cfg), "ns", tiered.Options[int]{})
	next := newCache(t, newClient(t, cfg), "ns", tiered.Options[string]{LeaseWait: time.Minute})
	inLoad, release := make(chan struct{}), make(chan struct{})
	done := make(chan error, 1)
	go func() {
		_, err := old.Get(ctx, "k", func(context.Context, string) (int, error) {
			close(inLoad)
			<-release
			return 7, nil
		})
		done <- err
	}()
	<-inLoad
	got := make(chan error, 1)
	go func() {
		v, err := next.Get(ctx, "k", func(context.Context, string) (string, error) { return "seven", nil })
		if err == nil && v != "seven" {
			err = errors.New("got " + strconv.Quote(v))
		}
		got <- err
	}()
	if !eventually(5*time.Second, func() bool { return next.Stats().LeaseWaits == 1 }) {
		t.Fatal("the new type did not wait on the old type's lease")
	}
	close(release)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-got:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the new type waited on for a fill of its own type")
	}
	if v, err := old.Get(ctx, "k", nil); err != nil || v != 7 {
		t.Fatalf("the old type's fill = %d, %v; want it kept", v, err)
	}
}
