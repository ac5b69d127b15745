package tiered

import (
	"context"
	"errors"
	"fmt"
	"runtime/debug"
	"sync/atomic"
	"time"

	"github.com/strata-cache/strata/cluster"

	"github.com/strata-cache/strata/coherence"
	"github.com/strata-cache/strata/internal/bus"
	"github.com/strata-cache/strata/l2"
)

// registeredCache is what the client needs of each Cache: closing it and
// applying invalidations to it.
type registeredCache interface {
	namespace() string
	counters() Stats
	drain() // write-behind: flush what is pending, then stop
	close()
	invalidate(m *coherence.Message)
	reset()
}

// startBus starts the invalidation bus over the channels configured: Redis
// pub/sub with L2, gossip with Config.Gossip. Without either, L1 is trusted
// as is: no other replica can change what this one cached.
func (c *Client) startBus() error {
	if c.l2 == nil && c.cfg.Gossip == nil {
		c.trusted.Store(true)
		return nil
	}
	cfg := bus.Config{
		NodeID:  c.cfg.NodeID,
		Key:     c.cfg.InvalidationKey,
		Handler: (*busHandler)(c),
		Logger:  c.cfg.Logger,
	}
	if c.l2 != nil {
		cfg.Channel = c.l2.Prefix() + ":invalidations"
		cfg.Redis = c.l2.PubSubClient(cfg.Channel)
	}
	// The gossip node delivers to the bus, which needs the node: messages
	// that arrive before the bus exists are dropped (the bus is not trusted
	// yet, and its first trust drops L1 anyway).
	var started atomic.Pointer[bus.Bus]
	if c.cfg.Gossip != nil {
		gossip := *c.cfg.Gossip
		gossip.KeepJoining = !c.cfg.RequireGossip // the startup policy decides, not the field
		if gossip.Logger == nil {
			gossip.Logger = c.cfg.Logger // memberlist's lines too: one logger
		}
		node, err := cluster.Start(gossip, c.cfg.NodeID,
			func(msg []byte) {
				if b := started.Load(); b != nil {
					b.Deliver(msg, bus.Gossip)
				}
			},
			func() {
				if b := started.Load(); b != nil {
					b.ResetL1(bus.ReasonOverflow)
				}
			})
		if err != nil {
			return fmt.Errorf("tiered: gossip: %w", err)
		}
		c.gossip, cfg.Gossip = node, node
	}
	b, err := bus.New(cfg)
	if err != nil {
		return fmt.Errorf("tiered: %w", err)
	}
	started.Store(b)
	c.bus = b
	// Serving L1 needs a channel that vouches for it; the subscription takes
	// a round trip. A Redis that is down does not hold the start up: reads
	// then go to L2, fail, and fall back to L1 and the loader.
	if c.gossip == nil && c.l2 != nil && c.cfg.Redis.Client == nil && noneServing(c.l2.Health()) {
		return nil // no channel can vouch soon: waiting would only delay the start
	}
	ctx, cancel := context.WithTimeout(c.ctx, startTrustTimeout)
	defer cancel()
	b.WaitTrusted(ctx)
	return nil
}

// noneServing reports that the health watch found every server out of
// service (at start: its first check failed). Only the watched topologies
// (a single node, Ring shards) know that without a round trip.
func noneServing(servers []l2.ServerHealth) bool {
	for _, h := range servers {
		if !h.Watched || h.Serving {
			return false
		}
	}
	return len(servers) > 0
}

// startTrustTimeout bounds how long NewClient waits for its invalidation
// channel: a healthy Redis subscribes in a millisecond.
const startTrustTimeout = time.Second

// publish tells the other replicas about a write. A send failure is logged,
// not returned: the write happened, and receivers notice the lost message as
// a sequence gap at the origin's next heartbeat and drop their L1. Only an
// acknowledged invalidation (WithAck) returns an error: the members that did
// not confirm in time.
func (c *Client) publish(ctx context.Context, kind coherence.Kind, ns string, items []string, version uint64) error {
	if c.bus == nil {
		return nil
	}
	if timeout, ok := ctx.Value(ackKey{}).(time.Duration); ok {
		// The caller may stop waiting for the acknowledgements.
		if err := c.bus.PublishAcked(callerOf(ctx), kind, ns, items, version, timeout); err != nil {
			return fmt.Errorf("tiered: %w", err)
		}
		return nil
	}
	if err := c.bus.Publish(ctx, kind, ns, items, version); err != nil {
		c.cfg.Logger.Warn("strata: invalidation not sent; peers will detect the gap", "namespace", ns, "err", err)
	}
	return nil
}

type ackKey struct{}

// WithAck returns a context that makes Set, Delete, InvalidateTags,
// InvalidatePattern, Clear and Client.Invalidate wait until every live
// replica has applied the invalidation, for at most timeout. Past it they
// return an error wrapping coherence.ErrNotAcknowledged that names the
// replicas that did not confirm; the write itself has happened.
func WithAck(ctx context.Context, timeout time.Duration) context.Context {
	return context.WithValue(ctx, ackKey{}, timeout)
}

// busStats is Client.BusStats.
func (c *Client) busStats() coherence.Stats {
	if c.bus == nil {
		return coherence.Stats{}
	}
	return c.bus.Stats()
}

// busHandler is the Client seen by the bus.
type busHandler Client

func (h *busHandler) Apply(m *coherence.Message) {
	for _, cache := range (*Client)(h).cachesOf(m.Namespace) {
		cache.invalidate(m)
	}
	if h.wants&(1<<EventInvalidation) != 0 { // never without an Observer
		// Wall clock on both sides: the lag is meaningful within the clock
		// skew between the hosts.
		lag := time.Duration(time.Now().UnixNano() - m.SentAt)
		h.observe(h.cfg.Observer, Event{Kind: EventInvalidation, Namespace: m.Namespace, Duration: lag})
	}
}

// observe reports e on the bus's goroutine, which a panicking Observer must
// not end.
func (h *busHandler) observe(o Observer, e Event) {
	defer func() {
		if r := recover(); r != nil {
			h.cfg.Logger.Error("strata: Observer panicked", "panic", r, "stack", string(debug.Stack()))
		}
	}()
	o.Observe(context.Background(), e)
}

func (h *busHandler) Reset(string) {
	for _, cache := range (*Client)(h).cachesOf("") {
		cache.reset()
	}
}

func (h *busHandler) Trust(trusted bool) { h.trusted.Store(trusted) }

// cachesOf returns the client's caches of namespace ns, or all for "".
func (c *Client) cachesOf(ns string) []registeredCache {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []registeredCache
	for _, cache := range c.caches {
		if ns == "" || cache.namespace() == ns {
			out = append(out, cache)
		}
	}
	return out
}

func (c *Cache[V]) namespace() string { return c.ns }

func (c *Cache[V]) counters() Stats {
	s := c.stats.snapshot()
	if c.l1 != nil {
		s.L1 = c.l1.Stats()
	}
	s.WriteBehind = c.flusher.stats()
	s.Audit = c.audits.snapshot()
	return s
}

// invalidate applies another replica's invalidation to L1.
func (c *Cache[V]) invalidate(m *coherence.Message) {
	switch m.Kind {
	case coherence.KindKeys:
		if m.L2Missed && c.client.l2 != nil {
			c.client.l2.MarkDirty(c.l2ns(), m.L2Server, m.Items...)
		}
		for _, k := range m.Items {
			c.dropL1(k)
		}
	case coherence.KindTags:
		c.dropTagged(m.Items)
	case coherence.KindClear:
		c.setVersion(m.Version)
		c.dropAll()
		if m.Version == 0 {
			// The sender's bump may have happened without it learning the
			// version (a lost reply, a partial bump): read it.
			c.reloadVersion()
		}
	default:
		// A pattern (or a kind this version does not know) drops the
		// namespace's L1: L1 has no key index to match against.
		c.dropAll()
	}
}

// reset drops L1 after a possible loss of invalidations, and rereads the
// namespace version in the background: a lost Clear may have changed it.
// Should it have, the reread takes the new version and drops L1 again.
func (c *Cache[V]) reset() {
	c.dropAll()
	c.reloadVersion()
}

// dropAll empties L1 and fences off every fill in flight.
func (c *Cache[V]) dropAll() {
	defer c.forgetAllFlights() // after L1 changed: see forgetFlights
	c.audited("", "L1 dropped", 0)
	if c.l1 == nil {
		c.guard.WriteAll()
		return
	}
	c.l1.Clear()
}

// invalidate is Client.Invalidate.
func (c *Client) invalidate(ctx context.Context, namespace string, keys ...string) error {
	if err := validateNamespace(namespace); err != nil {
		return err
	}
	for _, k := range keys {
		if err := validateKey(k); err != nil {
			return err
		}
	}
	done, err := c.beginWrite()
	if err != nil {
		return err
	}
	defer done()
	if ctx, err = detach(ctx, "invalidate"); err != nil {
		return err
	}
	var cause error
	var servers []string
	if c.l2 != nil {
		servers = c.serversOf(keys)
		wctx := context.WithoutCancel(ctx)
		if cause = c.inNamespace(wctx, namespace, func(l2ns string) error { return c.l2.Delete(wctx, l2ns, keys...) }); cause != nil {
			err = fmt.Errorf("tiered: invalidate in L2: %w", cause)
		}
	}
	// This replica's store recorded its own failed deletes already.
	m := &coherence.Message{Kind: coherence.KindKeys, Namespace: namespace, Items: keys}
	for _, cache := range c.cachesOf(namespace) {
		cache.invalidate(m)
	}
	return errors.Join(err, c.publishWrite(ctx, namespace, keys, servers, cause, uint64(c.clock.NowNano())))
}

// gossipAddr is Client.GossipAddr.
func (c *Client) gossipAddr() string {
	if c.gossip == nil {
		return ""
	}
	return c.gossip.Addr()
}
