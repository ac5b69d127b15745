package tiered_test

import (
	"context"
	"testing"
	"time"

	"github.com/strata-cache/strata/internal/redistest"
	"github.com/strata-cache/strata/l2"
	"github.com/strata-cache/strata/tiered"
)

// Issue 10's fencing storm, its first step made deterministic: replica A has
// taken a stalled shard X out of service and routes X's keys to stand-ins;
// replica B has not noticed yet (its health checks are an hour apart), so its
// write of such a key goes to X, fails, and is announced L2Missed. A used to
// take out of service the server *it* routes the key to, a healthy stand-in;
// the announcement now names X, and A fences only X, which it has already.
func TestFailedWriteElsewhereFencesOnlyItsServer(t *testing.T) {
	ctx := context.Background()
	f := newShardFleet(t, 3)
	a := f.replica(t)
	cfg := tiered.Config{NodeID: "replica-b", Gossip: localGossip(f.seed),
		Redis: l2.Config{Addrs: f.addrs, Timeout: l2.DefaultTimeout, HealthInterval: time.Hour}}
	b := newClient(t, cfg)
	ca := newCache(t, a, "users", tiered.Options[string]{TTL: time.Hour})
	cb := newCache(t, b, "users", tiered.Options[string]{TTL: time.Hour})
	key := "k"
	x := f.owner(t, a, "users", key)
	x.Pause()
	t.Cleanup(x.Resume)
	redistest.WaitFor(t, 10*time.Second, func() bool { return !serving(a, x.Addr()) }, "A takes the stalled shard out")
	before := a.BusStats().Applied
	_ = cb.Set(ctx, key, "v") // B still routes to X: the write fails there
	redistest.WaitFor(t, 10*time.Second, func() bool { return a.BusStats().Applied > before }, "A hears of B's write")
	for _, h := range a.L2().Health() {
		if h.Addr != x.Addr() && !h.Serving {
			t.Fatalf("A took healthy shard %s out of service (%s) for a write that failed on %s", h.Addr, h.Reason, x.Addr())
		}
	}
	_ = ca
}
