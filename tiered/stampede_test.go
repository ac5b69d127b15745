package tiered_test

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/strata-cache/strata/internal/redistest"
	"github.com/strata-cache/strata/l2"
	"github.com/strata-cache/strata/tiered"
)

// replicas returns n caches of one namespace, each on its own client, over
// the same Redis.
func replicas(t *testing.T, n int, redis l2.Config, opts tiered.Options[string]) []*tiered.Cache[string] {
	t.Helper()
	caches := make([]*tiered.Cache[string], n)
	for i := range caches {
		caches[i] = newCache(t, newClient(t, tiered.Config{Redis: redis}), "users", opts)
	}
	return caches
}

// gate is a loader that blocks every call until opened, counting calls.
type gate struct {
	calls atomic.Int64
	open  chan struct{}
	value string
}

func newGate(value string) *gate { return &gate{open: make(chan struct{}), value: value} }

func (g *gate) load(ctx context.Context, _ string) (string, error) {
	g.calls.Add(1)
	select {
	case <-g.open:
		return g.value, nil
	case <-ctx.Done():
		return "", ctx.Err()
	}
}

// stampede runs perReplica concurrent Gets of one cold key on each cache and
// returns their errors once the gate opens after every goroutine started.
func stampede(t *testing.T, caches []*tiered.Cache[string], perReplica int, g *gate) []error {
	t.Helper()
	var started, done sync.WaitGroup
	errs := make(chan error, len(caches)*perReplica)
	for _, c := range caches {
		for range perReplica {
			started.Add(1)
			done.Go(func() {
				started.Done()
				v, err := c.Get(context.Background(), "cold", g.load)
				if err == nil && v != g.value {
					err = errors.New("got " + v)
				}
				errs <- err
			})
		}
	}
	started.Wait()
	redistest.WaitFor(t, 10*time.Second, func() bool { return g.calls.Load() > 0 }, "a load starts")
	close(g.open)
	done.Wait()
	close(errs)
	var out []error
	for err := range errs {
		out = append(out, err)
	}
	return out
}

func TestStampedeOneLoadPerCluster(t *testing.T) {
	srv := redistest.Start(t)
	caches := replicas(t, 3, l2.Config{Addrs: []string{srv.Addr()}}, tiered.Options[string]{})
	g := newGate("value")
	for _, err := range stampede(t, caches, 100, g) {
		if err != nil {
			t.Fatal(err)
		}
	}
	if n := g.calls.Load(); n != 1 {
		for i, c := range caches {
			t.Logf("replica %d: %+v", i, c.Stats())
		}
		t.Errorf("loader ran %d times for 300 Gets on 3 replicas, want 1", n)
	}
}

func TestStampedeWithRedisDownOneLoadPerReplica(t *testing.T) {
	srv := redistest.Start(t)
	caches := replicas(t, 3, l2.Config{Addrs: []string{srv.Addr()}}, tiered.Options[string]{})
	srv.Kill()
	g := newGate("value")
	for _, err := range stampede(t, caches, 100, g) {
		if err != nil {
			t.Fatal(err)
		}
	}
	if n := g.calls.Load(); n < 1 || n > 3 {
		for i, c := range caches {
			t.Logf("replica %d: %+v", i, c.Stats())
		}
		t.Errorf("loader ran %d times for 3 replicas with Redis down, want at most one per replica", n)
	}
}

func TestCancelledHolderReleasesLease(t *testing.T) {
	srv := redistest.Start(t)
	// A lease that outlives the test: only the release can let B in.
	caches := replicas(t, 2, l2.Config{Addrs: []string{srv.Addr()}}, tiered.Options[string]{LeaseTTL: time.Minute})
	holder := newGate("never")
	ctx, cancel := context.WithCancel(context.Background())
	holderErr := make(chan error, 1)
	go func() {
		_, err := caches[0].Get(ctx, "k", holder.load)
		holderErr <- err
	}()
	redistest.WaitFor(t, 10*time.Second, func() bool { return holder.calls.Load() == 1 }, "holder loading")
	other := &countingLoader{}
	otherDone := make(chan error, 1)
	go func() {
		v, err := caches[1].Get(context.Background(), "k", other.load)
		if err == nil && v != "v:k" {
			err = errors.New("got " + v)
		}
		otherDone <- err
	}()
	redistest.WaitFor(t, 10*time.Second, func() bool { return caches[1].Stats().LeaseWaits == 1 }, "replica B waiting on the lease")
	cancel()
	if err := <-holderErr; !errors.Is(err, context.Canceled) {
		t.Fatalf("holder returned %v", err)
	}
	select {
	case err := <-otherDone:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("replica B still waiting: the cancelled holder did not release its lease")
	}
	if other.calls.Load() != 1 {
		t.Errorf("replica B loaded %d times, want 1", other.calls.Load())
	}
}

func TestStuckHolderDelaysOthersAtMostLeaseTTL(t *testing.T) {
	srv := redistest.Start(t)
	const leaseTTL = 300 * time.Millisecond
	caches := replicas(t, 2, l2.Config{Addrs: []string{srv.Addr()}}, tiered.Options[string]{LeaseTTL: leaseTTL, LeaseWait: time.Minute})
	stuck := newGate("never")
	defer close(stuck.open)
	go func() { _, _ = caches[0].Get(context.Background(), "k", stuck.load) }()
	redistest.WaitFor(t, 10*time.Second, func() bool { return stuck.calls.Load() == 1 }, "holder loading")
	start := time.Now()
	other := &countingLoader{}
	v, err := caches[1].Get(context.Background(), "k", other.load)
	if err != nil || v != "v:k" {
		t.Fatalf("replica B Get = %q, %v", v, err)
	}
	t.Logf("replica B waited %v for a stuck holder with LeaseTTL %v", time.Since(start), leaseTTL)
	if other.calls.Load() != 1 || caches[1].Stats().LeaseTimeouts != 0 {
		t.Errorf("replica B: %d loads, stats %+v; want it to take the expired lease, not time out", other.calls.Load(), caches[1].Stats())
	}
}

func TestWriteDuringSlowLoadWins(t *testing.T) {
	for _, write := range []string{"set", "delete"} {
		t.Run(write, func(t *testing.T) {
			ctx := context.Background()
			srv := redistest.Start(t)
			redis := l2.Config{Addrs: []string{srv.Addr()}}
			caches := replicas(t, 2, redis, tiered.Options[string]{})
			slow := newGate("old")
			got := make(chan string, 1)
			go func() {
				v, _ := caches[0].Get(ctx, "k", slow.load)
				got <- v
			}()
			redistest.WaitFor(t, 10*time.Second, func() bool { return slow.calls.Load() == 1 }, "slow load running")
			var err error
			if write == "set" {
				err = caches[1].Set(ctx, "k", "new")
			} else {
				err = caches[1].Delete(ctx, "k")
			}
			if err != nil {
				t.Fatal(err)
			}
			close(slow.open)
			if v := <-got; v != "old" {
				t.Fatalf("the loading caller got %q, want its own load", v)
			}
			late := newCache(t, newClient(t, tiered.Config{Redis: redis}), "users", tiered.Options[string]{})
			for i, c := range append(caches, late) {
				v, err := c.Get(ctx, "k", nil)
				switch {
				case write == "set" && (err != nil || v != "new"):
					t.Errorf("replica %d: Get = %q, %v; want new", i, v, err)
				case write == "delete" && !errors.Is(err, tiered.ErrNotFound):
					t.Errorf("replica %d: Get = %q, %v; want ErrNotFound", i, v, err)
				}
			}
			if s := caches[0].Stats(); s.FillsRejected != 1 {
				t.Errorf("stats %+v, want the stale fill rejected", s)
			}
		})
	}
}

func TestGetManyCoalescesWithConcurrentGet(t *testing.T) {
	ctx := context.Background()
	c, _ := newRedisClient(t, tiered.Config{})
	cache := newCache(t, c, "users", tiered.Options[string]{})
	slow := newGate("v:k1")
	getDone := make(chan error, 1)
	go func() {
		_, err := cache.Get(ctx, "k1", slow.load)
		getDone <- err
	}()
	redistest.WaitFor(t, 10*time.Second, func() bool { return slow.calls.Load() == 1 }, "Get loading k1")
	rec := &batchRecorder{}
	manyDone := make(chan map[string]string, 1)
	go func() {
		m, err := cache.GetMany(ctx, []string{"k1", "k2", "k3"}, rec.load)
		if err != nil {
			t.Error(err)
		}
		manyDone <- m
	}()
	redistest.WaitFor(t, 10*time.Second, func() bool {
		rec.mu.Lock()
		defer rec.mu.Unlock()
		return len(rec.calls) == 1
	}, "batch load of the other keys")
	close(slow.open)
	m := <-manyDone
	if err := <-getDone; err != nil {
		t.Fatal(err)
	}
	if len(m) != 3 || m["k1"] != "v:k1" || m["k2"] != "v:k2" {
		t.Fatalf("GetMany = %v", m)
	}
	if len(rec.calls) != 1 || len(rec.calls[0]) != 2 || rec.calls[0][0] != "k2" || rec.calls[0][1] != "k3" {
		t.Errorf("batch loader calls %v, want one with k2 and k3 only", rec.calls)
	}
	if slow.calls.Load() != 1 {
		t.Errorf("k1 loaded %d times, want 1", slow.calls.Load())
	}
}

func TestGetManyStampedeAcrossReplicas(t *testing.T) {
	ctx := context.Background()
	srv := redistest.Start(t)
	caches := replicas(t, 3, l2.Config{Addrs: []string{srv.Addr()}}, tiered.Options[string]{})
	keys := []string{"a", "b", "c", "d"}
	var mu sync.Mutex
	loaded := map[string]int{}
	release := make(chan struct{})
	load := func(_ context.Context, ks []string) (map[string]string, error) {
		mu.Lock()
		for _, k := range ks {
			loaded[k]++
		}
		mu.Unlock()
		<-release
		out := map[string]string{}
		for _, k := range ks {
			out[k] = "v:" + k
		}
		return out, nil
	}
	var wg sync.WaitGroup
	for _, c := range caches {
		for range 10 {
			wg.Go(func() {
				m, err := c.GetMany(ctx, keys, load)
				if err != nil || len(m) != len(keys) {
					t.Errorf("GetMany = %v, %v", m, err)
				}
			})
		}
	}
	redistest.WaitFor(t, 10*time.Second, func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(loaded) == len(keys)
	}, "every key being loaded")
	close(release)
	wg.Wait()
	for k, n := range loaded {
		if n != 1 {
			t.Errorf("key %s loaded %d times across 30 GetMany calls on 3 replicas, want 1", k, n)
		}
	}
}
