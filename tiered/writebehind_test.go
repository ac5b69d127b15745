package tiered_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/strata-cache/strata/internal/redistest"
	"github.com/strata-cache/strata/l2"
	"github.com/strata-cache/strata/tiered"
)

// sink is a database for write-behind tests: it records every batch, keeps
// each key's newest version, and can be gated (each Flush waits for a
// token) or failed.
type sink struct {
	mu      sync.Mutex
	batches [][]tiered.Write[string]
	rows    map[string]tiered.Write[string]
	fail    func(batch []tiered.Write[string]) error
	gate    chan struct{} // nil: no gate
	entered chan struct{} // a Flush arrived (buffered)
}

func newSink() *sink {
	return &sink{rows: map[string]tiered.Write[string]{}, entered: make(chan struct{}, 100)}
}

func (s *sink) flush(ctx context.Context, batch []tiered.Write[string]) error {
	select {
	case s.entered <- struct{}{}:
	default:
	}
	s.mu.Lock()
	gate := s.gate
	s.mu.Unlock()
	if gate != nil {
		select {
		case <-gate:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.fail != nil {
		if err := s.fail(batch); err != nil {
			return err
		}
	}
	s.batches = append(s.batches, slices.Clone(batch))
	for _, w := range batch {
		if w.Version >= s.rows[w.Key].Version { // what an idempotent Flush does
			s.rows[w.Key] = w
		}
	}
	return nil
}

func (s *sink) row(key string) (tiered.Write[string], bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	w, ok := s.rows[key]
	return w, ok
}

// writesOf lists the writes of key in the order Flush received them.
func (s *sink) writesOf(key string) []tiered.Write[string] {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []tiered.Write[string]
	for _, b := range s.batches {
		for _, w := range b {
			if w.Key == key {
				out = append(out, w)
			}
		}
	}
	return out
}

func (s *sink) setGate(g chan struct{}) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.gate = g
}

func wbOptions(s *sink, mod func(*tiered.WriteBehind[string])) tiered.Options[string] {
	wb := &tiered.WriteBehind[string]{Flush: s.flush, Interval: 10 * time.Millisecond, RetryInitial: time.Millisecond, RetryMax: 5 * time.Millisecond}
	if mod != nil {
		mod(wb)
	}
	return tiered.Options[string]{TTL: time.Hour, WriteBehind: wb}
}

// Writes of one key that wait together are flushed as one, the last; the
// writes of a key reach Flush in order across batches.
func TestWriteBehindCoalescesAndKeepsOrder(t *testing.T) {
	ctx := context.Background()
	s := newSink()
	c, _ := newRedisClient(t, tiered.Config{})
	cache := newCache(t, c, "wb", wbOptions(s, func(wb *tiered.WriteBehind[string]) { wb.BatchSize = 4 }))
	gate := make(chan struct{})
	s.setGate(gate)
	if err := cache.Set(ctx, "warm", "x"); err != nil {
		t.Fatal(err)
	}
	<-s.entered // the flusher is busy with "warm"
	for i := range 10 {
		if err := cache.Set(ctx, "k", strconv.Itoa(i)); err != nil {
			t.Fatal(err)
		}
	}
	s.setGate(nil)
	close(gate)
	redistest.WaitFor(t, 10*time.Second, func() bool { w, ok := s.row("k"); return ok && w.Value == "9" }, "the last write of k flushed")
	ws := s.writesOf("k")
	// 10 writes in batches of 4: each batch holds k once, its last write.
	if len(ws) != 3 {
		t.Errorf("k reached Flush %d times (%v), want 3 (batches of 4 writes, one per batch)", len(ws), ws)
	}
	for i := 1; i < len(ws); i++ {
		if ws[i].Version <= ws[i-1].Version {
			t.Errorf("k's writes out of order: %v", ws)
		}
	}
	if v, _ := strconv.Atoi(ws[0].Value); v != 3 {
		t.Errorf("first batch flushed k = %s, want 3 (the last of its 4)", ws[0].Value)
	}
	st := cache.Stats().WriteBehind
	if st.Flushed != 11 || st.DeadLettered != 0 || st.LostByTrim != 0 {
		t.Errorf("stats %+v, want 11 flushed entries", st)
	}
}

// A failing Flush is retried with nothing lost; after MaxAttempts the
// batch goes to the dead letters, whence Redrive sends it back.
func TestWriteBehindRetryAndDeadLetters(t *testing.T) {
	ctx := context.Background()
	s := newSink()
	failures := 2
	s.fail = func(batch []tiered.Write[string]) error {
		for _, w := range batch {
			if w.Key == "poison" {
				return errors.New("constraint violated")
			}
		}
		if failures > 0 {
			failures--
			return errors.New("database restarting")
		}
		return nil
	}
	c, _ := newRedisClient(t, tiered.Config{})
	cache := newCache(t, c, "wb", wbOptions(s, func(wb *tiered.WriteBehind[string]) { wb.MaxAttempts = 3 }))
	if err := cache.Set(ctx, "a", "1"); err != nil {
		t.Fatal(err)
	}
	redistest.WaitFor(t, 10*time.Second, func() bool { _, ok := s.row("a"); return ok }, "a flushed after retries")
	if st := cache.Stats().WriteBehind; st.Retried != 2 {
		t.Errorf("stats %+v, want 2 retries", st)
	}
	if err := cache.Set(ctx, "poison", "p"); err != nil {
		t.Fatal(err)
	}
	redistest.WaitFor(t, 10*time.Second, func() bool { return cache.Stats().WriteBehind.DeadLettered == 1 }, "poison dead-lettered")
	dead, err := cache.DeadLetters(ctx)
	if err != nil || len(dead) != 1 || dead[0].Write.Key != "poison" || dead[0].Write.Value != "p" || dead[0].Reason != "constraint violated" {
		t.Fatalf("DeadLetters = %+v, %v; want poison with its reason", dead, err)
	}
	s.mu.Lock()
	s.fail = nil
	s.mu.Unlock()
	if n, err := cache.Redrive(ctx); err != nil || n != 1 {
		t.Fatalf("Redrive = %d, %v; want 1", n, err)
	}
	redistest.WaitFor(t, 10*time.Second, func() bool { w, ok := s.row("poison"); return ok && w.Value == "p" }, "poison flushed after redrive")
	if dead, _ := cache.DeadLetters(ctx); len(dead) != 0 {
		t.Errorf("dead letters after redrive: %+v", dead)
	}
}

// Delete records a tombstone; the L2 and L1 copies are gone at once.
func TestWriteBehindTombstone(t *testing.T) {
	ctx := context.Background()
	s := newSink()
	c, _ := newRedisClient(t, tiered.Config{})
	cache := newCache(t, c, "wb", wbOptions(s, nil))
	if err := cache.Set(ctx, "k", "v"); err != nil {
		t.Fatal(err)
	}
	if err := cache.Delete(ctx, "k"); err != nil {
		t.Fatal(err)
	}
	if _, err := cache.Get(ctx, "k", nil); !errors.Is(err, tiered.ErrNotFound) {
		t.Errorf("Get after Delete: %v, want ErrNotFound", err)
	}
	redistest.WaitFor(t, 10*time.Second, func() bool { w, ok := s.row("k"); return ok && w.Deleted }, "the tombstone flushed")
	if w, _ := s.row("k"); w.Value != "" || w.At.IsZero() || w.Version == 0 {
		t.Errorf("tombstone %+v: want no value, a version and a time", w)
	}
}

// A full backlog refuses a write with ErrBackpressure, or with Block makes
// it wait for room (or its ctx).
func TestWriteBehindBackpressure(t *testing.T) {
	ctx := context.Background()
	for _, block := range []bool{false, true} {
		t.Run(fmt.Sprint("block=", block), func(t *testing.T) {
			s := newSink()
			gate := make(chan struct{})
			s.setGate(gate)
			c, _ := newRedisClient(t, tiered.Config{})
			cache := newCache(t, c, "wb", wbOptions(s, func(wb *tiered.WriteBehind[string]) { wb.MaxPending, wb.Block = 2, block }))
			for _, k := range []string{"a", "b"} {
				if err := cache.Set(ctx, k, "v"); err != nil {
					t.Fatal(err)
				}
			}
			<-s.entered // a and b read, not acknowledged: still pending
			if !block {
				if err := cache.Set(ctx, "c", "v"); !errors.Is(err, tiered.ErrBackpressure) {
					t.Fatalf("Set past MaxPending: %v, want ErrBackpressure", err)
				}
				if _, err := cache.Get(ctx, "c", nil); !errors.Is(err, tiered.ErrNotFound) {
					t.Errorf("a refused write is readable: %v", err)
				}
				if err := cache.Delete(ctx, "a"); !errors.Is(err, tiered.ErrBackpressure) {
					t.Errorf("Delete past MaxPending: %v, want ErrBackpressure", err)
				}
				close(gate)
				return
			}
			short, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
			defer cancel()
			if err := cache.Set(short, "c", "v"); !errors.Is(err, tiered.ErrBackpressure) || !errors.Is(err, context.DeadlineExceeded) {
				t.Fatalf("blocked Set past its deadline: %v, want ErrBackpressure and DeadlineExceeded", err)
			}
			done := make(chan error, 1)
			go func() { done <- cache.Set(ctx, "d", "v") }()
			s.setGate(nil)
			close(gate)
			if err := <-done; err != nil {
				t.Fatalf("blocked Set: %v, want it through once there was room", err)
			}
			redistest.WaitFor(t, 10*time.Second, func() bool { _, ok := s.row("d"); return ok }, "d flushed")
		})
	}
}

// Close flushes what is pending before it returns, even with a flush
// interval far longer than the test.
func TestWriteBehindCloseDrains(t *testing.T) {
	ctx := context.Background()
	s := newSink()
	srv := redistest.Start(t)
	c, err := tiered.NewClient(ctx, tiered.Config{Logger: quietLogger, Redis: l2.Config{Addrs: []string{srv.Addr()}, Timeout: testTimeout}})
	if err != nil {
		t.Fatal(err)
	}
	cache := newCache(t, c, "wb", wbOptions(s, func(wb *tiered.WriteBehind[string]) { wb.Interval = time.Hour }))
	<-waitIdle(cache) // the flusher's first look found nothing
	for i := range 50 {
		if err := cache.Set(ctx, "k"+strconv.Itoa(i), "v"); err != nil {
			t.Fatal(err)
		}
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	for i := range 50 {
		if _, ok := s.row("k" + strconv.Itoa(i)); !ok {
			t.Fatalf("k%d not flushed by Close", i)
		}
	}
	if n := len(s.batches); n != 1 {
		t.Errorf("%d Flush calls, want 1 (one batch of 50 at Close)", n)
	}
}

// waitIdle waits until cache's flusher has looked at its streams once.
func waitIdle(cache *tiered.Cache[string]) <-chan struct{} {
	ch := make(chan struct{})
	go func() {
		defer close(ch)
		deadline := time.Now().Add(10 * time.Second)
		for !tiered.FlusherLooked(cache) && time.Now().Before(deadline) {
			time.Sleep(time.Millisecond) // polling a condition, with a deadline
		}
	}()
	return ch
}

// NewCache refuses write-behind without L2, without Flush, or with Writer.
func TestWriteBehindConfigErrors(t *testing.T) {
	flush := func(context.Context, []tiered.Write[string]) error { return nil }
	withL2, _ := newRedisClient(t, tiered.Config{})
	withoutL2 := newClient(t, tiered.Config{})
	for _, tc := range []struct {
		name string
		c    *tiered.Client
		opts tiered.Options[string]
	}{
		{"writer and write-behind", withL2, tiered.Options[string]{WriteBehind: &tiered.WriteBehind[string]{Flush: flush},
			Writer: func(context.Context, string, string) error { return nil }}},
		{"no Flush", withL2, tiered.Options[string]{WriteBehind: &tiered.WriteBehind[string]{}}},
		{"no L2", withoutL2, tiered.Options[string]{WriteBehind: &tiered.WriteBehind[string]{Flush: flush}}},
		{"negative batch", withL2, tiered.Options[string]{WriteBehind: &tiered.WriteBehind[string]{Flush: flush, BatchSize: -1}}},
	} {
		if _, err := tiered.NewCache(tc.c, "wb", tc.opts); err == nil {
			t.Errorf("%s: NewCache accepted it", tc.name)
		}
	}
}

// On a Ring each shard keeps the writes of its keys; all reach Flush.
func TestWriteBehindRing(t *testing.T) {
	ctx := context.Background()
	shards := redistest.StartShards(t, 3)
	var addrs []string
	for _, sh := range shards {
		addrs = append(addrs, sh.Addr())
	}
	s := newSink()
	c := newClient(t, tiered.Config{Redis: l2.Config{Addrs: addrs}})
	cache := newCache(t, c, "wb", wbOptions(s, nil))
	for i := range 60 {
		if err := cache.Set(ctx, "k"+strconv.Itoa(i), strconv.Itoa(i)); err != nil {
			t.Fatal(err)
		}
	}
	redistest.WaitFor(t, 10*time.Second, func() bool {
		for i := range 60 {
			if w, ok := s.row("k" + strconv.Itoa(i)); !ok || w.Value != strconv.Itoa(i) {
				return false
			}
		}
		return true
	}, "every write flushed")
	used := 0
	for _, sh := range shards {
		if n, _ := sh.Client(t).Exists(ctx, "strata:wb#writes").Result(); n == 1 {
			used++
		}
	}
	if used != 3 {
		t.Errorf("%d shards hold a stream, want 3", used)
	}
}

// On a Redis Cluster the namespace's stream sits in its own slot, written
// in the same pipeline as each value: every write and tombstone is flushed.
func TestWriteBehindCluster(t *testing.T) {
	ctx := context.Background()
	cl := redistest.StartCluster(t, 3)
	s := newSink()
	c := newClient(t, tiered.Config{Redis: l2.Config{ClusterAddrs: cl.Addrs()}})
	cache := newCache(t, c, "wb", wbOptions(s, nil))
	for i := range 30 {
		if err := cache.Set(ctx, "k"+strconv.Itoa(i), strconv.Itoa(i)); err != nil {
			t.Fatal(err)
		}
	}
	if err := cache.Delete(ctx, "k0", "k1"); err != nil {
		t.Fatal(err)
	}
	redistest.WaitFor(t, 20*time.Second, func() bool {
		for i := range 30 {
			w, ok := s.row("k" + strconv.Itoa(i))
			if !ok || (i < 2) != w.Deleted || !w.Deleted && w.Value != strconv.Itoa(i) {
				return false
			}
		}
		return true
	}, "every write and tombstone flushed")
	if st := cache.Stats().WriteBehind; st.LostByTrim != 0 || st.DeadLettered != 0 {
		t.Errorf("stats %+v", st)
	}
}
