// Package flight runs one call per key at a time and shares its result with
// the callers that arrive while it runs; they may stop waiting when their own
// context ends.
//
// It differs from golang.org/x/sync/singleflight on purpose: the call runs on
// the first caller's goroutine (DoChan starts a goroutine per call, whose stack
// growth alone cost a fifth of an L2 hit's CPU in BenchmarkL2Hit), and a call
// ended by its caller's cancellation is not shared: the waiters run it again.
package flight

import (
	"context"
	"errors"
	"sync"
)

// errPanicked is what waiters see if the leader's fn panicked; the leader
// itself gets the panic.
var errPanicked = errors.New("flight: call panicked")

// Group deduplicates concurrent calls by key. The zero Group is ready to use.
type Group[T any] struct {
	mu    sync.Mutex
	calls map[string]*call[T]
}

type call[T any] struct {
	done chan struct{}
	val  T
	err  error
	// abandoned: the leader's ctx ended and fn failed; the result says
	// nothing about the key, so waiters retry instead of taking it.
	abandoned bool
}

// Do runs fn for key unless a call for key is already running, in which case
// it waits for that call's result (shared reports this) or for ctx to end.
// fn receives the ctx of the caller that runs it. If that caller's ctx ends
// and fn fails, the waiters do not get the failure: one of them runs fn anew.
func (g *Group[T]) Do(ctx context.Context, key string, fn func(context.Context) (T, error)) (v T, err error, shared bool) {
	for {
		g.mu.Lock()
		c, running := g.calls[key]
		if !running {
			if g.calls == nil {
				g.calls = make(map[string]*call[T])
			}
			c = &call[T]{done: make(chan struct{}), err: errPanicked}
			g.calls[key] = c
			g.mu.Unlock()
			g.run(ctx, key, c, fn)
			return c.val, c.err, false
		}
		g.mu.Unlock()
		select {
		case <-c.done:
			if c.abandoned && ctx.Err() == nil {
				continue
			}
			return c.val, c.err, true
		case <-ctx.Done():
			var zero T
			return zero, ctx.Err(), true
		}
	}
}

func (g *Group[T]) run(ctx context.Context, key string, c *call[T], fn func(context.Context) (T, error)) {
	defer func() {
		g.mu.Lock()
		delete(g.calls, key)
		g.mu.Unlock()
		close(c.done)
	}()
	c.val, c.err = fn(ctx)
	c.abandoned = c.err != nil && ctx.Err() != nil
}
