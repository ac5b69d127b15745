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
	calls map[string]*Call[T]
}

// Do runs fn for key unless a call for key is already running, in which case
// it waits for that call's result (shared reports this) or for ctx to end.
// fn receives the ctx of the caller that runs it. If that caller's ctx ends
// and fn fails, the waiters do not get the failure: one of them runs fn anew.
func (g *Group[T]) Do(ctx context.Context, key string, fn func(context.Context) (T, error)) (v T, err error, shared bool) {
	for {
		c, leader := g.Claim(key)
		if leader {
			g.run(ctx, key, c, fn)
			return c.val, c.err, false
		}
		v, err, retry := c.Wait(ctx)
		if !retry {
			return v, err, true
		}
	}
}

func (g *Group[T]) run(ctx context.Context, key string, c *Call[T], fn func(context.Context) (T, error)) {
	var v T
	err := errPanicked
	defer func() { g.Finish(key, c, v, err, err != nil && ctx.Err() != nil) }()
	v, err = fn(ctx)
}

// Claim makes the caller the leader of key's call if none is running: it must
// then Finish the returned call. Otherwise it returns the running call, to
// Wait on. Batch callers use it to lead some keys and wait on others.
func (g *Group[T]) Claim(key string) (c *Call[T], leader bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if c, ok := g.calls[key]; ok {
		return c, false
	}
	if g.calls == nil {
		g.calls = make(map[string]*Call[T])
	}
	c = &Call[T]{done: make(chan struct{}), err: errPanicked}
	g.calls[key] = c
	return c, true
}

// Finish ends the leader's call c for key with v and err and wakes its
// waiters. abandoned says the result came from the leader giving up (its ctx
// ended): waiters then retry instead of taking it.
func (g *Group[T]) Finish(key string, c *Call[T], v T, err error, abandoned bool) {
	c.val, c.err, c.abandoned = v, err, abandoned
	g.mu.Lock()
	if g.calls[key] == c { // Forget may have let a newer call in
		delete(g.calls, key)
	}
	g.mu.Unlock()
	close(c.done)
}

// Forget detaches key's running call, if any: callers arriving from now on
// start a new call instead of joining it. A write calls it, so that a read
// starting after the write does not take a result read before it. The
// detached call still finishes for the callers already waiting on it.
func (g *Group[T]) Forget(key string) {
	g.mu.Lock()
	defer g.mu.Unlock()
	delete(g.calls, key)
}

// ForgetAll is Forget for every key: an invalidation that cannot name its
// keys (a tag, a pattern, a whole namespace) calls it.
func (g *Group[T]) ForgetAll() {
	g.mu.Lock()
	defer g.mu.Unlock()
	clear(g.calls)
}

// Call is one running call.
type Call[T any] struct {
	done chan struct{}
	val  T
	err  error
	// abandoned: the leader's ctx ended and fn failed; the result says
	// nothing about the key, so waiters retry instead of taking it.
	abandoned bool
}

// Wait waits for c's result or for ctx to end. retry reports an abandoned
// call: the caller should claim the key again.
func (c *Call[T]) Wait(ctx context.Context) (v T, err error, retry bool) {
	select {
	case <-c.done:
		if c.abandoned && ctx.Err() == nil {
			return v, nil, true
		}
		return c.val, c.err, false
	case <-ctx.Done():
		return v, ctx.Err(), false
	}
}
