package flight

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
)

func TestConcurrentCallsShareOneRun(t *testing.T) {
	var g Group[int]
	var runs atomic.Int32
	release := make(chan struct{})
	started := make(chan struct{})
	var wg sync.WaitGroup
	results := make(chan int, 10)
	wg.Go(func() {
		v, _, _ := g.Do(context.Background(), "k", func(context.Context) (int, error) {
			runs.Add(1)
			close(started)
			<-release
			return 42, nil
		})
		results <- v
	})
	<-started
	for range 9 {
		wg.Go(func() {
			v, _, _ := g.Do(context.Background(), "k", func(context.Context) (int, error) { runs.Add(1); return 0, nil })
			results <- v
		})
	}
	// Waiters may not all have joined yet; those that join late run fn
	// themselves, which is allowed. The leader's result is 42 for everyone
	// that joined.
	close(release)
	wg.Wait()
	close(results)
	for v := range results {
		if v != 42 && v != 0 {
			t.Fatalf("got %d", v)
		}
	}
	if runs.Load() < 1 {
		t.Fatal("fn never ran")
	}
}

func TestWaiterLeavesOnItsCancel(t *testing.T) {
	var g Group[int]
	release := make(chan struct{})
	started := make(chan struct{})
	go func() {
		_, _, _ = g.Do(context.Background(), "k", func(context.Context) (int, error) {
			close(started)
			<-release
			return 1, nil
		})
	}()
	<-started
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err, shared := g.Do(ctx, "k", func(context.Context) (int, error) { return 2, nil }); !errors.Is(err, context.Canceled) || !shared {
		t.Fatalf("err %v shared %v, want context.Canceled while waiting", err, shared)
	}
	close(release)
}

func TestLeaderCancellationIsNotShared(t *testing.T) {
	var g Group[int]
	leaderCtx, cancel := context.WithCancel(context.Background())
	started := make(chan struct{})
	leaderErr := make(chan error, 1)
	go func() {
		_, err, _ := g.Do(leaderCtx, "k", func(ctx context.Context) (int, error) {
			close(started)
			<-ctx.Done()
			return 0, ctx.Err()
		})
		leaderErr <- err
	}()
	<-started
	waiter := make(chan int, 1)
	joined := make(chan struct{})
	go func() {
		close(joined)
		v, err, _ := g.Do(context.Background(), "k", func(context.Context) (int, error) { return 7, nil })
		if err != nil {
			v = -1
		}
		waiter <- v
	}()
	<-joined
	cancel()
	if err := <-leaderErr; !errors.Is(err, context.Canceled) {
		t.Fatalf("leader err = %v", err)
	}
	if v := <-waiter; v != 7 {
		t.Fatalf("waiter got %d, want its own run's 7", v)
	}
}

func TestPanicReachesLeaderAndFailsWaiters(t *testing.T) {
	var g Group[int]
	defer func() {
		if recover() == nil {
			t.Fatal("leader did not see the panic")
		}
		if _, err, _ := g.Do(context.Background(), "k", func(context.Context) (int, error) { return 3, nil }); err != nil {
			t.Fatalf("key stuck after a panic: %v", err)
		}
	}()
	_, _, _ = g.Do(context.Background(), "k", func(context.Context) (int, error) { panic("boom") })
}
