package otelcache

import (
	"context"
	"errors"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"

	"github.com/strata-cache/strata/coherence"
	"github.com/strata-cache/strata/tiered"
)

// counter is one observable counter and what it reads from a namespace's
// tiered.Stats, or from the bus's coherence.Stats.
type counter struct {
	name, unit, desc string
	inst             metric.Int64ObservableCounter
	cache            func(s tiered.Stats) uint64
	bus              func(s coherence.Stats) uint64
	attrs            []attribute.KeyValue // besides the namespace
}

// counters makes the observable counters and registers the callback that
// reads them all at once.
func (o *Observer) counters(m metric.Meter) error {
	hit := func(tier string) []attribute.KeyValue {
		return []attribute.KeyValue{AttrTier.String(tier), AttrResult.String("hit")}
	}
	const requestsDesc = "Requests (a Get, or a key of a GetMany) by the tier that answered and the result; each caller counts once."
	cs := []*counter{
		{name: "strata.cache.requests", unit: "{request}", desc: requestsDesc, attrs: hit("l1"),
			cache: func(s tiered.Stats) uint64 { return s.L1Hits }},
		{name: "strata.cache.requests", unit: "{request}", desc: requestsDesc, attrs: hit("l2"),
			cache: func(s tiered.Stats) uint64 { return s.L2Hits }},
		{name: "strata.cache.requests", unit: "{request}", desc: requestsDesc,
			attrs: []attribute.KeyValue{AttrTier.String("loader"), AttrResult.String("miss")},
			cache: func(s tiered.Stats) uint64 { return s.Misses }},
		{name: "strata.cache.requests", unit: "{request}", desc: requestsDesc,
			attrs: []attribute.KeyValue{AttrResult.String("stale")},
			cache: func(s tiered.Stats) uint64 { return s.StaleHits + s.StaleOnError }},
		{name: "strata.cache.coalesced", unit: "{request}", desc: "Requests that waited on another caller's read or load of the key on this replica.",
			cache: func(s tiered.Stats) uint64 { return s.Coalesced }},
		{name: "strata.cache.refreshes", unit: "{refresh}", desc: "Background refreshes started (early refresh and stale-while-revalidate).",
			cache: func(s tiered.Stats) uint64 { return s.Refreshes }},
		{name: "strata.cache.lease.waits", unit: "{wait}", desc: "Keys whose load waited for another caller's lease instead of loading.",
			cache: func(s tiered.Stats) uint64 { return s.LeaseWaits }},
		{name: "strata.cache.lease.timeouts", unit: "{wait}", desc: "Lease waits that outlasted LeaseWait and loaded without caching.",
			cache: func(s tiered.Stats) uint64 { return s.LeaseTimeouts }},
		{name: "strata.cache.fills.rejected", unit: "{fill}", desc: "Loads whose lease a write or invalidation ended first: not cached.",
			cache: func(s tiered.Stats) uint64 { return s.FillsRejected }},
		{name: "strata.cache.l2.errors", unit: "{error}", desc: "L2 commands that failed; the call went on without L2.",
			cache: func(s tiered.Stats) uint64 { return s.L2Errors }},
		{name: "strata.cache.invalidations", unit: "{invalidation}", desc: "Invalidation messages sent, applied, or dropped (malformed or unauthenticated).",
			attrs: []attribute.KeyValue{AttrDirection.String("sent")}, bus: func(s coherence.Stats) uint64 { return s.Published }},
		{name: "strata.cache.invalidations", unit: "{invalidation}", attrs: []attribute.KeyValue{AttrDirection.String("received")},
			bus: func(s coherence.Stats) uint64 { return s.Applied }},
		{name: "strata.cache.invalidations", unit: "{invalidation}", attrs: []attribute.KeyValue{AttrDirection.String("dropped")},
			bus: func(s coherence.Stats) uint64 { return s.Malformed + s.Unauthenticated }},
		{name: "strata.cache.invalidation.gaps", unit: "{gap}", desc: "Invalidation sequences lost on both channels.",
			bus: func(s coherence.Stats) uint64 { return s.Gaps }},
		{name: "strata.cache.l1.flushes", unit: "{flush}", desc: "Whole-L1 drops: a lost invalidation, a receive overflow or a link regained.",
			bus: func(s coherence.Stats) uint64 { return s.Resets }},
	}
	made := map[string]metric.Int64ObservableCounter{}
	var insts []metric.Observable
	var errs []error
	for _, c := range cs {
		if inst, ok := made[c.name]; ok {
			c.inst = inst
			continue
		}
		inst, err := m.Int64ObservableCounter(c.name, metric.WithUnit(c.unit), metric.WithDescription(c.desc))
		errs = append(errs, err)
		made[c.name], c.inst = inst, inst
		insts = append(insts, inst)
	}
	if err := errors.Join(errs...); err != nil {
		return err
	}
	_, err := m.RegisterCallback(func(_ context.Context, obs metric.Observer) error {
		o.collect(obs, cs)
		return nil
	}, insts...)
	return err
}

// collect reads every client's counters, adds them up per namespace (and
// the bus's over the clients), and observes them.
func (o *Observer) collect(obs metric.Observer, cs []*counter) {
	o.mu.Lock()
	clients := append([]*tiered.Client(nil), o.clients...)
	o.mu.Unlock()
	caches := map[string]tiered.Stats{}
	var busStats []coherence.Stats
	for _, c := range clients {
		s := c.Stats()
		for ns, st := range s.Caches {
			caches[ns] = caches[ns].Add(st)
		}
		busStats = append(busStats, s.Bus)
	}
	for _, c := range cs {
		switch {
		case c.cache != nil:
			for ns, st := range caches {
				attrs := append([]attribute.KeyValue{AttrName.String(ns)}, c.attrs...)
				obs.ObserveInt64(c.inst, int64(c.cache(st)), metric.WithAttributes(attrs...))
			}
		case c.bus != nil:
			var n uint64
			for _, b := range busStats {
				n += c.bus(b)
			}
			obs.ObserveInt64(c.inst, int64(n), metric.WithAttributes(c.attrs...))
		}
	}
}
