package l2_test

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/strata-cache/strata/internal/redistest"
	"github.com/strata-cache/strata/l2"
)

// healthWait bounds the waits for a server's state to show in Health.
const healthWait = 15 * time.Second

// addrsIn returns the addresses of hs.
func addrsIn(hs []l2.ServerHealth) []string {
	var out []string
	for _, h := range hs {
		out = append(out, h.Addr)
	}
	return out
}

// find returns the entry of hs for addr.
func find(hs []l2.ServerHealth, addr string) (l2.ServerHealth, bool) {
	for _, h := range hs {
		if h.Addr == addr {
			return h, true
		}
	}
	return l2.ServerHealth{}, false
}

// Health of a Redis Cluster Strata connected: its seeds until go-redis has
// loaded the topology, then one entry per master with its breaker; a killed
// master is out of service once its breaker opens. A caller's ClusterClient
// is PINGed: the killed master does not answer.
func TestHealthCluster(t *testing.T) {
	ctx := context.Background()
	c := redistest.StartCluster(t, 3)
	s := openStore(t, l2.Config{ClusterAddrs: c.Addrs(), Timeout: testTimeout})
	caller := openStore(t, l2.Config{Client: c.Client(t), HealthTimeout: testTimeout})
	masters := addrsOf(c.Masters)
	slices.Sort(masters)

	for _, h := range s.Health() {
		if h.Serving || h.Reason == "" || h.Watched {
			t.Errorf("before any command: %+v, want a seed not serving, with a reason", h)
		}
	}
	if _, err := s.Get(ctx, ns, "k"); err != nil {
		t.Fatal(err)
	}
	for name, st := range map[string]*l2.Store{"own": s, "caller's": caller} {
		hs := st.Health()
		if !slices.Equal(addrsIn(hs), masters) {
			t.Fatalf("%s cluster: servers %v, want the masters %v", name, addrsIn(hs), masters)
		}
		for _, h := range hs {
			breaker := map[string]string{"own": "closed", "caller's": ""}[name]
			if !h.Serving || h.Reason != "" || h.Breaker != breaker || h.Watched || h.Dirty {
				t.Errorf("%s cluster: %+v, want serving, breaker %q, not watched", name, h, breaker)
			}
		}
	}

	dead := c.Masters[0].Addr()
	c.Masters[0].Kill()
	keys := make([]string, 64) // over every master's slots
	for i := range keys {
		keys[i] = fmt.Sprint("key-", i)
	}
	redistest.WaitFor(t, healthWait, func() bool {
		for _, k := range keys {
			_, _ = s.Get(ctx, ns, k)
		}
		h, _ := find(s.Health(), dead)
		return !h.Serving && h.Breaker == "open" && strings.Contains(h.Reason, "breaker")
	}, "own cluster: the killed master's breaker open, not serving")
	for _, h := range s.Health() {
		if h.Addr != dead && !h.Serving {
			t.Errorf("own cluster: %+v out of service with only %s killed", h, dead)
		}
	}
	redistest.WaitFor(t, healthWait, func() bool {
		h, ok := find(caller.Health(), dead)
		return ok && !h.Serving && strings.HasPrefix(h.Reason, "ping: ")
	}, "caller's cluster: the killed master not answering its PING")
}

// Health of a caller's *redis.Client and *redis.Ring: a PING per server, a
// paused one not serving, with a reason, and serving again once resumed.
func TestHealthCallerClients(t *testing.T) {
	shards := redistest.StartShards(t, 3)
	single := redis.NewClient(&redis.Options{Addr: shards[0].Addr()})
	t.Cleanup(func() { _ = single.Close() })
	ringAddrs := map[string]string{}
	for i, sh := range shards {
		ringAddrs[fmt.Sprint("s", i)] = sh.Addr()
	}
	ring := redis.NewRing(&redis.RingOptions{Addrs: ringAddrs})
	t.Cleanup(func() { _ = ring.Close() })
	const timeout = 300 * time.Millisecond
	stores := map[string]*l2.Store{
		"client": openStore(t, l2.Config{Client: single, HealthTimeout: timeout}),
		"ring":   openStore(t, l2.Config{Client: ring, HealthTimeout: timeout}),
	}
	want := map[string][]string{"client": {shards[0].Addr()}, "ring": addrsOf(shards)}
	slices.Sort(want["ring"])
	serving := func(st *l2.Store, addrs []string) bool {
		hs := st.Health()
		if !slices.Equal(addrsIn(hs), addrs) {
			return false
		}
		for _, h := range hs {
			if !h.Serving || h.Reason != "" || h.Breaker != "" || h.Watched {
				return false
			}
		}
		return true
	}
	for name, st := range stores {
		redistest.WaitFor(t, healthWait, func() bool { return serving(st, want[name]) },
			"%s: every server serving: %+v", name, st.Health())
	}

	shards[0].Pause()
	for name, st := range stores {
		redistest.WaitFor(t, healthWait, func() bool {
			hs := st.Health()
			for _, h := range hs {
				if (h.Addr == shards[0].Addr()) == h.Serving {
					return false
				}
			}
			h, _ := find(hs, shards[0].Addr())
			return len(hs) == len(want[name]) && h.Reason != ""
		}, "%s: the paused server alone not serving: %+v", name, st.Health())
	}
	shards[0].Resume()
	for name, st := range stores {
		redistest.WaitFor(t, healthWait, func() bool { return serving(st, want[name]) },
			"%s: serving again after resume: %+v", name, st.Health())
	}
}
