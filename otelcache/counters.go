package otelcache

import (
	"context"
	"errors"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"

	"github.com/strata-cache/strata/coherence"
	"github.com/strata-cache/strata/tiered"
)

// counter is one observable counter (or up-down counter) and what it reads
// from a namespace's tiered.Stats, or from the client's tiered.ClientStats.
type counter struct {
	name, unit, desc string
	updown           bool // a level (entries, bytes), not a count
	inst             metric.Int64Observable
	cache            func(s tiered.Stats) uint64
	client           func(s tiered.ClientStats) uint64
	attrs            []attribute.KeyValue // besides the namespace
}

// More attribute keys, on the counters.
const (
	// AttrTransport is the invalidation channel a message went by: pubsub
	// or gossip.
	AttrTransport = attribute.Key("strata.cache.transport")
	// AttrKind is what an invalidation covered: keys, tags, pattern or
	// clear.
	AttrKind = attribute.Key("strata.cache.kind")
	// AttrReason is why an L1 flush, an eviction or a rejected set
	// happened.
	AttrReason = attribute.Key("strata.cache.reason")
)

// kinds are the invalidation kinds counted, by their attribute value.
var kinds = []coherence.Kind{coherence.KindKeys, coherence.KindTags, coherence.KindPattern, coherence.KindClear}

// counters makes the observable counters and registers the callback that
// reads them all at once.
func (o *Observer) counters(m metric.Meter) error {
	requests := func(tier, result string, f func(s tiered.Stats) uint64) *counter {
		c := &counter{name: "strata.cache.requests", unit: "{request}", cache: f,
			desc: "Requests (a Get, or a key of a GetMany) by the tier that answered and the result; each caller counts once."}
		if tier != "" {
			c.attrs = append(c.attrs, AttrTier.String(tier))
		}
		c.attrs = append(c.attrs, AttrResult.String(result))
		return c
	}
	cs := []*counter{
		requests("l1", "hit", func(s tiered.Stats) uint64 { return s.L1Hits - s.L1NegativeHits }),
		requests("l1", "negative", func(s tiered.Stats) uint64 { return s.L1NegativeHits }),
		requests("l2", "hit", func(s tiered.Stats) uint64 { return s.L2Hits - s.L2NegativeHits }),
		requests("l2", "negative", func(s tiered.Stats) uint64 { return s.L2NegativeHits }),
		requests("loader", "miss", func(s tiered.Stats) uint64 { return s.Misses }),
		requests("", "stale", func(s tiered.Stats) uint64 { return s.StaleHits + s.StaleOnError }),
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
		{name: "strata.cache.l2.corrupt", unit: "{entry}", desc: "Undecodable L2 entries, deleted and treated as misses.",
			cache: func(s tiered.Stats) uint64 { return s.CorruptEntries }},
		{name: "strata.cache.l2.type_mismatches", unit: "{entry}", desc: "L2 entries of another value type or codec: left alone, treated as misses.",
			cache: func(s tiered.Stats) uint64 { return s.TypeMismatches }},
		audit("consistent", func(s tiered.AuditStats) uint64 { return s.Samples - s.Inconsistent }),
		audit("inconsistent", func(s tiered.AuditStats) uint64 { return s.Inconsistent }),
		audit("skipped", func(s tiered.AuditStats) uint64 { return s.Skipped }),
		{name: "strata.cache.uncached", unit: "{value}", desc: "Loaded values not cached: too large, not encodable, or with tags an entry cannot hold.",
			cache: func(s tiered.Stats) uint64 { return s.Uncached }},
		{name: "strata.cache.extensions", unit: "{extension}", desc: "Sliding-expiration extensions sent to L2.",
			cache: func(s tiered.Stats) uint64 { return s.Extensions }},
		{name: "strata.cache.entry.count", unit: "{entry}", desc: "Entries in L1.", updown: true,
			cache: func(s tiered.Stats) uint64 { return uint64(s.L1.Entries) }},
		{name: "strata.cache.memory.usage", unit: "By", desc: "What L1's entries cost: encoded values, keys and a fixed overhead per entry.", updown: true,
			cache: func(s tiered.Stats) uint64 { return uint64(s.L1.Cost) }},
		{name: "strata.cache.evictions", unit: "{entry}", desc: "L1 entries dropped by the cost bound (size) or at their deadline (expired).",
			attrs: []attribute.KeyValue{AttrReason.String("size")}, cache: func(s tiered.Stats) uint64 { return s.L1.Evicted }},
		{name: "strata.cache.evictions", attrs: []attribute.KeyValue{AttrReason.String("expired")},
			cache: func(s tiered.Stats) uint64 { return s.L1.Expired }},
		{name: "strata.cache.sets.rejected", unit: "{set}", desc: "L1 writes not kept: refused by the admission policy, or lost to contention.",
			attrs: []attribute.KeyValue{AttrReason.String("admission")}, cache: func(s tiered.Stats) uint64 { return s.L1.Rejected }},
		{name: "strata.cache.sets.rejected", attrs: []attribute.KeyValue{AttrReason.String("contention")},
			cache: func(s tiered.Stats) uint64 { return s.L1.Dropped }},
	}
	cs = append(cs,
		&counter{name: "strata.cache.writebehind.pending", unit: "{write}", updown: true,
			desc:  "Write-behind writes not yet flushed, in every stream of the namespace.",
			cache: func(s tiered.Stats) uint64 { return uint64(s.WriteBehind.Pending) }},
		&counter{name: "strata.cache.writebehind.in_flight", unit: "{write}", updown: true,
			desc:  "Of the pending writes, those read by a flusher and not acknowledged yet.",
			cache: func(s tiered.Stats) uint64 { return uint64(s.WriteBehind.InFlight) }},
		&counter{name: "strata.cache.writebehind.flushed", unit: "{write}", desc: "Write-behind writes flushed to the database.",
			cache: func(s tiered.Stats) uint64 { return s.WriteBehind.Flushed }},
		&counter{name: "strata.cache.writebehind.retries", unit: "{flush}", desc: "Flush calls that failed and were tried again.",
			cache: func(s tiered.Stats) uint64 { return s.WriteBehind.Retried }},
		&counter{name: "strata.cache.writebehind.dead_letters", unit: "{write}", desc: "Write-behind writes moved to the dead-letter stream.",
			cache: func(s tiered.Stats) uint64 { return s.WriteBehind.DeadLettered }},
		&counter{name: "strata.cache.writebehind.claimed", unit: "{write}", desc: "Write-behind writes taken over from another replica's consumer.",
			cache: func(s tiered.Stats) uint64 { return s.WriteBehind.Claimed }},
		&counter{name: "strata.cache.writebehind.lost", unit: "{write}", desc: "Pending writes deleted from a stream by someone else: must stay 0.",
			cache: func(s tiered.Stats) uint64 { return s.WriteBehind.LostByTrim }},
	)
	cs = append(cs, invalidations()...)
	cs = append(cs,
		&counter{name: "strata.cache.invalidation.gaps", unit: "{gap}", desc: "Invalidation sequences lost on both channels.",
			client: func(s tiered.ClientStats) uint64 { return s.Bus.Gaps }},
		&counter{name: "strata.cache.invalidation.duplicates", unit: "{message}", desc: "Copies of invalidations already applied (the other channel's, mostly).",
			client: func(s tiered.ClientStats) uint64 { return s.Bus.Duplicates }},
		&counter{name: "strata.cache.invalidation.send_errors", unit: "{send}", desc: "Sends that failed on a transport (heartbeats included).",
			attrs: []attribute.KeyValue{AttrTransport.String("pubsub")}, client: func(s tiered.ClientStats) uint64 { return s.Bus.PubSub.SendErrors }},
		&counter{name: "strata.cache.invalidation.send_errors",
			attrs: []attribute.KeyValue{AttrTransport.String("gossip")}, client: func(s tiered.ClientStats) uint64 { return s.Bus.Gossip.SendErrors }},
		&counter{name: "strata.cache.link.losses", unit: "{loss}", desc: "Times no invalidation channel could vouch for L1 (reads then bypass it).",
			client: func(s tiered.ClientStats) uint64 { return s.Bus.LinkLosses }},
		retries("applied", func(s tiered.RetryStats) uint64 { return s.Applied }),
		retries("expired", func(s tiered.RetryStats) uint64 { return s.Expired }),
		retries("dropped", func(s tiered.RetryStats) uint64 { return s.Dropped }),
		&counter{name: "strata.cache.l2.retries.pending", unit: "{retry}", updown: true, desc: "Failed L2 writes waiting to be tried again.",
			client: func(s tiered.ClientStats) uint64 { return uint64(s.Retry.Pending) }},
		flush("gap", func(s tiered.ClientStats) uint64 { return s.Bus.ResetsByReason.Gap }),
		flush("overflow", func(s tiered.ClientStats) uint64 { return s.Bus.ResetsByReason.Overflow }),
		flush("trust_regained", func(s tiered.ClientStats) uint64 { return s.Bus.ResetsByReason.LinkRecovered }),
		flush("l2_route", func(s tiered.ClientStats) uint64 { return s.RouteFlushes }),
	)
	made := map[string]metric.Int64Observable{}
	var insts []metric.Observable
	var errs []error
	for _, c := range cs {
		if inst, ok := made[c.name]; ok {
			c.inst = inst
			continue
		}
		var inst metric.Int64Observable
		var err error
		if c.updown {
			inst, err = m.Int64ObservableUpDownCounter(c.name, metric.WithUnit(c.unit), metric.WithDescription(c.desc))
		} else {
			inst, err = m.Int64ObservableCounter(c.name, metric.WithUnit(c.unit), metric.WithDescription(c.desc))
		}
		errs = append(errs, err)
		made[c.name], c.inst = inst, inst
		insts = append(insts, inst)
	}
	nines, err := m.Float64ObservableGauge("strata.cache.audit.nines", metric.WithUnit("1"),
		metric.WithDescription("The consistency auditor's nines: -log10 of the share of sampled L1 hits found inconsistent "+
			"(with none inconsistent, the most the samples can show); absent before the first sample."))
	errs = append(errs, err)
	if err := errors.Join(errs...); err != nil {
		return err
	}
	_, err = m.RegisterCallback(func(_ context.Context, obs metric.Observer) error {
		for ns, st := range o.collect(obs, cs) {
			if st.Audit.Samples > 0 {
				obs.ObserveFloat64(nines, st.Audit.Nines(), metric.WithAttributes(AttrName.String(ns)))
			}
		}
		return nil
	}, append(insts, nines)...)
	return err
}

// audit is strata.cache.audit.samples' series for result: the consistency
// auditor's verdicts on sampled L1 hits.
func audit(result string, f func(s tiered.AuditStats) uint64) *counter {
	return &counter{name: "strata.cache.audit.samples", unit: "{sample}", attrs: []attribute.KeyValue{AttrResult.String(result)},
		desc:  "L1 hits the consistency auditor sampled, by verdict: consistent with L2, inconsistent, or skipped (not checked).",
		cache: func(s tiered.Stats) uint64 { return f(s.Audit) }}
}

// invalidations are strata.cache.invalidations' series: sent and received
// per transport and kind, dropped per transport, applied per kind.
func invalidations() []*counter {
	const name, unit = "strata.cache.invalidations", "{invalidation}"
	desc := "Invalidation messages sent and received per transport (a message goes out on both), dropped there " +
		"(malformed or unauthenticated), and applied once per replica."
	var cs []*counter
	channels := []struct {
		name string
		of   func(s tiered.ClientStats) coherence.ChannelStats
	}{
		{"pubsub", func(s tiered.ClientStats) coherence.ChannelStats { return s.Bus.PubSub }},
		{"gossip", func(s tiered.ClientStats) coherence.ChannelStats { return s.Bus.Gossip }},
	}
	for _, ch := range channels {
		for _, k := range kinds {
			cs = append(cs,
				&counter{name: name, unit: unit, desc: desc,
					attrs:  []attribute.KeyValue{AttrTransport.String(ch.name), AttrDirection.String("sent"), AttrKind.String(k.String())},
					client: func(s tiered.ClientStats) uint64 { return ch.of(s).Sent.Of(k) }},
				&counter{name: name,
					attrs:  []attribute.KeyValue{AttrTransport.String(ch.name), AttrDirection.String("received"), AttrKind.String(k.String())},
					client: func(s tiered.ClientStats) uint64 { return ch.of(s).Received.Of(k) }})
		}
		cs = append(cs, &counter{name: name,
			attrs:  []attribute.KeyValue{AttrTransport.String(ch.name), AttrDirection.String("dropped")},
			client: func(s tiered.ClientStats) uint64 { return ch.of(s).Dropped }})
	}
	for _, k := range kinds {
		cs = append(cs, &counter{name: name,
			attrs:  []attribute.KeyValue{AttrDirection.String("applied"), AttrKind.String(k.String())},
			client: func(s tiered.ClientStats) uint64 { return s.Bus.AppliedByKind.Of(k) }})
	}
	return cs
}

// retries is strata.cache.l2.retries' series for result.
func retries(result string, f func(s tiered.RetryStats) uint64) *counter {
	return &counter{name: "strata.cache.l2.retries", unit: "{retry}", attrs: []attribute.KeyValue{AttrResult.String(result)},
		client: func(s tiered.ClientStats) uint64 { return f(s.Retry) },
		desc:   "Failed L2 writes tried again: applied, given up as expired meanwhile, or dropped because too many waited."}
}

// flush is strata.cache.l1.flushes' series for reason.
func flush(reason string, f func(s tiered.ClientStats) uint64) *counter {
	return &counter{name: "strata.cache.l1.flushes", unit: "{flush}", client: f, attrs: []attribute.KeyValue{AttrReason.String(reason)},
		desc: "Whole-L1 drops for a possibly missed invalidation: a sequence gap, a receive overflow, a channel trusted " +
			"again, or L2's routing changed."}
}

// collect reads every client's counters, adds them up per namespace (and
// the bus's over the clients), observes them and returns the namespaces' sums.
func (o *Observer) collect(obs metric.Observer, cs []*counter) map[string]tiered.Stats {
	o.mu.Lock()
	clients := append([]*tiered.Client(nil), o.clients...)
	o.mu.Unlock()
	caches := map[string]tiered.Stats{}
	var all []tiered.ClientStats
	for _, c := range clients {
		s := c.Stats()
		for ns, st := range s.Caches {
			caches[ns] = caches[ns].Add(st)
		}
		all = append(all, s)
	}
	for _, c := range cs {
		switch {
		case c.cache != nil:
			for ns, st := range caches {
				attrs := append([]attribute.KeyValue{AttrName.String(ns)}, c.attrs...)
				obs.ObserveInt64(c.inst, int64(c.cache(st)), metric.WithAttributes(attrs...))
			}
		case c.client != nil:
			var n uint64
			for _, s := range all {
				n += c.client(s)
			}
			obs.ObserveInt64(c.inst, int64(n), metric.WithAttributes(c.attrs...))
		}
	}
	return caches
}
