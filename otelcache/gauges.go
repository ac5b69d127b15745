package otelcache

import (
	"context"
	"errors"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
)

// More attribute keys, on the gauges.
const (
	// AttrNode is the replica's NodeID.
	AttrNode = attribute.Key("strata.cache.node")
	// AttrChannel is an invalidation channel: pubsub or gossip.
	AttrChannel = attribute.Key("strata.cache.channel")
	// AttrServer is a Redis server's address (OpenTelemetry's
	// server.address).
	AttrServer = attribute.Key("server.address")
)

// breakerStates are the values of strata.cache.l2.breaker.state.
var breakerStates = map[string]int64{"closed": 0, "half-open": 1, "open": 2}

// gauges makes the observable gauges read from each client's Health.
func (o *Observer) gauges(m metric.Meter) error {
	trusted, err1 := m.Int64ObservableGauge("strata.cache.link.trusted", metric.WithUnit("1"),
		metric.WithDescription("1 while the invalidation channel vouches for L1, else 0."))
	serving, err2 := m.Int64ObservableGauge("strata.cache.l2.serving", metric.WithUnit("1"),
		metric.WithDescription("1 while the Redis server takes cache traffic, else 0 (see l2.ServerHealth.Serving; a caller's own client's servers are PINGed at each collection)."))
	breaker, err3 := m.Int64ObservableGauge("strata.cache.l2.breaker.state", metric.WithUnit("1"),
		metric.WithDescription("The Redis server's circuit breaker: 0 closed, 1 half-open, 2 open."))
	if err := errors.Join(err1, err2, err3); err != nil {
		return err
	}
	_, err := m.RegisterCallback(func(_ context.Context, obs metric.Observer) error {
		o.mu.Lock()
		clients := append(o.clients[:0:0], o.clients...)
		o.mu.Unlock()
		for _, c := range clients {
			h := c.Health()
			node := AttrNode.String(h.NodeID)
			for _, ch := range h.Channels {
				obs.ObserveInt64(trusted, bit(ch.Vouches), metric.WithAttributes(node, AttrChannel.String(ch.Name)))
			}
			for _, s := range h.Servers {
				at := metric.WithAttributes(node, AttrServer.String(s.Addr))
				obs.ObserveInt64(serving, bit(s.Serving), at)
				if state, ok := breakerStates[s.Breaker]; ok {
					obs.ObserveInt64(breaker, state, at)
				}
			}
		}
		return nil
	}, trusted, serving, breaker)
	return err
}

func bit(b bool) int64 {
	if b {
		return 1
	}
	return 0
}
