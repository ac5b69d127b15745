package l2

import (
	"crypto/sha1"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/redis/go-redis/v9"
	"github.com/strata-cache/strata/l2/internal/health"
)

// node is one Redis server Strata sends commands to, and who writes each of
// its parts: the guard hook (breaker.go) counts outcomes on the breaker,
// which the health watch (health.go) resets when the server returns; the
// watch sets the fence, under its lock, and the hook reads it; the hook
// (and MarkDirty) log failed writes, and the watch's cleaning empties the
// log. What the watch decides with is its own (package health).
type node struct {
	name string
	addr string

	client *redis.Client // cache traffic, through the guard
	// admin carries health checks and cleaning, with HealthTimeout: a check
	// that times out takes the server out of service, so it waits longer
	// than a cache command.
	admin *redis.Client

	breaker
	fenced    atomic.Bool // out of service: unreachable, or dirty and not yet cleaned
	why       atomic.Pointer[string]
	errFenced error
	dirtyLog

	// onDirty is called once per clean-to-dirty change (nil: nothing to do).
	onDirty func()
	// onFailure is called when a command was refused or the server did not
	// answer (nil: nothing to do). A Cluster reloads its topology.
	onFailure func()
}

func newNode(name, addr string, b breakerSettings, fenced bool) *node {
	n := &node{
		name:      name,
		addr:      addr,
		errFenced: fmt.Errorf("%w: %s (%s) is out of service", ErrUnavailable, name, addr),
	}
	n.initBreaker(name, addr, b)
	n.fenced.Store(fenced)
	return n
}

// serving reports whether the node takes cache traffic.
func (n *node) serving() bool { return !n.fenced.Load() }

// dirtyLog records the writes that failed on a server, which may since hold
// values that were invalidated meanwhile: it is cleaned of them (or flushed
// whole) before it serves again.
type dirtyLog struct {
	dirty    atomic.Bool // a write failed here; clean before serving again
	mu       sync.Mutex
	pending  map[string]struct{} // keys to delete before serving again
	overflow bool                // too many, or unknown: flush the node whole
}

// maxPending bounds a node's replay log; past it the node is flushed whole.
const maxPending = 10000

// markDirty records that keys (or, with all, unknown data) on the node may
// hold invalidated values. It reports whether the node was clean before.
func (l *dirtyLog) markDirty(keys []string, all bool) bool {
	l.mu.Lock()
	l.overflow = l.overflow || all || len(l.pending)+len(keys) > maxPending
	if l.overflow {
		l.pending = nil // the node is flushed whole: the keys are not needed
	} else {
		if l.pending == nil {
			l.pending = make(map[string]struct{})
		}
		for _, k := range keys {
			l.pending[k] = struct{}{}
		}
	}
	l.mu.Unlock()
	return l.dirty.CompareAndSwap(false, true)
}

// takePending empties the replay log, returning its keys and whether the
// node must be flushed whole instead.
func (l *dirtyLog) takePending() (keys []string, all bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for k := range l.pending {
		keys = append(keys, k)
	}
	all = l.overflow
	l.pending, l.overflow = nil, false
	return keys, all
}

// cleaned clears the dirty flag after a cleaning of what takePending
// returned, unless more was logged since; it reports whether it did.
func (l *dirtyLog) cleaned() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.pending) > 0 || l.overflow {
		return false
	}
	l.dirty.Store(false)
	return true
}

// dirt is the log as the health decisions see it.
func (l *dirtyLog) dirt() health.Dirt {
	l.mu.Lock()
	defer l.mu.Unlock()
	switch {
	case !l.dirty.Load():
		return health.NoDirt
	case l.overflow:
		return health.DirtyAll
	}
	return health.DirtyKeys
}

// invalidatesAll reports whether a script (its SHA-1 for EVALSHA, its
// source for EVAL) is one whose failure leaves an invalidation of unknown
// keys undone on the server: a tag pop (the keys are the set's), a tag
// fence's advance, or a namespace version's bump on a shard (a Clear). A
// server that missed one is flushed before it serves again, as after a
// pattern deletion it missed (review 10: it served a tag's and a Clear's
// invalidated entries on its return).
func invalidatesAll(name string, script, key any) bool {
	s, _ := script.(string)
	if name == "eval" {
		sum := sha1.Sum([]byte(s))
		s = hex.EncodeToString(sum[:])
	}
	switch s {
	case popTagScript.Hash(), advanceScript.Hash():
		return true
	case setMaxScript.Hash(): // also raises routing epochs, which invalidate nothing
		k, _ := key.(string)
		return strings.HasSuffix(k, versionSuffix)
	}
	return false
}

// invalidated returns the keys whose cached data cmd changes or removes,
// which must be deleted before the server serves again if cmd failed. all
// means cmd's effect cannot be undone key by key: the server's data must be
// flushed. Commands that invalidate nothing return neither. (A failed SADD
// of a tag membership is the writer's to handle: it does not write the
// value.)
//
// err is how cmd failed. A command of unknown keys (a tag pop, a fence, a
// version bump) that the server answered with an error reply ran nothing:
// its caller got the error and retries, so the server needs no flush; one
// that did not reach the server, or whose reply was lost, may be undone or
// half done there.
func invalidated(cmd redis.Cmder, err error) (keys []string, all bool) {
	args := cmd.Args()
	var reply redis.Error
	mayHaveRun := !errors.As(err, &reply) // not an error reply: it may be undone or half done
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
	case "incr":
		// A single node's namespace version (BumpVersion): the Clear's keys
		// are every key of the old version.
		if len(args) == 2 {
			if k, ok := args[1].(string); ok && strings.HasSuffix(k, versionSuffix) {
				return nil, mayHaveRun
			}
		}
		return nil, false
	case "evalsha", "eval":
		if len(args) >= 4 && invalidatesAll(cmd.Name(), args[1], args[3]) {
			return nil, mayHaveRun
		}
		if len(args) < 5 {
			return nil, false
		}
		switch s, _ := args[1].(string); s {
		case writeScript.Hash(), writeScriptSrc, appendScript.Hash(), appendScriptSrc:
		default:
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
