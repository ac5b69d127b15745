package l2

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/sony/gobreaker/v2"
)

// ErrUnavailable is returned, wrapped, for cache commands that Strata did not
// send because the server is out of service: its circuit breaker is open, or
// it is unreachable or not yet safe to read (see Config.HealthInterval).
var ErrUnavailable = errors.New("l2: redis server unavailable")

// node guards one Redis server: a go-redis hook that refuses commands while
// the server is out of service (fenced) or its breaker is open, and reports
// failed writes, after which the server may hold data that was invalidated
// meanwhile (dirty).
type node struct {
	name string
	addr string
	cb   atomic.Pointer[gobreaker.TwoStepCircuitBreaker[struct{}]]
	bs   breakerSettings

	fenced atomic.Bool // out of service: unreachable, or dirty and not yet flushed
	why    atomic.Pointer[string]
	dirty  atomic.Bool // a write failed here; flush before serving again

	// onDirty is called once per clean-to-dirty change (nil: nothing to do).
	onDirty func(n *node)
	// onFailure is called when a command was refused or the server did not
	// answer (nil: nothing to do). A Cluster reloads its topology.
	onFailure func()

	client *redis.Client // cache traffic, through the guard
	// admin carries health checks and cleaning, with HealthTimeout: a check
	// that times out takes the server out of service, so it waits longer
	// than a cache command.
	admin *redis.Client

	mu       sync.Mutex
	pending  map[string]struct{} // keys to delete before serving again
	overflow bool                // too many, or unknown: flush the node whole

	errFenced, errOpen error

	// Owned by the health loop.
	fails, oks, behind int
	runID              string
	marked             bool // this replica keeps an out marker for the node
	flushing           atomic.Bool
}

func newNode(name, addr string, b breakerSettings, fenced bool) *node {
	n := &node{
		name:      name,
		addr:      addr,
		errFenced: fmt.Errorf("%w: %s (%s) is out of service", ErrUnavailable, name, addr),
		errOpen:   fmt.Errorf("%w: %s (%s) circuit breaker open", ErrUnavailable, name, addr),
	}
	n.fenced.Store(fenced)
	n.bs = b
	n.resetBreaker()
	return n
}

// resetBreaker gives the node a closed breaker: health checks found the
// server well, so an open breaker's cool-down would only delay it.
func (n *node) resetBreaker() {
	if n.bs.disabled {
		return
	}
	failures := n.bs.failures
	n.cb.Store(gobreaker.NewTwoStepCircuitBreaker[struct{}](gobreaker.Settings{
		Name:        n.addr,
		MaxRequests: 1,
		Timeout:     n.bs.coolDown,
		ReadyToTrip: func(c gobreaker.Counts) bool { return c.ConsecutiveFailures >= failures },
	}))
}

// serving reports whether the node takes cache traffic.
func (n *node) serving() bool { return !n.fenced.Load() }

// maintenanceKey marks a context whose commands bypass the guard: health
// checks and flushes must reach a server that cache traffic may not.
type maintenanceKey struct{}

func maintenance(ctx context.Context) context.Context {
	return context.WithValue(ctx, maintenanceKey{}, true)
}

// Unguarded returns ctx marked so that the store's commands under it pass
// every server's guard: neither refused by an open breaker or an
// out-of-service fence nor counted by the breaker. It is for background
// repairs (retried deletes and lease releases) that must land as soon as a
// server answers again, not a cool-down later; they wait out each timeout
// themselves, off callers' paths. Routing is unchanged.
func Unguarded(ctx context.Context) context.Context { return maintenance(ctx) }

// admit lets a command through, or returns why not; done must be called with
// the outcome when it is non-nil. Past the fence only the breaker applies.
func (n *node) admit(pastFence bool) (done func(error), err error) {
	if !pastFence && n.fenced.Load() {
		return nil, n.errFenced
	}
	cb := n.cb.Load()
	if cb == nil {
		return nil, nil
	}
	done, err = cb.Allow()
	if err != nil {
		return nil, n.errOpen
	}
	return done, nil
}

// DialHook implements redis.Hook.
func (n *node) DialHook(next redis.DialHook) redis.DialHook { return next }

// ProcessHook implements redis.Hook.
func (n *node) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		if ctx.Value(maintenanceKey{}) != nil || handshake(cmd) {
			return next(ctx, cmd)
		}
		// An invalidation is published even on a server out of service for
		// cache data: it may be the one telling peers of a failed write.
		done, err := n.admit(cmd.Name() == "publish")
		if err == nil {
			err = next(ctx, cmd)
		} else {
			cmd.SetErr(err)
		}
		failed := serverFailed(err)
		if done != nil {
			done(outcome(failed))
		}
		n.settle(cmd, err, failed)
		return err
	}
}

// ProcessPipelineHook implements redis.Hook.
func (n *node) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		if ctx.Value(maintenanceKey{}) != nil || allHandshake(cmds) {
			return next(ctx, cmds)
		}
		done, err := n.admit(false)
		if err == nil {
			err = next(ctx, cmds)
		} else {
			for _, c := range cmds {
				c.SetErr(err)
			}
		}
		failed := serverFailed(err)
		// Replies set each command's own error; a connection error may be
		// set on the commands only after the hooks return.
		perCmd := false
		for _, c := range cmds {
			perCmd = perCmd || c.Err() != nil
		}
		for _, c := range cmds {
			cerr := c.Err()
			if !perCmd {
				cerr = err
			}
			f := serverFailed(cerr)
			failed = failed || f
			n.settle(c, cerr, f)
		}
		if done != nil {
			done(outcome(failed))
		}
		return err
	}
}

// handshake reports whether cmd sets up a connection: go-redis sends HELLO,
// AUTH, SELECT, READONLY and CLIENT SETNAME / SETINFO / TRACKING through the
// client's hooks while dialing (initConn), inside the command that needed
// the connection. The breaker must neither refuse nor count them: the probe
// of a half-open breaker holds its one slot, and a refused handshake failed
// the probe, reopening the breaker for good. The command that dialed
// counts, with the handshake's outcome.
func handshake(cmd redis.Cmder) bool {
	switch cmd.Name() {
	case "hello", "auth", "select", "readonly":
		return true
	case "client":
		sub, _ := cmd.Args()[min(1, len(cmd.Args())-1)].(string)
		switch strings.ToLower(sub) {
		case "setname", "setinfo", "tracking":
			return true
		}
	}
	return false
}

func allHandshake(cmds []redis.Cmder) bool {
	for _, c := range cmds {
		if !handshake(c) {
			return false
		}
	}
	return len(cmds) > 0
}

// settle acts on a finished command: a write that did not happen (any error
// but a miss, error replies included) leaves the server dirty; a server
// that did not answer lets the Cluster reload its topology.
// err is the command's outcome: go-redis sets a connection error on cmd only
// after the hooks return.
func (n *node) settle(cmd redis.Cmder, err error, serverFailed bool) {
	// NOSCRIPT is answered before the script runs; go-redis then sends EVAL.
	if err != nil && !errors.Is(err, redis.Nil) && !redis.HasErrorPrefix(err, "NOSCRIPT") && n.onDirty != nil {
		if keys, all := invalidated(cmd); (len(keys) > 0 || all) && n.markDirty(keys, all) {
			n.onDirty(n)
		}
	}
	if serverFailed && n.onFailure != nil {
		n.onFailure()
	}
}

// errFailed tells a breaker that a command failed.
var errFailed = errors.New("failed")

func outcome(failed bool) error {
	if failed {
		return errFailed
	}
	return nil
}

// maxPending bounds a node's replay log; past it the node is flushed whole.
const maxPending = 10000

// markDirty records that keys (or, with all, unknown data) on the node may
// hold invalidated values. It reports whether the node was clean before.
func (n *node) markDirty(keys []string, all bool) bool {
	n.mu.Lock()
	n.overflow = n.overflow || all || len(n.pending)+len(keys) > maxPending
	if n.overflow {
		n.pending = nil // the node is flushed whole: the keys are not needed
	} else {
		if n.pending == nil {
			n.pending = make(map[string]struct{})
		}
		for _, k := range keys {
			n.pending[k] = struct{}{}
		}
	}
	n.mu.Unlock()
	return n.dirty.CompareAndSwap(false, true)
}

// takePending empties the replay log, returning its keys and whether the
// node must be flushed whole instead.
func (n *node) takePending() (keys []string, all bool) {
	n.mu.Lock()
	defer n.mu.Unlock()
	for k := range n.pending {
		keys = append(keys, k)
	}
	all = n.overflow
	n.pending, n.overflow = nil, false
	return keys, all
}

// serverFailed reports whether err means the server did not answer, which
// counts against its breaker: not a miss, not a reply error (the server
// answered), not the caller's context ending.
func serverFailed(err error) bool {
	if err == nil || errors.Is(err, redis.Nil) || errors.Is(err, context.Canceled) ||
		errors.Is(err, context.DeadlineExceeded) {
		return false
	}
	var reply redis.Error
	return !errors.As(err, &reply)
}

// invalidated returns the keys whose cached data cmd changes or removes,
// which must be deleted before the server serves again if cmd failed. all
// means cmd's effect cannot be undone key by key: the server's data must be
// flushed. Commands that invalidate nothing return neither. (A failed SADD
// of a tag membership is the writer's to handle: it does not write the
// value.)
func invalidated(cmd redis.Cmder) (keys []string, all bool) {
	args := cmd.Args()
	switch cmd.Name() {
	case "set", "del", "unlink":
		if cmd.Name() == "set" {
			// SET NX takes a load lease; failing it invalidates nothing.
			for _, a := range args {
				if s, ok := a.(string); ok && strings.EqualFold(s, "nx") {
					return nil, false
				}
			}
			args = args[:min(len(args), 2)]
		}
		for _, a := range args[1:] {
			if k, ok := a.(string); ok {
				keys = append(keys, k)
			}
		}
		return keys, len(keys) == 0
	case "evalsha", "eval":
		if len(args) < 5 {
			return nil, false
		}
		if s, _ := args[1].(string); s != writeScript.Hash() && s != writeScriptSrc {
			return nil, false
		}
		for _, a := range args[3:5] {
			if k, ok := a.(string); ok {
				keys = append(keys, k)
			}
		}
		return keys, len(keys) == 0
	}
	return nil, false
}

// breakerSettings configures the per-server circuit breaker.
type breakerSettings struct {
	disabled bool
	failures uint32
	coolDown time.Duration
}
