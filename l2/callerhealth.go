package l2

import (
	"cmp"
	"context"
	"fmt"
	"maps"
	"slices"
	"sync"

	"github.com/redis/go-redis/v9"
)

// callerHealth is Health for a caller's client, which Strata neither guards
// nor watches: it PINGs each server now, all at once, and returns after
// HealthTimeout at the latest. A caller's client keeps its own timeouts
// (go-redis ignores a context's deadline unless ContextTimeoutEnabled), so a
// PING that outlasts HealthTimeout is reported as unanswered and finishes in
// the background, within the client's ReadTimeout; until it does, no
// other PING is sent to that server (probes calling Health often do not
// pile them up), and the server is reported as not answering.
func (s *Store) callerHealth() []ServerHealth {
	ctx, cancel := context.WithTimeout(context.Background(), s.healthTimeout)
	defer cancel()
	ch := &checks{late: fmt.Sprintf("no answer to PING within %v", s.healthTimeout), res: map[string]ServerHealth{}, inFlight: &s.pinging}
	done := make(chan struct{})
	var expected []string // servers listed even if their check never starts
	var missing string    // why such a server is not serving
	fallback := false     // expected only stand in for no result at all
	var run func()
	switch c := s.client.(type) {
	case *redis.Client:
		expected, missing = []string{c.Options().Addr}, ch.late
		run = func() { ch.ping(ctx, c.Options().Addr, c) }
	case *redis.Ring:
		expected, missing = slices.Collect(maps.Values(c.Options().Addrs)), "down: the Ring's heartbeat holds it out"
		run = func() { _ = c.ForEachShard(ctx, ch.pingClient) }
	case *redis.ClusterClient:
		// The masters are known once go-redis has the topology: it reloads
		// it first, and falls back to the one it has.
		run = func() {
			if err := c.ForEachMaster(ctx, ch.pingClient); err != nil && ch.empty() {
				ch.seeds(c.Options().Addrs, "cluster topology unknown: "+err.Error())
			}
		}
		expected, missing, fallback = c.Options().Addrs, "cluster topology not loaded within the health timeout", true
	default:
		expected, missing = []string{""}, ch.late
		run = func() { ch.ping(ctx, "", s.client) }
	}
	go func() {
		defer close(done)
		run()
	}()
	select {
	case <-done:
	case <-ctx.Done():
	}
	return ch.result(expected, missing, fallback)
}

// checks collects the PINGs of one callerHealth, some of which may finish
// after it returned.
type checks struct {
	late     string    // the reason of a PING not answered in time
	inFlight *sync.Map // addresses with a PING unanswered, of any check

	mu  sync.Mutex
	res map[string]ServerHealth // by address; a pending PING reads as late
}

// ping records addr's health from a PING of c.
func (ch *checks) ping(ctx context.Context, addr string, c redis.Cmdable) {
	if _, busy := ch.inFlight.LoadOrStore(addr, struct{}{}); busy {
		ch.set(ServerHealth{Addr: addr, Reason: "an earlier PING is still unanswered"})
		return
	}
	defer ch.inFlight.Delete(addr)
	ch.set(ServerHealth{Addr: addr, Reason: ch.late})
	h := ServerHealth{Addr: addr, Serving: true}
	if err := c.Ping(ctx).Err(); err != nil {
		h.Serving, h.Reason = false, "ping: "+err.Error()
	}
	ch.set(h)
}

// pingClient is ping for ForEachShard and ForEachMaster.
func (ch *checks) pingClient(ctx context.Context, c *redis.Client) error {
	ch.ping(ctx, c.Options().Addr, c)
	return nil
}

// seeds records addrs as not serving, for reason.
func (ch *checks) seeds(addrs []string, reason string) {
	for _, a := range addrs {
		ch.set(ServerHealth{Addr: a, Reason: reason})
	}
}

func (ch *checks) set(h ServerHealth) {
	ch.mu.Lock()
	ch.res[h.Addr] = h
	ch.mu.Unlock()
}

func (ch *checks) empty() bool {
	ch.mu.Lock()
	defer ch.mu.Unlock()
	return len(ch.res) == 0
}

// result is what the checks found by now, in address order, with each
// expected server that has no result (a Ring shard its heartbeat holds
// down) not serving, for missing; with fallback, the expected servers (a
// Cluster's seeds) are added only when there is no result at all.
func (ch *checks) result(expected []string, missing string, fallback bool) []ServerHealth {
	ch.mu.Lock()
	res := maps.Clone(ch.res)
	ch.mu.Unlock()
	if fallback && len(res) > 0 {
		expected = nil
	}
	for _, a := range expected {
		if _, ok := res[a]; !ok {
			res[a] = ServerHealth{Addr: a, Reason: missing}
		}
	}
	return slices.SortedFunc(maps.Values(res), func(a, b ServerHealth) int { return cmp.Compare(a.Addr, b.Addr) })
}
