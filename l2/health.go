package l2

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
)

// health watches the servers of a single node or a Ring and decides which
// serve. Every HealthInterval it reads each server once on its own client,
// bounded by HealthTimeout: the routing epoch, the run ID and, on a Ring, the
// out markers (one pipeline, which doubles as the ping).
//
//   - Two failed checks in a row, a failed write, a new run ID or (on a Ring)
//     another replica's out marker take a server out of service: cache
//     commands to it fail fast, and on a Ring its keys move to stand-in
//     shards, under a new epoch's stand-in prefix with at most StandInTTL to
//     live.
//   - A server that is out returns only after two good checks in a row (so
//     the decision rests on epochs read after it answered again), with no
//     live marker (a replica that reaches it again removes its own at once,
//     so markers hold it out only while some replica cannot reach it), and
//     only once it is safe: a single node has the keys whose
//     writes failed deleted from it (replay), or everything it holds under the
//     prefix when they are not all known or it restarted (flush); a Ring
//     shard is always flushed, and then stamped with the current epoch.
//   - The replica that finds a shard unreachable opens the new epoch and
//     stamps it on the serving shards, so other replicas, and replicas
//     started later, see the absent shard behind and flush it before it
//     serves again.
type health struct {
	nodes    []*node
	set      *shardSet // nil for a single node
	prefix   string
	epochKey string
	id       string // this replica's name on the out markers it keeps
	interval time.Duration
	timeout  time.Duration
	watcher  Watcher // nil: no one is told
	parse    func(full string) (ns, key string, ok bool)

	mu      sync.Mutex // orders fencing, joining and epoch changes
	changes uint64     // routing changes made here, under mu
	quiet   bool       // during the first round: joining at start is no change
	closed  bool

	stop   chan struct{}
	ctx    context.Context // ends at close: cleaning stops
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// markScript: KEYS markers; ARGV id, ttl in ms. Sets this replica's marker
// in each, to expire ttl from now in the server's clock, and keeps the key
// at least that long: never shorter, since replicas with other health
// settings hold longer markers in the same key.
var markScript = redis.NewScript(`
local t = redis.call('TIME')
local now = t[1] * 1000 + math.floor(t[2] / 1000)
local ttl = tonumber(ARGV[2])
for _, k in ipairs(KEYS) do
  if redis.call('TYPE', k).ok ~= 'string' then
    redis.call('HSET', k, ARGV[1], now + ttl)
    if redis.call('PTTL', k) < ttl then redis.call('PEXPIRE', k, ttl) end
  end
end
return 1`)

// liveScript: KEYS markers. For each, 1 if some replica's marker in it is
// live, else 0; lapsed markers are removed.
var liveScript = redis.NewScript(`
local t = redis.call('TIME')
local now = t[1] * 1000 + math.floor(t[2] / 1000)
local out = {}
for i, k in ipairs(KEYS) do
  local typ = redis.call('TYPE', k).ok
  out[i] = 0
  if typ == 'string' then
    out[i] = 1
  elseif typ == 'hash' then
    local kv = redis.call('HGETALL', k)
    for j = 1, #kv, 2 do
      if tonumber(kv[j + 1]) > now then out[i] = 1 else redis.call('HDEL', k, kv[j]) end
    end
  end
end
return out`)

// unmarkScript: KEYS markers; ARGV id. Removes this replica's marker from
// each: other replicas' stay.
var unmarkScript = redis.NewScript(`
for _, k in ipairs(KEYS) do
  if redis.call('TYPE', k).ok == 'hash' then redis.call('HDEL', k, ARGV[1]) end
end
return 1`)

// outMarkerTTL is how long a marker outlives the last round that set it.
func (h *health) outMarkerTTL() time.Duration { return max(time.Second, 4*h.interval+2*h.timeout) }

// setMaxScript: KEYS epoch; ARGV n. Raises the epoch to n, never lowers it.
var setMaxScript = redis.NewScript(`
local cur = tonumber(redis.call('GET', KEYS[1]) or '0')
if cur < tonumber(ARGV[1]) then redis.call('SET', KEYS[1], ARGV[1]) end
return 1`)

// epoch is the routing epoch; a single node has no routing, and stays at 0.
func (h *health) epoch() uint64 {
	if h.set != nil {
		return h.set.epoch.Load()
	}
	return 0
}

func (h *health) setEpoch(e uint64) {
	if h.set != nil {
		h.set.epoch.Store(e)
	}
}

// start runs a first check, so servers that answer serve at once, and then
// checks every interval until close.
func (h *health) start() {
	h.stop = make(chan struct{})
	h.ctx, h.cancel = context.WithCancel(maintenance(context.Background()))
	for _, n := range h.nodes {
		n.onDirty = func() { h.dirtied(n) }
	}
	h.quiet = true
	h.round(true)
	h.mu.Lock()
	h.quiet = false
	h.mu.Unlock()
	h.wg.Go(func() {
		t := time.NewTicker(h.interval)
		defer t.Stop()
		for {
			select {
			case <-h.stop:
				return
			case <-t.C:
				h.round(false)
			}
		}
	})
}

func (h *health) close() {
	h.mu.Lock()
	h.closed = true
	h.mu.Unlock()
	close(h.stop)
	h.cancel()
	h.wg.Wait()
	// A closed replica holds no shard out: its markers go (the rounds are
	// over, so n.marked is read alone).
	var mine []string
	for _, n := range h.nodes {
		if n.marked {
			mine = append(mine, outKey(h.prefix, n.name))
		}
	}
	if len(mine) > 0 {
		h.holdOut(maintenance(context.Background()), nil, mine, 0)
	}
	for _, n := range h.nodes {
		if n.admin != nil {
			_ = n.admin.Close()
		}
	}
}

type probe struct {
	epoch uint64
	runID string // changes when the server restarts
	out   []bool // per node: this server holds a live out marker for it
	err   error
}

// round checks every server once and acts on the result.
func (h *health) round(first bool) {
	h.mu.Lock()
	changes := h.changes
	h.mu.Unlock()
	var markers []string
	if h.set != nil {
		for _, n := range h.nodes {
			markers = append(markers, outKey(h.prefix, n.name))
		}
	}
	res := make([]probe, len(h.nodes))
	var wg sync.WaitGroup
	for i, n := range h.nodes {
		wg.Go(func() {
			ctx, cancel := context.WithTimeout(h.ctx, h.timeout)
			defer cancel()
			res[i] = h.probe(ctx, n, markers)
		})
	}
	wg.Wait()

	h.mu.Lock()
	defer h.mu.Unlock()
	if h.changes != changes || h.closed {
		return // this replica changed the routing meanwhile: the epochs read are old
	}
	top := h.epoch()
	heldOut := make([]bool, len(h.nodes))
	for _, r := range res {
		if r.err != nil {
			continue
		}
		top = max(top, r.epoch)
		for j, out := range r.out {
			heldOut[j] = heldOut[j] || out
		}
	}
	if h.set != nil && top > h.epoch() {
		h.setEpoch(top)
		h.set.rebuild()
		h.changed("routing epoch advanced")
	}
	var unreachable, reached []string
	for i, n := range h.nodes {
		r := res[i]
		if r.err != nil {
			n.oks = 0
			if n.fails++; n.serving() && n.fails >= 2 {
				h.fenceLocked(n, "unreachable: "+r.err.Error(), true)
			}
			if h.set != nil && !n.serving() && n.fails >= 2 {
				unreachable = append(unreachable, markers[i])
				n.marked = true
			}
			continue
		}
		n.fails = 0
		n.oks++
		if n.marked {
			// Reached again: this replica's marker would only hold the
			// shard out until it lapses. A replica that still cannot
			// reach it keeps its own (the last one set stays).
			n.marked = false
			reached = append(reached, markers[i])
		}
		if n.runID != "" && r.runID != "" && r.runID != n.runID {
			// Restarted: it may have reloaded a snapshot older than writes
			// it acknowledged, or missed writes while down.
			n.markDirty(nil, true)
			h.fenceLocked(n, "restarted", true)
		}
		if r.runID != "" {
			n.runID = r.runID
		}
		behind := h.set != nil && r.epoch < top
		if n.serving() {
			// Behind twice in a row: the shard missed a routing change (once
			// may be another replica's stamps still on their way).
			if n.behind = n.behind + 1; !behind {
				n.behind = 0
			}
			switch {
			case n.dirty.Load():
				h.fenceLocked(n, "a write failed", true)
			case n.behind >= 2:
				n.markDirty(nil, true)
				h.fenceLocked(n, "missed a routing change", false)
			case heldOut[i]:
				h.fenceLocked(n, "another replica cannot reach it", false)
			}
			continue
		}
		if n.flushing.Load() || (!first && n.oks < 2) || heldOut[i] {
			continue
		}
		if n.dirty.Load() || behind {
			if behind {
				n.markDirty(nil, true)
			}
			n.flushing.Store(true)
			h.wg.Go(func() { h.clean(n, top) })
			continue
		}
		h.joinLocked(n, "answering again")
	}
	if len(unreachable) > 0 || len(reached) > 0 {
		epoch := h.epoch()
		h.wg.Go(func() { h.holdOut(h.ctx, unreachable, reached, epoch) })
	}
}

// probe reads n's epoch, its run ID and, on a Ring, the out markers it
// holds, in one round trip.
func (h *health) probe(ctx context.Context, n *node, markers []string) probe {
	var epoch *redis.SliceCmd
	var live *redis.Cmd
	var info *redis.StringCmd
	_, _ = n.admin.Pipelined(ctx, func(p redis.Pipeliner) error {
		// MGET, not GET: tests count the GETs of cache reads.
		epoch = p.MGet(ctx, h.epochKey)
		if len(markers) > 0 {
			live = liveScript.Eval(ctx, p, markers)
		}
		info = p.Info(ctx, "server")
		return nil
	})
	// A server without INFO (a Redis-compatible one) has no run ID to watch.
	err := epoch.Err()
	if err != nil {
		return probe{err: err}
	}
	p := probe{out: make([]bool, len(markers)), runID: infoField(info.Val(), "run_id")}
	if v, ok := epoch.Val()[0].(string); ok {
		if p.epoch, err = strconv.ParseUint(v, 10, 64); err != nil {
			return probe{err: err}
		}
	}
	if live != nil {
		marks, err := live.Int64Slice()
		if err == nil && len(marks) != len(markers) {
			err = fmt.Errorf("l2: out markers: %d answers for %d", len(marks), len(markers))
		}
		if err != nil {
			return probe{err: err}
		}
		for j, m := range marks {
			p.out[j] = m == 1
		}
	}
	return p
}

// infoField returns the value of field in an INFO reply.
func infoField(info, field string) string {
	for line := range strings.Lines(info) {
		if v, ok := strings.CutPrefix(line, field+":"); ok {
			return strings.TrimSpace(v)
		}
	}
	return ""
}

// holdOut refreshes this replica's out markers for the shards it cannot
// reach, and removes its markers for shards it reaches again, on every
// serving shard.
func (h *health) holdOut(ctx context.Context, markers, reached []string, epoch uint64) {
	ttl := h.outMarkerTTL()
	parent := ctx
	for _, n := range h.nodes {
		if !n.serving() {
			continue
		}
		ctx, cancel := context.WithTimeout(parent, h.timeout)
		_, _ = n.admin.Pipelined(ctx, func(p redis.Pipeliner) error {
			if len(markers) > 0 {
				// The epoch first: a replica that sees the marker must not
				// route to stand-in keys of an earlier outage.
				setMaxScript.Eval(ctx, p, []string{h.epochKey}, epoch)
				markScript.Eval(ctx, p, markers, h.id, ttl.Milliseconds())
			}
			if len(reached) > 0 {
				unmarkScript.Eval(ctx, p, reached, h.id)
			}
			return nil
		})
		cancel()
	}
}

// dirtied takes a node whose write failed out of service until it is clean.
func (h *health) dirtied(n *node) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.fenceLocked(n, "a write failed", true)
}

// fenceLocked takes n out of service. On a Ring it opens a new routing
// epoch first, so keys moved to stand-ins never meet copies of an earlier
// outage, and stamps it on the serving shards (in the background) for the
// other replicas. n is flushed before it returns.
//
// advance is false when another replica already opened the epoch for this
// outage (n is behind, or held out by its marker): advancing again would
// only make every replica flush n once more.
func (h *health) fenceLocked(n *node, reason string, advance bool) {
	if !n.fenced.CompareAndSwap(false, true) {
		return
	}
	n.why.Store(&reason)
	n.behind = 0
	h.changes++
	if h.set == nil {
		return // a single node: no routing to change, L1 stays
	}
	// Its keys now go to stand-ins, which it never sees: on a Ring every
	// return is a flush. (Its epoch alone cannot say so: another replica
	// may stamp it while this one holds it out.)
	n.markDirty(nil, true)
	var serving []*node
	for _, o := range h.nodes {
		if o.serving() {
			serving = append(serving, o)
		}
	}
	if len(serving) == 0 || !advance {
		h.set.rebuild()
		return // every shard is out (no key has a stand-in), or the epoch moved already
	}
	next := h.epoch() + 1
	h.setEpoch(next)
	h.set.rebuild()
	if h.closed {
		return
	}
	// Stamping goes on without h.mu: fencing happens on callers' write
	// paths and under the invalidation bus's lock.
	h.wg.Go(func() {
		var wg sync.WaitGroup
		for _, o := range serving {
			wg.Go(func() { _ = h.stamp(o, next) })
		}
		wg.Wait()
	})
}

// joinLocked returns n to service. On a Ring, values read while n was out
// may have come from a stand-in another replica no longer uses: L1 is
// dropped.
func (h *health) joinLocked(n *node, reason string) {
	if n.serving() {
		return
	}
	n.behind = 0
	n.resetBreaker()
	n.fenced.Store(false)
	h.changes++
	if h.set != nil {
		h.set.rebuild()
		h.changed(n.name + " back in service: " + reason)
	}
}

// stamp raises n's epoch to e.
func (h *health) stamp(n *node, e uint64) error {
	ctx, cancel := context.WithTimeout(h.ctx, h.timeout)
	defer cancel()
	return setMaxScript.Run(ctx, n.admin, []string{h.epochKey}, e).Err()
}

// clean makes n safe to serve, then returns it to service: it deletes the
// keys whose writes failed, or flushes n whole, and stamps it with epoch e.
func (h *health) clean(n *node, e uint64) {
	defer n.flushing.Store(false)
	ctx := h.ctx
	for {
		keys, all := n.takePending()
		var err error
		switch {
		case all:
			_, err = h.flush(ctx, n)
		case len(keys) > 0:
			if err = h.replay(ctx, n, keys); err == nil {
				h.repaired(keys)
			}
		}
		if err == nil && h.set != nil {
			err = h.stamp(n, e)
		}
		h.mu.Lock()
		if err != nil {
			h.mu.Unlock()
			n.markDirty(keys, all) // try again on a later round
			return
		}
		more := !n.cleaned()
		if !more && h.epoch() <= e {
			h.joinLocked(n, "cleaned")
			h.mu.Unlock()
			return
		}
		h.mu.Unlock()
		if !more {
			return // the epoch moved on while cleaning: a later round decides
		}
	}
}

// replay deletes keys from n: writes to them failed while it was out.
func (h *health) replay(ctx context.Context, n *node, keys []string) error {
	for len(keys) > 0 {
		batch := keys[:min(len(keys), 1000)]
		keys = keys[len(batch):]
		c, cancel := context.WithTimeout(ctx, h.timeout)
		_, err := n.admin.Pipelined(c, func(p redis.Pipeliner) error {
			for _, k := range batch {
				p.Unlink(c, k)
			}
			return nil
		})
		cancel()
		if err != nil {
			return err
		}
	}
	return nil
}

// flush removes every data key and lease n holds under the prefix, plain or
// stand-in, and leaves the tag sets and namespace versions. It returns how
// many keys it removed.
func (h *health) flush(ctx context.Context, n *node) (int, error) {
	total := 0
	for _, match := range []string{h.prefix + ":*", h.prefix + "@*"} {
		var cursor uint64
		for {
			c, cancel := context.WithTimeout(ctx, h.timeout)
			keys, next, err := n.admin.Scan(c, cursor, match, 1000).Result()
			if err == nil {
				keys = dataKeys(keys)
				if len(keys) > 0 {
					_, err = n.admin.Pipelined(c, func(p redis.Pipeliner) error {
						for _, k := range keys {
							p.Unlink(c, k)
						}
						return nil
					})
				}
			}
			cancel()
			if err != nil {
				return total, err
			}
			total += len(keys)
			if cursor = next; cursor == 0 {
				break
			}
		}
	}
	return total, nil
}

// repaired tells the watcher which value keys a replay deleted.
func (h *health) repaired(keys []string) {
	if h.watcher == nil || h.parse == nil {
		return
	}
	byNS := map[string][]string{}
	for _, k := range keys {
		if ns, key, ok := h.parse(k); ok {
			byNS[ns] = append(byNS[ns], key)
		}
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	for ns, keys := range byNS {
		if !h.closed {
			h.wg.Go(func() { h.watcher.Repaired(ns, keys) })
		}
	}
}

// changed reports a routing change to the watcher on its own goroutine: the
// watcher may use the store, and h.mu is held here.
func (h *health) changed(reason string) {
	if h.watcher != nil && !h.quiet && !h.closed {
		h.wg.Go(func() { h.watcher.RouteChanged(reason) })
	}
}

// MarkDirty records that writes of keys in namespace ns failed elsewhere
// (another replica's L2 write, told on the invalidation bus) on server (an
// address, as Server returns; "" when the writer did not know it). The
// server that serves a key here is taken out of service until the key is
// deleted from it, if it is that server: a key this replica routes to
// another server (a stand-in, say) is not where the write failed, and
// fencing that healthy server would spread the fault. It does nothing when
// the store does not heal.
func (s *Store) MarkDirty(ns, server string, keys ...string) {
	if !s.topo.watched() {
		return
	}
	for _, key := range keys {
		k, at, _ := s.route(ns, key)
		n := s.health.nodes[at] // at is 0 for a single node
		if server != "" && n.addr != server {
			continue
		}
		if n.markDirty([]string{k, k + leaseSuffix}, false) {
			s.health.dirtied(n)
		}
	}
}

// ServerHealth is one Redis server as the store sees it.
type ServerHealth struct {
	Addr string
	// Serving: the server takes cache traffic. False while it is unreachable
	// or not yet cleaned of keys whose writes failed.
	Serving bool
	// Dirty: writes to the server failed; it is cleaned before it serves.
	Dirty bool
	// Reason says why a server that is not serving was taken out.
	Reason string
	// Breaker is its circuit breaker's state: "closed", "half-open" or
	// "open" ("" when breakers are disabled).
	Breaker string
}

// Health returns the state of each server of a single node or a Ring, in
// Addrs order; nil for a Redis Cluster or a caller's client.
func (s *Store) Health() []ServerHealth {
	if !s.topo.watched() {
		return nil
	}
	out := make([]ServerHealth, len(s.health.nodes))
	for i, n := range s.health.nodes {
		out[i] = ServerHealth{Addr: n.addr, Serving: n.serving(), Dirty: n.dirty.Load()}
		if why := n.why.Load(); why != nil && !out[i].Serving {
			out[i].Reason = *why
		}
		out[i].Breaker = n.breakerState()
	}
	return out
}
