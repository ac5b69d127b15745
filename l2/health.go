package l2

import (
	"context"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/strata-cache/strata/l2/internal/health"
)

// watch is the health watch of a single node or a Ring. Every
// HealthInterval it reads each server once on its own client, bounded by
// HealthTimeout: the routing epoch, the run ID and, on a Ring, the out
// markers (one pipeline, which doubles as the ping). Package health decides
// from that, and from what the watch knew before, which servers serve (its
// rules are in decide.go there); the watch carries the decisions out: it
// fences and returns servers, reroutes a Ring, stamps epochs, keeps this
// replica's out markers (markers.go) and cleans servers (clean.go).
type watch struct {
	nodes    []*node
	set      *shardSet // a Ring's routing; nil for a single node
	ring     bool      // set != nil: routing epochs and out markers
	prefix   string
	epochKey string
	id       string // this replica's name on the out markers it keeps
	interval time.Duration
	timeout  time.Duration
	watcher  Watcher // nil: no one is told
	log      *slog.Logger
	parse    func(full string) (ns, key string, ok bool)
	cleaning []atomic.Bool // per server: a clean runs

	mu      sync.Mutex   // orders decisions: fencing, joining and epoch changes
	st      health.State // what the decisions know, under mu
	changes uint64       // routing changes made here, under mu
	quiet   bool         // during the first round: joining at start is no change
	closed  bool

	stop   chan struct{}
	ctx    context.Context // ends at close: cleaning stops
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// watch returns the health watch of nodes, routed by set on a Ring (nil for
// a single node), telling w (if not nil) of its changes. It starts with
// every server out of service: the first round decides.
func (c *Config) watch(s *Store, nodes []*node, set *shardSet, w Watcher) *watch {
	h := &watch{
		nodes: nodes, set: set, ring: set != nil, prefix: c.Prefix, epochKey: epochKey(c.Prefix), id: randomID(),
		interval: c.HealthInterval, timeout: c.HealthTimeout, watcher: w, log: c.Logger, parse: s.parseKey,
		cleaning: make([]atomic.Bool, len(nodes)),
		st:       health.State{Ring: set != nil, Servers: make([]health.Server, len(nodes))},
	}
	for i, n := range nodes {
		h.st.Servers[i].Name = n.name
	}
	return h
}

// start runs a first check, so servers that answer serve at once, and then
// checks every interval until close.
func (h *watch) start() {
	h.stop = make(chan struct{})
	h.ctx, h.cancel = context.WithCancel(maintenance(context.Background()))
	for i, n := range h.nodes {
		n.onDirty = func() { h.dirtied(i) }
	}
	h.quiet = true
	h.round(true)
	h.mu.Lock()
	h.quiet = false
	for _, n := range h.nodes {
		if n.fenced.Load() { // out from the start: its return will be logged
			h.log.Warn("strata: L2 server out of service", "server", n.addr, "reason", "not serving at start")
		}
	}
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

func (h *watch) close() {
	h.mu.Lock()
	h.closed = true
	h.mu.Unlock()
	close(h.stop)
	h.cancel()
	h.wg.Wait()
	// A closed replica holds no shard out: its markers go.
	h.mu.Lock()
	var mine []int
	for i, s := range h.st.Servers {
		if s.Marked {
			mine = append(mine, i)
		}
	}
	h.mu.Unlock()
	if len(mine) > 0 {
		h.holdOut(maintenance(context.Background()), nil, h.markerKeys(mine), 0)
	}
	for _, n := range h.nodes {
		if n.admin != nil {
			_ = n.admin.Close()
		}
	}
}

// round checks every server once (probe), asks package health what follows
// (decide) and carries it out (act).
func (h *watch) round(first bool) {
	h.mu.Lock()
	changes := h.changes
	h.mu.Unlock()
	probes := h.probeAll()
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.changes != changes || h.closed {
		return // this replica changed the routing meanwhile: the epochs read are old
	}
	h.act(health.Decide(h.view(), probes, first))
}

// dirtied takes server i, a write to which failed, out of service until it
// is clean.
func (h *watch) dirtied(i int) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.act(health.WriteFailed(h.view(), i))
}

// view returns what the decisions know, with what they do not own read
// afresh: each server's fence, log of failed writes and cleaning. h.mu is
// held.
func (h *watch) view() health.State {
	for i, n := range h.nodes {
		s := &h.st.Servers[i]
		s.Serving, s.Dirt, s.Cleaning = n.serving(), n.dirt(), h.cleaning[i].Load()
	}
	return h.st
}

// act keeps st, a decision's state, and carries out its actions in order.
// h.mu is held: what takes I/O goes to the background.
func (h *watch) act(st health.State, acts []health.Action) {
	h.st = st
	for _, a := range acts {
		switch a := a.(type) {
		case health.Fence:
			n, reason := h.nodes[a.Server], a.Reason
			if !n.fenced.Swap(true) && !h.quiet {
				h.log.Warn("strata: L2 server out of service", "server", n.addr, "reason", reason)
			}
			n.why.Store(&reason)
			h.changes++
		case health.Forget:
			h.nodes[a.Server].markDirty(nil, true)
		case health.SetEpoch:
			h.set.epoch.Store(a.Epoch)
		case health.Reroute:
			h.set.rebuild()
		case health.Stamp:
			h.stampAll(a.Servers, a.Epoch)
		case health.Report:
			h.changed(a.Reason)
		case health.Clean:
			if a.Flush {
				h.nodes[a.Server].markDirty(nil, true)
			}
			h.cleaning[a.Server].Store(true)
			h.wg.Go(func() { h.clean(a.Server, a.Epoch) })
		case health.Join:
			n := h.nodes[a.Server]
			n.resetBreaker() // the checks found it well: a cool-down would only delay it
			if n.fenced.Swap(false) && !h.quiet {
				h.log.Info("strata: L2 server back in service", "server", n.addr)
			}
			h.changes++
		case health.HoldOut:
			mark, unmark := h.markerKeys(a.Mark), h.markerKeys(a.Unmark)
			h.wg.Go(func() { h.holdOut(h.ctx, mark, unmark, a.Epoch) })
		}
	}
}

// probeAll checks every server at once, each bounded by HealthTimeout.
func (h *watch) probeAll() []health.Probe {
	var markers []string
	if h.ring {
		markers = h.markerKeys(allOf(len(h.nodes)))
	}
	probes := make([]health.Probe, len(h.nodes))
	var wg sync.WaitGroup
	for i, n := range h.nodes {
		wg.Go(func() {
			ctx, cancel := context.WithTimeout(h.ctx, h.timeout)
			defer cancel()
			probes[i] = h.probe(ctx, n, markers)
		})
	}
	wg.Wait()
	return probes
}

// allOf returns 0, 1, ..., n-1.
func allOf(n int) []int {
	all := make([]int, n)
	for i := range all {
		all[i] = i
	}
	return all
}

// probe reads n's epoch, its run ID and, on a Ring, the out markers it
// holds, in one round trip.
func (h *watch) probe(ctx context.Context, n *node, markers []string) health.Probe {
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
		return health.Probe{Err: err}
	}
	p := health.Probe{Out: make([]bool, len(markers)), RunID: infoField(info.Val(), "run_id")}
	if v, ok := epoch.Val()[0].(string); ok {
		if p.Epoch, err = strconv.ParseUint(v, 10, 64); err != nil {
			return health.Probe{Err: err}
		}
	}
	if live != nil {
		marks, err := live.Int64Slice()
		if err == nil && len(marks) != len(markers) {
			err = fmt.Errorf("l2: out markers: %d answers for %d", len(marks), len(markers))
		}
		if err != nil {
			return health.Probe{Err: err}
		}
		for j, m := range marks {
			p.Out[j] = m == 1
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

// changed reports a routing change to the watcher on its own goroutine: the
// watcher may use the store, and h.mu is held here.
func (h *watch) changed(reason string) {
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
			s.health.dirtied(at)
		}
	}
}

// ServerHealth is one Redis server as the store sees it. What Serving
// means depends on the deployment; Watched says which case applies:
//
//   - a single node or Ring shards (Addrs): Strata's health watch checks
//     each server every HealthInterval and fences it; Serving is that
//     watch's verdict, Watched is true;
//   - a Redis Cluster (ClusterAddrs): one entry per master of the latest
//     topology go-redis loaded (its seeds until then), with the breaker
//     Strata keeps for it; Serving is that breaker letting cache commands
//     through (closed, or breakers off). No round trip is made: a master
//     that stopped answering serves until its breaker opens;
//   - a caller's own client (Config.Client): Strata keeps no breaker or
//     watch for it, so Health checks it then, one PING per server bounded
//     by HealthTimeout: a *redis.Client's address, each shard of a Ring (one
//     its heartbeat holds down is not serving), each master of a
//     ClusterClient (go-redis reloads the topology for the list first).
//     Serving is that PING's answer.
type ServerHealth struct {
	// Addr is the server's "host:port" ("" for a caller's client of a type
	// Strata does not know).
	Addr string `json:"addr"`
	// Serving: the server takes cache traffic (see above). False while it is
	// unreachable or not yet cleaned of keys whose writes failed.
	Serving bool `json:"serving"`
	// Dirty: writes to the server failed; it is cleaned before it serves
	// (single node and Ring only).
	Dirty bool `json:"dirty"`
	// Reason says why a server that is not serving was taken out.
	Reason string `json:"reason,omitempty"`
	// Breaker is its circuit breaker's state: "closed", "half-open" or
	// "open" ("" when breakers are disabled, and for a caller's client).
	Breaker string `json:"breaker,omitempty"`
	// Watched reports that Strata's health watch checks the server (a
	// single node or Ring shard of Addrs).
	Watched bool `json:"watched"`
}

// Health returns the state of each Redis server: a single node's or Ring's
// in Addrs order, a Cluster's masters and a caller's client's servers in
// address order (see ServerHealth for what each knows). It makes no round
// trip except for a caller's client, where it blocks for at most
// HealthTimeout.
func (s *Store) Health() []ServerHealth {
	switch {
	case s.topo.watched():
		return s.health.servers()
	case s.cluster != nil:
		return s.cluster.health()
	}
	return s.callerHealth()
}

// servers is Health for a single node or a Ring.
func (h *watch) servers() []ServerHealth {
	out := make([]ServerHealth, len(h.nodes))
	for i, n := range h.nodes {
		out[i] = ServerHealth{Addr: n.addr, Serving: n.serving(), Dirty: n.dirty.Load(), Watched: true}
		if why := n.why.Load(); why != nil && !out[i].Serving {
			out[i].Reason = *why
		}
		out[i].Breaker = n.breakerState()
	}
	return out
}
