package tiered_test

// Regression tests from review 9 of write-behind. Each test's comment
// describes the break it found, as it was found; all six are fixed:
//  1. Close now starts the drain deadline when it is called, ending a Flush
//     or back-off in progress.
//  2. A dead letter keeps the entry's fields whole; DeadLetters reports what
//     cannot be decoded; Redrive skips what is not a write.
//  3. The flush lock is renewed through a batch's Flush calls and back-off;
//     once lost, the batch is left to the new holder.
//  4. Versions are Redis's: from the stream entry's ID.
//  5. On a Cluster the record is appended first, then the value written: a
//     full stream refuses the write before anything changes.
//  6. Dead-lettering and Redrive are two steps, not one cross-slot
//     transaction.

import (
	"context"
	"errors"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/strata-cache/strata/internal/clock"
	"github.com/strata-cache/strata/internal/redistest"
	"github.com/strata-cache/strata/l2"
	"github.com/strata-cache/strata/tiered"
)

// r9Log records every Flush call of several replicas in one order: what the
// database saw.
type r9Log struct {
	mu    sync.Mutex
	calls []r9Call
}

type r9Call struct {
	replica string
	batch   []tiered.Write[string]
}

func (l *r9Log) add(replica string, batch []tiered.Write[string]) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.calls = append(l.calls, r9Call{replica, slices.Clone(batch)})
}

// writes lists key's writes as "replica:value" in the order Flush got them.
func (l *r9Log) writes(key string) []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []string
	for _, c := range l.calls {
		for _, w := range c.batch {
			if w.Key == key {
				out = append(out, c.replica+":"+w.Value)
			}
		}
	}
	return out
}

func (l *r9Log) has(want string, key string) bool { return slices.Contains(l.writes(key), want) }

// Close must not hang past DrainTimeout when it is called while the
// flusher is inside a Flush that honours its ctx (a database call stuck
// until its deadline), nor while the flusher sits in a retry back-off. The
// DrainTimeout timer that cancels the flusher's ctx is only started by
// drain(), which the flusher's goroutine reaches after the current
// flushBatch returns: a ctx-respecting Flush blocked at Close time is never
// cancelled, and a back-off keeps retrying for its whole schedule (up to
// MaxAttempts, then dead-letters the batch).
func TestReview9CloseHangsPastDrainTimeout(t *testing.T) {
	ctx := context.Background()
	t.Run("flush in progress", func(t *testing.T) {
		release := make(chan struct{})
		entered := make(chan struct{}, 10)
		flush := func(fctx context.Context, batch []tiered.Write[string]) error {
			select {
			case entered <- struct{}{}:
			default:
			}
			select { // a database call that gives up when its ctx ends
			case <-fctx.Done():
				return fctx.Err()
			case <-release:
				return nil
			}
		}
		c, _ := newRedisClient(t, tiered.Config{})
		cache := newCache(t, c, "wb", tiered.Options[string]{TTL: time.Hour, WriteBehind: &tiered.WriteBehind[string]{
			Flush: flush, Interval: 10 * time.Millisecond, DrainTimeout: 200 * time.Millisecond}})
		if err := cache.Set(ctx, "k", "v"); err != nil {
			t.Fatal(err)
		}
		<-entered
		closed := make(chan struct{})
		go func() { _ = c.Close(); close(closed) }()
		select {
		case <-closed:
		case <-time.After(5 * time.Second):
			t.Errorf("Close still blocked 5 s after it was called with DrainTimeout 200 ms: the blocked Flush's ctx was never cancelled")
			close(release)
			<-closed
		}
	})
	t.Run("retry back-off", func(t *testing.T) {
		var failing atomic.Bool
		failing.Store(true)
		var calls atomic.Int64
		flush := func(context.Context, []tiered.Write[string]) error {
			calls.Add(1)
			if failing.Load() {
				return errors.New("database down")
			}
			return nil
		}
		c, _ := newRedisClient(t, tiered.Config{})
		cache := newCache(t, c, "wb", tiered.Options[string]{TTL: time.Hour, WriteBehind: &tiered.WriteBehind[string]{
			Flush: flush, Interval: 10 * time.Millisecond, RetryInitial: 50 * time.Millisecond, RetryMax: 50 * time.Millisecond,
			MaxAttempts: 1_000_000, DrainTimeout: 200 * time.Millisecond}})
		if err := cache.Set(ctx, "k", "v"); err != nil {
			t.Fatal(err)
		}
		redistest.WaitFor(t, 10*time.Second, func() bool { return calls.Load() > 0 }, "a first Flush")
		closed := make(chan struct{})
		go func() { _ = c.Close(); close(closed) }()
		select {
		case <-closed:
		case <-time.After(5 * time.Second):
			t.Errorf("Close still blocked 5 s after it was called with DrainTimeout 200 ms: the flusher kept retrying (%d Flush calls)", calls.Load())
			failing.Store(false)
			<-closed
		}
	})
}

// r9Codec is a string codec whose Unmarshal fails while broken is set (a
// schema registry out for a moment, a codec bug fixed in the next deploy).
type r9Codec struct{ broken *atomic.Bool }

func (r9Codec) Marshal(v string) ([]byte, error) { return []byte(v), nil }
func (c r9Codec) Unmarshal(b []byte) (string, error) {
	if c.broken.Load() {
		return "", errors.New("codec unavailable")
	}
	return string(b), nil
}

// An entry the flusher cannot decode is dead-lettered without its content:
// bury() builds the dead-letter entries from l2.Entry{ID: id} alone, so the
// dead letter has an empty key, no payload and version 0, and DeadLetters
// reports it as a valid write (Err nil) of key "". For an acknowledged Set
// whose payload the codec failed to read once, the write is lost (the
// reason only says "codec unavailable"); Redrive sends back a write of key
// "" with an empty value that no one made. For a malformed record the key
// survives only inside the reason's text.
func TestReview9UndecodableEntryLosesItsContent(t *testing.T) {
	ctx := context.Background()
	t.Run("codec failure of an acknowledged Set", func(t *testing.T) {
		s := newSink()
		var broken atomic.Bool
		c, srv := newRedisClient(t, tiered.Config{})
		opts := wbOptions(s, nil)
		opts.Codec = r9Codec{&broken}
		cache := newCache(t, c, "wb", opts)
		<-waitIdle(cache)
		broken.Store(true)
		if err := cache.Set(ctx, "x", "acknowledged"); err != nil {
			t.Fatal(err)
		}
		redistest.WaitFor(t, 10*time.Second, func() bool { return cache.Stats().WriteBehind.DeadLettered == 1 }, "the entry dead-lettered")
		broken.Store(false) // the codec works again
		t.Logf("dead-letter stream: %v", srv.Do(t, "XRANGE", "strata:wb#writes:dead", "-", "+"))
		dead, err := cache.DeadLetters(ctx)
		if err != nil || len(dead) != 1 {
			t.Fatalf("DeadLetters = %+v, %v", dead, err)
		}
		if d := dead[0]; d.Write.Key != "x" || d.Write.Value != "acknowledged" {
			t.Errorf("dead letter %+v: the acknowledged write x=acknowledged is not in it", d)
		}
		if _, err := cache.Redrive(ctx); err != nil {
			t.Fatal(err)
		}
		redistest.WaitFor(t, 10*time.Second, func() bool { _, ok := s.row("x"); _, bogus := s.row(""); return ok || bogus }, "the redriven entry flushed")
		if w, ok := s.row("x"); !ok || w.Value != "acknowledged" {
			t.Errorf("after Redrive the database has x = %+v (present %v): the acknowledged write is lost", w, ok)
		}
		if w, ok := s.row(""); ok {
			t.Errorf("Redrive made Flush write key \"\" (%+v), a write no one made", w)
		}
	})
	t.Run("malformed record", func(t *testing.T) {
		s := newSink()
		c, srv := newRedisClient(t, tiered.Config{})
		cache := newCache(t, c, "wb", wbOptions(s, nil))
		<-waitIdle(cache)
		// A record of key "x" whose version is not a number (written by
		// another version of the application, or by hand).
		srv.Do(t, "XADD", "strata:wb#writes", "*", "k", "x", "v", "payload", "d", "0", "ver", "v5", "t", "1")
		redistest.WaitFor(t, 10*time.Second, func() bool { return cache.Stats().WriteBehind.DeadLettered == 1 }, "the entry dead-lettered")
		t.Logf("dead-letter stream: %v", srv.Do(t, "XRANGE", "strata:wb#writes:dead", "-", "+"))
		dead, err := cache.DeadLetters(ctx)
		if err != nil || len(dead) != 1 {
			t.Fatalf("DeadLetters = %+v, %v", dead, err)
		}
		if d := dead[0]; d.Write.Key != "x" && d.Err == nil {
			t.Errorf("dead letter %+v: neither its key (x) nor a decoding error", d)
		}
		if n, err := cache.Redrive(ctx); err != nil {
			t.Fatal(err)
		} else if n > 0 {
			redistest.WaitFor(t, 10*time.Second, func() bool { _, ok := s.row(""); return ok || cache.Stats().WriteBehind.DeadLettered > 1 },
				"the redriven entry handled")
			if w, ok := s.row(""); ok {
				t.Errorf("Redrive of the malformed entry made Flush write key \"\" (%+v), a write no one made", w)
			}
		}
	})
}

// A replica whose Flush keeps failing loses the stream's flush lock during
// its back-off (the lock lives max(10*Interval, 1 s); back-off grows to
// RetryMax, 10 s by default) and goes on retrying its batch without checking
// it still holds the lock or the entries. Another replica takes the lock,
// claims the batch once ClaimIdle old, flushes it, reads and flushes a newer
// write of the key; then the first replica's retry succeeds and Flush gets
// the older write after the newer one. With the defaults this happens in a
// database outage longer than ClaimIdle (30 s): ten attempts back off
// 0.1+0.2+...+10+10 = 32.7 s. A last-writer-wins Flush ends with the old
// value: the acknowledged newer write is lost.
func TestReview9RetryAfterLostLockFlushesOldAfterNew(t *testing.T) {
	ctx := context.Background()
	srv := redistest.Start(t)
	cfg := func(id string) tiered.Config {
		return tiered.Config{NodeID: id, Redis: l2.Config{Addrs: []string{srv.Addr()}}}
	}
	var log r9Log
	var failA atomic.Bool
	failA.Store(true)
	var aCalls atomic.Int64
	flushA := func(_ context.Context, batch []tiered.Write[string]) error {
		aCalls.Add(1)
		if failA.Load() {
			return errors.New("database unreachable from replica a")
		}
		log.add("a", batch)
		return nil
	}
	flushB := func(_ context.Context, batch []tiered.Write[string]) error { log.add("b", batch); return nil }
	ca := newClient(t, cfg("a"))
	cacheA := newCache(t, ca, "wb", tiered.Options[string]{TTL: time.Hour, WriteBehind: &tiered.WriteBehind[string]{
		Flush: flushA, Interval: 100 * time.Millisecond, RetryInitial: 2 * time.Second, RetryMax: 2 * time.Second, MaxAttempts: 100}})
	<-waitIdle(cacheA) // a holds the flush lock
	if err := cacheA.Set(ctx, "k", "v1"); err != nil {
		t.Fatal(err)
	}
	redistest.WaitFor(t, 10*time.Second, func() bool { return aCalls.Load() > 0 }, "a's first (failed) Flush of v1")
	cb := newClient(t, cfg("b"))
	cacheB := newCache(t, cb, "wb", tiered.Options[string]{TTL: time.Hour, WriteBehind: &tiered.WriteBehind[string]{
		Flush: flushB, Interval: 100 * time.Millisecond, ClaimIdle: 300 * time.Millisecond}})
	// a renews its lock through the back-off now (the fix); take it from
	// it, as an expiry during a stall would.
	if err := srv.Client(t).Del(ctx, "strata:wb#writes:lock").Err(); err != nil {
		t.Fatal(err)
	}
	redistest.WaitFor(t, 20*time.Second, func() bool { return log.has("b:v1", "k") }, "b claimed and flushed v1")
	if err := cacheB.Set(ctx, "k", "v2"); err != nil {
		t.Fatal(err)
	}
	redistest.WaitFor(t, 20*time.Second, func() bool { return log.has("b:v2", "k") }, "b flushed v2")
	failA.Store(false) // the database is reachable from a again
	calls := aCalls.Load()
	redistest.WaitFor(t, 20*time.Second, func() bool {
		st := cacheB.Stats().WriteBehind
		return st.Pending == 0 && st.InFlight == 0
	}, "nothing pending")
	if aCalls.Load() > calls+1 {
		t.Errorf("a went on retrying its batch (%d more Flush calls) after losing the lock", aCalls.Load()-calls)
	}
	ws := log.writes("k")
	if i := slices.Index(ws, "b:v2"); i >= 0 && slices.Contains(ws[i+1:], "a:v1") {
		t.Errorf("Flush got k's writes in the order %v: v1 after v2 (per-key order broken; a last-writer-wins database ends with v1)", ws)
	}
}

// Versions come from each client's own clock (Client.nextVersion: now, or
// one above the client's last), so they do not order the writes of two
// replicas. Here both replicas share one clock, showing the same instant
// (as two coarse 1 ms clocks do within a tick): replica a writes k three
// times, then replica b writes k once, after a's writes were acknowledged.
// b's write gets a's first version, lower than a's last; coalescing keeps
// the highest version, so Flush receives a's older value and never b's: the
// database ends with v3 while every replica serves b. Any skew between the
// replicas' clocks does the same for writes closer together than the skew.
func TestReview9CrossReplicaVersionsDropNewerWrite(t *testing.T) {
	ctx := context.Background()
	srv := redistest.Start(t)
	clk := clock.NewManual(time.Now())
	s := newSink()
	gate := make(chan struct{})
	s.setGate(gate)
	cfg := func(id string) tiered.Config {
		return tiered.Config{NodeID: id, Clock: clk, Redis: l2.Config{Addrs: []string{srv.Addr()}}}
	}
	ca, cb := newClient(t, cfg("a")), newClient(t, cfg("b"))
	cacheA := newCache(t, ca, "wb", wbOptions(s, nil))
	cacheB := newCache(t, cb, "wb", wbOptions(s, nil))
	if err := cacheA.Set(ctx, "warm", "x"); err != nil {
		t.Fatal(err)
	}
	<-s.entered // a flusher is held in Flush: k's writes wait together
	for _, v := range []string{"v1", "v2", "v3"} {
		if err := cacheA.Set(ctx, "k", v); err != nil {
			t.Fatal(err)
		}
	}
	if err := cacheB.Set(ctx, "k", "b"); err != nil { // the last write of k
		t.Fatal(err)
	}
	s.setGate(nil)
	close(gate)
	redistest.WaitFor(t, 20*time.Second, func() bool {
		return cacheA.Stats().WriteBehind.Flushed+cacheB.Stats().WriteBehind.Flushed >= 5
	}, "every entry flushed")
	if got, _ := cacheB.Get(ctx, "k", nil); got != "b" {
		t.Logf("cache serves k = %q", got)
	}
	if w, _ := s.row("k"); w.Value != "b" {
		t.Errorf("database has k = %q (version %d) after the last acknowledged write b; Flush got %v", w.Value, w.Version, s.writesOf("k"))
	}
}

// Back-pressure must write nothing. On a Redis Cluster (the pipelined
// append) a Set refused with ErrBackpressure has written its value and then
// "undone" it by deleting the key: the previous, acknowledged and still
// unflushed value of the key is gone from L2, and every replica now loads
// the database's older value (the database has not got the pending write
// yet). On a single node (the atomic script) nothing is written: the
// control case, which passes.
func TestReview9BackpressureOnClusterDeletesPendingValue(t *testing.T) {
	ctx := context.Background()
	for _, topo := range []string{"single", "cluster"} {
		t.Run(topo, func(t *testing.T) {
			var redisCfg l2.Config
			if topo == "cluster" {
				redisCfg.ClusterAddrs = redistest.StartCluster(t, 3).Addrs()
			} else {
				redisCfg.Addrs = []string{redistest.Start(t).Addr()}
			}
			s := newSink()
			gate := make(chan struct{})
			s.setGate(gate)
			defer close(gate)
			c := newClient(t, tiered.Config{Redis: redisCfg})
			cache := newCache(t, c, "wb", wbOptions(s, func(wb *tiered.WriteBehind[string]) { wb.MaxPending = 1 }))
			if err := cache.Set(ctx, "k", "v1"); err != nil {
				t.Fatal(err)
			}
			<-s.entered // v1 read, held in Flush: the stream is full
			if err := cache.Set(ctx, "k", "v2"); !errors.Is(err, tiered.ErrBackpressure) {
				t.Fatalf("Set past MaxPending: %v, want ErrBackpressure", err)
			}
			other := newCache(t, newClient(t, tiered.Config{Redis: redisCfg}), "wb", tiered.Options[string]{TTL: time.Hour})
			got, err := other.Get(ctx, "k", func(context.Context, string) (string, error) { return "database's old value", nil })
			if err != nil || got != "v1" {
				t.Errorf("another replica reads k = %q, %v after a refused Set; want v1, the acknowledged value still pending", got, err)
			}
		})
	}
}

// On a Redis Cluster the dead-letter stream P:ns#writes:dead and the stream
// P:ns#writes are in different slots, and Stream.Bury moves entries between
// them in one MULTI (TxPipelined): go-redis refuses a cross-slot
// transaction (ErrCrossSlot), so dead-lettering always fails. The poison
// batch stays pending, is claimed again once ClaimIdle old, fails
// MaxAttempts times again, forever; and since a pending batch blocks the
// reading of new entries (per-key order), no later write of the namespace
// is ever flushed: the stream fills to MaxPending and every Set then fails
// with ErrBackpressure. (Redrive's XADD+XDEL transaction is cross-slot too.)
func TestReview9ClusterDeadLetteringFails(t *testing.T) {
	ctx := context.Background()
	cl := redistest.StartCluster(t, 3)
	s := newSink()
	s.fail = func(batch []tiered.Write[string]) error {
		for _, w := range batch {
			if w.Key == "poison" {
				return errors.New("constraint violated")
			}
		}
		return nil
	}
	var logs r9Buffer
	c := newClient(t, tiered.Config{Logger: newBufferLogger(&logs), Redis: l2.Config{ClusterAddrs: cl.Addrs()}})
	cache := newCache(t, c, "wb", wbOptions(s, func(wb *tiered.WriteBehind[string]) {
		wb.MaxAttempts = 2
		wb.ClaimIdle = 300 * time.Millisecond
	}))
	if err := cache.Set(ctx, "poison", "p"); err != nil {
		t.Fatal(err)
	}
	redistest.WaitFor(t, 10*time.Second, func() bool { return cache.Stats().WriteBehind.Retried > 0 }, "poison tried")
	if err := cache.Set(ctx, "after", "a"); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(15 * time.Second)
	for time.Now().Before(deadline) { // polling conditions, with a deadline
		if _, ok := s.row("after"); ok && cache.Stats().WriteBehind.DeadLettered == 1 {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	_, flushed := s.row("after")
	t.Errorf("15 s on: poison dead-lettered %d times, a later write flushed: %v; stats %+v",
		cache.Stats().WriteBehind.DeadLettered, flushed, cache.Stats().WriteBehind)
	if line := logs.first("dead-lettering failed"); line != "" {
		t.Logf("log: %s", line)
	}
}

// r9Buffer is a log sink safe for concurrent writes.
type r9Buffer struct {
	mu  sync.Mutex
	buf []byte
}

func (b *r9Buffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.buf = append(b.buf, p...)
	return len(p), nil
}

// first returns the first logged line containing s.
func (b *r9Buffer) first(s string) string {
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, line := range strings.Split(string(b.buf), "\n") {
		if strings.Contains(line, s) {
			return line
		}
	}
	return ""
}
