package l2

import (
	"context"
	"testing"
	"time"

	"github.com/strata-cache/strata/internal/redistest"
)

// Replicas with different health intervals (as the review3 tests run them):
// markScript PEXPIREd the whole hash to the setter's own TTL, so a fast
// replica's mark (TTL 1 s) cut short a slow replica's field (TTL
// 4*2.5s+2*250ms). Once the fast replica reached the shard again and stopped
// marking, the key lapsed 1 s later and took the slow replica's live field
// with it, until the slow replica's next round (2.5 s). Meanwhile R2, which
// reaches shard0, returned it to service while R3 still routed its keys to a
// stand-in: the review3 failure, back through the key's expiry. A mark now
// never shortens the key's life.
func TestReview4FastReplicasTTLDropsSlowReplicasMarker(t *testing.T) {
	ctx := context.Background()
	p := newPartition(t, 2500*time.Millisecond)
	r1, r2, r3, k := p.r1, p.r2, p.r3, p.k
	all := []*Store{r1, r2, r3}
	serving, agree := p.serving, p.agree
	if err := r2.Write(ctx, "ns", k, []byte("v1"), time.Minute); err != nil {
		t.Fatal(err)
	}

	// Resume R1's shard0 just after R3, then R1, refreshed their markers on
	// shard1.
	raw := p.shards[1].Client(t)
	marker := outKey(r3.health.prefix, "shard0")
	field := r3.health.id
	first := raw.HGet(ctx, marker, field).Val()
	redistest.WaitFor(t, 15*time.Second, func() bool {
		v, err := raw.HGet(ctx, marker, field).Result()
		return err == nil && v != first
	}, "R3 refreshes its marker")
	// Then R1 marks once more (every round, while R1 cannot reach shard0).
	mine := raw.HGet(ctx, marker, r1.health.id).Val()
	redistest.WaitFor(t, 5*time.Second, func() bool {
		v, err := raw.HGet(ctx, marker, r1.health.id).Result()
		return err == nil && v != mine
	}, "R1 refreshes its marker after R3")
	t.Logf("R3's field %s; PTTL of %s: %v", raw.HGet(ctx, marker, field).Val(), marker, raw.PTTL(ctx, marker).Val())
	p.a0.Resume()

	// R3 still cannot reach shard0 and its field says so for 10 s: no
	// replica may serve shard0.
	if eventually(3500*time.Millisecond, func() bool { return serving(r2) }) {
		t.Errorf("R2 serves shard0 while R3 cannot reach it (R3's field %q, marker exists %d); k at R2 %s, at R3 %s",
			raw.HGet(ctx, marker, field).Val(), raw.Exists(ctx, marker).Val(), r2.Key("ns", k), r3.Key("ns", k))
		if err := r2.Write(ctx, "ns", k, []byte("v2"), time.Minute); err != nil {
			t.Fatal(err)
		}
		if b, _ := r3.Get(ctx, "ns", k); string(b) != "v2" {
			t.Errorf("R3 reads k = %q right after R2's write of v2 returned", b)
		}
		redistest.WaitFor(t, 20*time.Second, func() bool { return !serving(r2) && agree() }, "shard0 out again on every replica")
		for i, s := range all {
			if b, err := s.Get(ctx, "ns", k); string(b) != "v2" {
				t.Errorf("R%d reads k = %q, %v at %s; the last write was v2", i+1, b, err, s.Key("ns", k))
			}
		}
	}
	p.c0.Resume()
}
