package l2

import (
	"context"
	"net"
	"slices"
	"sync"

	"github.com/redis/go-redis/v9"
)

// clusterView is what a Redis Cluster client Strata made knows of its nodes
// without asking them: each node's guard (its breaker), by address, and the
// masters of the latest CLUSTER SLOTS reply go-redis received (it asks on
// its own when it loads or reloads the topology). Health reads it.
type clusterView struct {
	seeds []string // ClusterAddrs, listed until a CLUSTER SLOTS reply arrives

	mu      sync.Mutex
	nodes   map[string]*node // every node go-redis made a client for, by address
	masters []string         // sorted; nil before the first reply
}

func newClusterView(seeds []string) *clusterView {
	return &clusterView{seeds: slices.Clone(seeds), nodes: map[string]*node{}}
}

// guard returns the node for addr, creating it with settings b.
func (v *clusterView) guard(addr string, b breakerSettings, onFailure func()) *node {
	v.mu.Lock()
	defer v.mu.Unlock()
	n := v.nodes[addr]
	if n == nil {
		n = newNode(addr, addr, b, false)
		n.onFailure = onFailure
		v.nodes[addr] = n
	}
	return n
}

// setSlots keeps the masters of a CLUSTER SLOTS reply from the node at
// origin, at the addresses go-redis dials.
func (v *clusterView) setSlots(origin string, slots []redis.ClusterSlot) {
	var masters []string
	for _, s := range slots {
		if len(s.Nodes) > 0 {
			masters = append(masters, dialAddr(s.Nodes[0].Addr, origin))
		}
	}
	slices.Sort(masters)
	masters = slices.Compact(masters)
	v.mu.Lock()
	v.masters = masters
	v.mu.Unlock()
}

// health returns each master's state, or each seed's before the topology
// is known. Serving means Strata's guard lets cache commands through: the
// breaker is closed (or breakers are off). Strata does not fence Cluster
// nodes or check them itself; go-redis follows failovers.
func (v *clusterView) health() []ServerHealth {
	v.mu.Lock()
	defer v.mu.Unlock()
	addrs, known := v.masters, v.masters != nil
	if !known {
		addrs = v.seeds
	}
	out := make([]ServerHealth, len(addrs))
	for i, addr := range addrs {
		s := ServerHealth{Addr: addr, Serving: known}
		if n := v.nodes[addr]; n != nil {
			s.Breaker = n.breakerState()
		}
		switch {
		case !known:
			s.Reason = "cluster topology not loaded yet"
		case s.Breaker == "open":
			s.Serving, s.Reason = false, "circuit breaker open"
		case s.Breaker == "half-open":
			s.Serving, s.Reason = false, "circuit breaker half-open: one probe at a time"
		}
		out[i] = s
	}
	return out
}

// slotsHook is a hook on each Cluster node's client that shows the view the
// CLUSTER SLOTS replies go-redis receives.
type slotsHook struct {
	view *clusterView
	addr string // the node's address
}

// DialHook implements redis.Hook.
func (h slotsHook) DialHook(next redis.DialHook) redis.DialHook { return next }

// ProcessHook implements redis.Hook.
func (h slotsHook) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		err := next(ctx, cmd)
		if slots, ok := cmd.(*redis.ClusterSlotsCmd); ok && err == nil {
			h.view.setSlots(h.addr, slots.Val())
		}
		return err
	}
}

// ProcessPipelineHook implements redis.Hook.
func (h slotsHook) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return next
}

// dialAddr is the address go-redis dials for a node that CLUSTER SLOTS,
// asked at origin, lists at addr: a loopback host is replaced by origin's
// when origin is not loopback, and port 0 (TLS-only) by origin's port.
func dialAddr(addr, origin string) string {
	host, port, err := net.SplitHostPort(addr)
	oHost, oPort, oErr := net.SplitHostPort(origin)
	if err != nil || oErr != nil {
		return addr
	}
	if ip, oIP := net.ParseIP(host), net.ParseIP(oHost); ip != nil && ip.IsLoopback() && (oIP == nil || !oIP.IsLoopback()) &&
		oHost != "localhost" {
		host = oHost
	}
	if port == "0" && oPort != "0" {
		port = oPort
	}
	return net.JoinHostPort(host, port)
}
