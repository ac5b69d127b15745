package chaos_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/strata-cache/strata/cluster"
	"github.com/strata-cache/strata/cluster/clustertest"
	"github.com/strata-cache/strata/l1"
	"github.com/strata-cache/strata/tiered"
)

// Cache settings of the soak's namespaces.
const (
	mainTTL = 10 * time.Second
	// expTTL is the expiring namespace's TTL: short, so its keys expire
	// many times in a run and the loads per key per expiry can be counted.
	expTTL   = 2 * time.Second
	leaseTTL = 2 * time.Second
	// l2Timeout bounds each L2 command: above the default (100 ms) so that
	// a healthy Redis under -race on two shared cores does not time out,
	// below a stall, so a paused server is noticed fast.
	l2Timeout = 250 * time.Millisecond
)

var quietLogger = slog.New(slog.NewTextHandler(io.Discard, nil))

// replica is one slot of the fleet: the replica running in it now, and the
// gossip faults of the slot (kept across replacements).
type replica struct {
	slot   int
	gossip *clustertest.Faults

	// mu is held for reading by every operation on the replica and for
	// writing while it is replaced, so no operation meets a closed client.
	mu     sync.RWMutex
	gen    int
	name   string
	client *tiered.Client
	main   *tiered.Cache[string] // the versioned namespace
	exp    *tiered.Cache[string] // read-only keys with a short TTL
	wb     *tiered.Cache[string] // write-behind
}

// start opens the slot's next replica, joining seeds over gossip.
func (p *phase) start(r *replica, seeds []string) {
	p.t.Helper()
	r.gen++
	r.name = fmt.Sprintf("%s-r%d-g%d", p.name, r.slot, r.gen)
	c, err := tiered.NewClient(context.Background(), tiered.Config{
		NodeID: r.name,
		Redis:  p.redis,
		Gossip: &cluster.Config{BindAddr: "127.0.0.1:0", Profile: cluster.ProfileLocal, Join: seeds, Transport: r.gossip.Wrap},
		Logger: quietLogger,
		Audit:  tiered.AuditConfig{SampleRate: 0.05}, // at most 100 checks a second per replica; the default window
	})
	if err != nil {
		p.t.Fatalf("%s: replica %s: %v", p.name, r.name, err)
	}
	r.client = c
	r.main = p.newCache(c, "users", tiered.Options[string]{
		TTL: mainTTL, StaleWhileRevalidate: 2 * time.Second, StaleIfError: 5 * time.Second,
		LeaseTTL: leaseTTL, L1: tiered.L1Options{MaxTTL: 20 * time.Second, Engine: engineOf(r.slot)},
		Tags: func(key, _ string) []string { return []string{tagOf(key)} },
	})
	r.exp = p.newCache(c, "exp", tiered.Options[string]{
		TTL: expTTL, Jitter: tiered.Off, EarlyRefreshBeta: tiered.Off, LeaseTTL: leaseTTL,
	})
	r.wb = p.newCache(c, "wb", tiered.Options[string]{
		TTL: time.Hour, LeaseTTL: leaseTTL,
		WriteBehind: &tiered.WriteBehind[string]{Flush: p.wbdb.flush, ClaimIdle: 2 * time.Second},
	})
	p.made(r.main, r.exp, r.wb)
}

// engineOf is the L1 engine of the replicas in slot: the slots alternate,
// so both engines serve in every phase.
func engineOf(slot int) l1.Engine {
	if slot%2 == 1 {
		return l1.Otter
	}
	return l1.Ristretto
}

func (p *phase) newCache(c *tiered.Client, ns string, opts tiered.Options[string]) *tiered.Cache[string] {
	p.t.Helper()
	cache, err := tiered.NewCache(c, ns, opts)
	if err != nil {
		p.t.Fatalf("%s: cache %s: %v", p.name, ns, err)
	}
	return cache
}

// seeds returns the gossip addresses of the replicas in slots other than
// skip.
func (p *phase) seeds(skip int) []string {
	var out []string
	for _, r := range p.replicas {
		if r.slot == skip || r.client == nil {
			continue
		}
		out = append(out, r.client.GossipAddr())
	}
	return out
}

// replace closes the replica in slot and starts a new one in its place
// (a new NodeID, as a new process would have). The slot's workers wait
// meanwhile.
func (p *phase) replace(slot int) {
	r := p.replicas[slot]
	seeds := p.seeds(slot)
	r.mu.Lock()
	defer r.mu.Unlock()
	if err := r.client.Close(); err != nil {
		p.t.Errorf("%s: Close of %s: %v", p.name, r.name, err)
	}
	p.start(r, seeds)
}

// Namespaces by index in phase.made.
const (
	nsMain = iota
	nsExp
	nsWB
)

// made records the caches of a replica just started: the report sums the
// Stats of every replica that ran (a closed cache keeps its counters).
func (p *phase) made(main, exp, wb *tiered.Cache[string]) {
	p.madeMu.Lock()
	defer p.madeMu.Unlock()
	p.caches[nsMain] = append(p.caches[nsMain], main)
	p.caches[nsExp] = append(p.caches[nsExp], exp)
	p.caches[nsWB] = append(p.caches[nsWB], wb)
}

// allCaches returns every cache of namespace ns that ran in the phase. It
// takes no replica's lock, so a loader may call it.
func (p *phase) allCaches(ns int) []*tiered.Cache[string] {
	p.madeMu.Lock()
	defer p.madeMu.Unlock()
	return slices.Clone(p.caches[ns])
}

// healthy reports whether every replica trusts its L1, serves every
// server, has both channels vouching and sees every replica alive.
func (p *phase) healthy() string {
	for _, r := range p.replicas {
		r.mu.RLock()
		h := r.client.Health()
		r.mu.RUnlock()
		if !h.Trusted {
			return r.name + " does not trust its L1"
		}
		for _, s := range h.Servers {
			if !s.Serving {
				return fmt.Sprintf("%s holds %s out of service (%s)", r.name, s.Addr, s.Reason)
			}
		}
		for _, ch := range h.Channels {
			if !ch.Vouches {
				return fmt.Sprintf("%s: channel %s does not vouch", r.name, ch.Name)
			}
		}
		alive := 0
		for _, m := range h.Members {
			if m.State == cluster.MemberAlive {
				alive++
			}
		}
		if alive != len(p.replicas) {
			return fmt.Sprintf("%s sees %d members alive, want %d", r.name, alive, len(p.replicas))
		}
	}
	return ""
}

func (p *phase) unhealthy() string {
	if s := p.healthy(); s != "" {
		return s
	}
	return "healthy now"
}

// waitHealed polls healthy until it holds or timeout passes.
func (p *phase) waitHealed(timeout time.Duration) bool {
	deadline := time.Now().Add(timeout)
	for delay := time.Millisecond; ; delay = min(2*delay, 50*time.Millisecond) {
		if p.healthy() == "" {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(delay) // polling interval
	}
}
