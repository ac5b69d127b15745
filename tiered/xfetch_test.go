package tiered

import (
	"context"
	"math"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/strata-cache/strata/internal/clock"
)

// TestXFetchTriggerFrequency checks, with a manual clock and a seeded random
// source, that a hit at remaining time r before expiry triggers an early
// refresh with probability exp(-r/(delta·beta)).
func TestXFetchTriggerFrequency(t *testing.T) {
	const delta = 100 * time.Millisecond
	for _, beta := range []float64{0.5, 1, 2} {
		for _, remaining := range []time.Duration{10 * time.Millisecond, 50 * time.Millisecond, 100 * time.Millisecond, 200 * time.Millisecond} {
			src := rand.New(rand.NewPCG(1, uint64(remaining)))
			var mu sync.Mutex
			clk := clock.NewManual(time.Unix(1_700_000_000, 0))
			client, err := NewClient(context.Background(), Config{Clock: clk, Rand: func() float64 {
				mu.Lock()
				defer mu.Unlock()
				return src.Float64()
			}})
			if err != nil {
				t.Fatal(err)
			}
			cache, err := NewCache(client, "ns", Options[string]{EarlyRefreshBeta: beta})
			if err != nil {
				t.Fatal(err)
			}
			e := &entry[string]{Key: "k", Value: cached[string]{loadDuration: delta}, FreshUntil: clk.NowNano() + int64(remaining)}
			const draws = 20000
			hits := 0
			for range draws {
				if cache.xfetchDue(e, clk.NowNano()) {
					hits++
				}
			}
			got := float64(hits) / draws
			want := math.Exp(-float64(remaining) / (float64(delta) * beta))
			if math.Abs(got-want) > 0.02 {
				t.Errorf("beta %v, remaining %v: trigger frequency %.4f, want %.4f", beta, remaining, got, want)
			}
			_ = client.Close()
		}
	}
}
