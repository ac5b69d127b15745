package tiered_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/strata-cache/strata/internal/redistest"
	"github.com/strata-cache/strata/l2"
	"github.com/strata-cache/strata/tiered"
)

// review12Split returns a tag and a key whose tag set and value live on
// different shards of c's Ring (all shards up).
func review12Split(t *testing.T, c *tiered.Client) (tag, key string) {
	t.Helper()
	tag = "tag0"
	for i := range 1000 {
		k := fmt.Sprintf("k%d", i)
		if c.L2().Server(k) != c.L2().Server(tag) {
			return tag, k
		}
	}
	t.Fatal("no key off the tag's shard")
	return "", ""
}

func (f *shardFleet) at(t *testing.T, addr string) *redistest.Server {
	t.Helper()
	for _, s := range f.shards {
		if s.Addr() == addr {
			return s
		}
	}
	t.Fatalf("no shard at %s", addr)
	return nil
}

// A Set whose tag set lives on a shard out of service: AddTags refuses, the
// value is deleted again from its own (healthy) shard. Its invalidation must
// not go out L2Missed naming that healthy shard: every receiver would take
// it out of service (a fault of one server spreading to another).
func TestReview12TagShardOutFencesKeyShardOnReceivers(t *testing.T) {
	ctx := context.Background()
	f := newShardFleet(t, 3)
	a := f.replica(t)
	// B's health rounds are far apart: a fence it takes stays until we look.
	b := newClient(t, tiered.Config{
		NodeID: "replica-b",
		Redis:  l2.Config{Addrs: f.addrs, Timeout: l2.DefaultTimeout, HealthInterval: time.Hour},
		Gossip: localGossip(f.seed),
	})
	opts := tiered.Options[string]{TTL: time.Hour}
	ca, _ := newCache(t, a, "users", opts), newCache(t, b, "users", opts)
	tag, key := review12Split(t, a)
	tagSrv, keySrv := a.L2().Server(tag), a.L2().Server(key)

	if err := ca.Set(ctx, "warm", "x"); err != nil {
		t.Fatal(err)
	}
	redistest.WaitFor(t, 5*time.Second, func() bool { return b.BusStats().Applied >= 1 }, "B applies the first Set")

	f.at(t, tagSrv).Kill()
	redistest.WaitFor(t, 10*time.Second, func() bool { return !serving(a, tagSrv) }, "A takes the tag's shard out")
	if got := a.L2().Server(key); got != keySrv {
		t.Fatalf("key moved to %s", got)
	}
	applied := b.BusStats().Applied
	err := ca.Set(ctx, key, "v", tiered.WithTags(tag))
	t.Logf("Set: %v", err)
	redistest.WaitFor(t, 5*time.Second, func() bool { return b.BusStats().Applied > applied }, "B applies the Set")
	for _, h := range b.L2().Health() {
		if h.Addr == keySrv && (!h.Serving || h.Dirty) {
			t.Errorf("B holds the key's healthy shard %s out (serving %v, dirty %v, reason %q) because the tag's shard %s is down",
				keySrv, h.Serving, h.Dirty, h.Reason, tagSrv)
		}
	}
}

// The same Set leaves the value in A's L1 alone (L2 deleted it), unmarked:
// the auditor then reports a false inconsistency ("L2 held nothing").
func TestReview12TagShardOutSetAuditedAsInconsistent(t *testing.T) {
	ctx := context.Background()
	f := newShardFleet(t, 3)
	a := newClient(t, tiered.Config{
		NodeID: "replica-a",
		Redis:  l2.Config{Addrs: f.addrs, Timeout: l2.DefaultTimeout},
		Audit:  tiered.AuditConfig{SampleRate: 1, Window: 20 * time.Millisecond},
	})
	ca := newCache(t, a, "users", tiered.Options[string]{TTL: time.Hour})
	tag, key := review12Split(t, a)
	tagSrv := a.L2().Server(tag)
	f.at(t, tagSrv).Kill()
	redistest.WaitFor(t, 10*time.Second, func() bool { return !serving(a, tagSrv) }, "A takes the tag's shard out")
	err := ca.Set(ctx, key, "v", tiered.WithTags(tag))
	t.Logf("Set: %v", err)
	if b, err := a.L2().Get(ctx, "users", key); err != nil || b != nil {
		t.Logf("L2 holds %q, %v", b, err)
	}
	var st tiered.AuditStats
	redistest.WaitFor(t, 10*time.Second, func() bool {
		if v, err := ca.Get(ctx, key, nil); err != nil || v != "v" {
			t.Fatalf("Get: %q, %v", v, err)
		}
		st = ca.Stats().Audit
		return st.Samples+st.Skipped >= 3
	}, "audited hits")
	if st.Inconsistent > 0 {
		t.Errorf("audit: %+v: a Set kept in L1 alone (its tags could not be added) counted inconsistent", st)
	}
}

// A write-behind Set whose tags cannot be added (their shard is out) fails
// ("not recorded for the database"), yet its record was appended with the
// value (WriteAppend) and only the value is deleted: the database gets the
// write the caller was told failed.
func TestReview12WriteBehindTagShardOutFailedSetStillFlushed(t *testing.T) {
	waitsMostly(t)
	ctx := context.Background()
	f := newShardFleet(t, 3)
	a := newClient(t, tiered.Config{
		NodeID: "replica-a",
		Redis:  l2.Config{Addrs: f.addrs, Timeout: l2.DefaultTimeout},
	})
	flushed := make(chan string, 16)
	ca := newCache(t, a, "users", tiered.Options[string]{TTL: time.Hour, WriteBehind: &tiered.WriteBehind[string]{
		Interval: 10 * time.Millisecond,
		Flush: func(_ context.Context, batch []tiered.Write[string]) error {
			for _, w := range batch {
				flushed <- w.Key + "=" + w.Value
			}
			return nil
		},
	}})
	tag, key := review12Split(t, a)
	tagSrv := a.L2().Server(tag)
	f.at(t, tagSrv).Kill()
	redistest.WaitFor(t, 10*time.Second, func() bool { return !serving(a, tagSrv) }, "A takes the tag's shard out")
	err := ca.Set(ctx, key, "v", tiered.WithTags(tag))
	if err == nil {
		t.Skip("the Set succeeded")
	}
	t.Logf("Set failed: %v", err)
	deadline := time.After(5 * time.Second)
	for {
		select {
		case w := <-flushed:
			if w == key+"=v" {
				t.Fatalf("the database got %s, whose Set returned an error", w)
			}
		case <-deadline:
			return
		}
	}
}
