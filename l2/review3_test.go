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

// partition is three replicas of one Ring whose shard0 R1 and R3 reach
// each through their own server (a0, c0; paused to cut them off) while R2
// reaches the real one, and k, a key of shard0.
type partition struct {
	shards     []*redistest.Server
	a0, c0     *redistest.Server
	r1, r2, r3 *Store
	k          string
}

// newPartition opens the replicas, R3 with health interval slow (R1 and R2
// 50 ms), waits until all serve, then pauses a0 and c0 and waits until every
// replica holds shard0 out and sends k to one stand-in.
func newPartition(t *testing.T, slow time.Duration) *partition {
	t.Helper()
	p := &partition{shards: redistest.StartShards(t, 3), a0: redistest.Start(t), c0: redistest.Start(t)}
	fast := Config{HealthInterval: 50 * time.Millisecond}
	p.r1 = openWith(t, fast, p.a0, p.shards[1], p.shards[2])
	p.r2 = openWith(t, fast, p.shards...)
	p.r3 = openWith(t, Config{HealthInterval: slow}, p.c0, p.shards[1], p.shards[2])
	redistest.WaitFor(t, 10*time.Second, func() bool { return p.serving(p.r1) && p.serving(p.r2) && p.serving(p.r3) }, "all serve")
	for i := 0; ; i++ {
		if p.k = fmt.Sprint("k", i); p.r2.Server(p.k) == p.shards[0].Addr() {
			break
		}
	}
	p.a0.Pause()
	p.c0.Pause()
	redistest.WaitFor(t, 20*time.Second, func() bool {
		return !p.serving(p.r1) && !p.serving(p.r2) && !p.serving(p.r3) && p.agree() && strings.Contains(p.r2.Key("ns", p.k), "@")
	}, "shard0 out on every replica, one stand-in for k")
	return p
}

func (p *partition) serving(s *Store) bool { return s.Health()[0].Serving }

// agree reports whether every replica sends k to the same Redis key.
func (p *partition) agree() bool {
	return p.r1.Key("ns", p.k) == p.r2.Key("ns", p.k) && p.r2.Key("ns", p.k) == p.r3.Key("ns", p.k)
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
	p := newPartition(t, time.Second)
	r1, r2, r3, k := p.r1, p.r2, p.r3, p.k
	all := []*Store{r1, r2, r3}
	serving, agree := p.serving, p.agree
	standIn := r2.Key("ns", k)
	t.Logf("outage: k at %s on every replica", standIn)
	if err := r2.Write(ctx, "ns", k, []byte("v1"), time.Minute); err != nil {
		t.Fatal(err)
	}

	p.a0.Resume() // R1 reaches shard0 again; R3 still cannot
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
