package l2

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/strata-cache/strata/internal/redistest"
)

// openWith opens a Ring store over addrs with cfg's health settings.
func openWith(t *testing.T, cfg Config, servers ...*redistest.Server) *Store {
	t.Helper()
	for _, srv := range servers {
		cfg.Addrs = append(cfg.Addrs, srv.Addr())
	}
	s, err := Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

// Three replicas of one Ring. R1 and R3 lose shard0 (each through its own
// path: here its own server for the name shard0, paused), R2 still reaches
// it and is held out by their markers. R1 reaches shard0 again and removes
// its own marker. With one marker per shard (the value naming the replica
// that set it last, R1), that removed R3's hold too: R2 returned shard0 to
// service while R3 routed its keys to stand-ins, and when R3's marker came
// back R2 fenced shard0 without a new epoch and read the stand-in copy
// written before, older than its own write since. Each replica now keeps
// its own marker (a hash field): R3's holds shard0 out until R3 reaches it.
func TestReview3MarkerRemovalErasesAnotherReplicasHold(t *testing.T) {
	ctx := context.Background()
	shards := redistest.StartShards(t, 3)
	a0, c0 := redistest.Start(t), redistest.Start(t)
	fast := Config{HealthInterval: 50 * time.Millisecond}
	slow := Config{HealthInterval: time.Second}
	r1 := openWith(t, fast, a0, shards[1], shards[2])
	r2 := openWith(t, fast, shards...)
	r3 := openWith(t, slow, c0, shards[1], shards[2])
	all := []*Store{r1, r2, r3}
	serving := func(s *Store) bool { return s.Health()[0].Serving }
	redistest.WaitFor(t, 5*time.Second, func() bool { return serving(r1) && serving(r2) && serving(r3) }, "all serve")

	var k string
	for i := 0; ; i++ {
		if k = fmt.Sprint("k", i); r2.Server(k) == shards[0].Addr() {
			break
		}
	}
	agree := func() bool {
		return r1.Key("ns", k) == r2.Key("ns", k) && r2.Key("ns", k) == r3.Key("ns", k)
	}

	a0.Pause()
	c0.Pause()
	redistest.WaitFor(t, 10*time.Second, func() bool {
		return !serving(r1) && !serving(r2) && !serving(r3) && agree() && strings.Contains(r2.Key("ns", k), "@")
	}, "shard0 out on every replica, one stand-in for k")
	standIn := r2.Key("ns", k)
	t.Logf("outage: k at %s on every replica", standIn)
	if err := r2.Write(ctx, "ns", k, []byte("v1"), time.Minute); err != nil {
		t.Fatal(err)
	}

	a0.Resume() // R1 reaches shard0 again; R3 still cannot
	// shard0 must stay out while R3 cannot reach it; with the shared
	// marker removed, R2 returned it within a few rounds.
	if eventually(1500*time.Millisecond, func() bool { return serving(r2) }) {
		t.Errorf("R2 serves shard0 while R3 cannot reach it; k at R2 %s, at R3 %s", r2.Key("ns", k), r3.Key("ns", k))
	}
	if err := r2.Write(ctx, "ns", k, []byte("v2"), time.Minute); err != nil {
		t.Fatal(err)
	}
	if b, _ := r3.Get(ctx, "ns", k); string(b) != "v2" {
		t.Errorf("R3 reads k = %q right after R2's write of v2 returned (replicas disagree where shard0's keys live)", b)
	}

	// R3 keeps its marker: every replica takes shard0 out again.
	redistest.WaitFor(t, 10*time.Second, func() bool { return !serving(r2) && agree() }, "shard0 out again on every replica")
	for i, s := range all {
		b, err := s.Get(ctx, "ns", k)
		if string(b) != "v2" {
			t.Errorf("R%d reads k = %q, %v at %s after every replica agrees again; the last write was v2", i+1, b, err, s.Key("ns", k))
		}
	}
}

// eventually polls cond until it holds or timeout passes, without failing.
func eventually(timeout time.Duration, cond func() bool) bool {
	for deadline := time.Now().Add(timeout); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
		if cond() {
			return true
		}
	}
	return cond()
}
