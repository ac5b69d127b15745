package l2

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/sony/gobreaker/v2"
)

// Each server Strata sends commands to has a guard: a go-redis hook (on
// node) that refuses cache commands while the server is out of service (the
// health watch fenced it) or its circuit breaker is open, counts their
// outcomes on the breaker, and logs the writes that failed (the node is
// dirty until they are cleaned from it).

// ErrUnavailable is returned, wrapped, for cache commands that Strata did not
// send because the server is out of service: its circuit breaker is open, or
// it is unreachable or not yet safe to read (see Config.HealthInterval).
var ErrUnavailable = errors.New("l2: redis server unavailable")

// breakerSettings configures the per-server circuit breaker.
type breakerSettings struct {
	disabled bool
	failures uint32
	coolDown time.Duration
}

func (c *Config) breaker() breakerSettings {
	return breakerSettings{
		disabled: c.BreakerFailures < 0,
		failures: uint32(max(c.BreakerFailures, 0)),
		coolDown: c.BreakerCoolDown,
	}
}

// breaker is one server's circuit breaker: failures failed commands in a row
// open it, and it then fails commands at once for coolDown before it lets one
// probe through.
type breaker struct {
	settings breakerSettings
	addr     string
	cb       atomic.Pointer[gobreaker.TwoStepCircuitBreaker[struct{}]]
	errOpen  error
}

// initBreaker sets b up closed, for the server name at addr.
func (b *breaker) initBreaker(name, addr string, s breakerSettings) {
	b.settings, b.addr = s, addr
	b.errOpen = fmt.Errorf("%w: %s (%s) circuit breaker open", ErrUnavailable, name, addr)
	b.resetBreaker()
}

// resetBreaker gives the node a closed breaker: health checks found the
// server well, so an open breaker's cool-down would only delay it.
func (b *breaker) resetBreaker() {
	if b.settings.disabled {
		return
	}
	failures := b.settings.failures
	b.cb.Store(gobreaker.NewTwoStepCircuitBreaker[struct{}](gobreaker.Settings{
		Name:        b.addr,
		MaxRequests: 1,
		Timeout:     b.settings.coolDown,
		ReadyToTrip: func(c gobreaker.Counts) bool { return c.ConsecutiveFailures >= failures },
	}))
}

// breakerState is "closed", "half-open" or "open"; "" when breakers are
// disabled.
func (b *breaker) breakerState() string {
	if cb := b.cb.Load(); cb != nil {
		return cb.State().String()
	}
	return ""
}

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
		switch prev := cmd.Err(); {
		case err == nil:
			err = next(ctx, cmd)
		case serverFailed(prev):
			// A go-redis retry (a Cluster retries a timed-out read) of a
			// command an earlier attempt sent: it may still run when the
			// server answers, so it must not read as never sent.
			err = prev
		default:
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
		switch {
		case err == nil:
			err = next(ctx, cmds)
		case len(cmds) > 0 && serverFailed(cmds[0].Err()):
			err = cmds[0].Err() // a retry of a sent pipeline, as in ProcessHook
		default:
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
	// A full write-behind stream is refused before anything is written.
	if err != nil && !errors.Is(err, redis.Nil) && !redis.HasErrorPrefix(err, "NOSCRIPT") &&
		!redis.HasErrorPrefix(err, backpressureReply) && n.onDirty != nil {
		if keys, all := invalidated(cmd, err); (len(keys) > 0 || all) && n.markDirty(keys, all) {
			n.onDirty()
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
