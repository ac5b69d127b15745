package tiered_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/strata-cache/strata/internal/redistest"
	"github.com/strata-cache/strata/tiered"
)

// Issue 10's blast radius under writes, on a 3-shard ring: 3 replicas (with
// gossip) run reads, database updates with Delete, and Sets while one shard
// at a time is stalled (SIGSTOP) and resumed. At every sample, no replica
// may hold more than the stalled shard out of service, and after a resume
// every replica serves every shard again within the recovery bound.
func TestStallUnderWritesStaysOneShard(t *testing.T) {
	if testing.Short() {
		t.Skip("stalls take seconds")
	}
	f := newShardFleet(t, 3)
	var clients []*tiered.Client
	var caches []*tiered.Cache[string]
	for range 3 {
		c := f.replica(t)
		clients = append(clients, c)
		caches = append(caches, newCache(t, c, "users", tiered.Options[string]{TTL: 30 * time.Second}))
	}
	db := &sourceOfTruth{data: map[string]string{}}
	keys := shardKeys(200)
	var version atomic.Int64
	for _, k := range keys {
		db.put(k, "0")
	}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var gets, getErrors atomic.Int64
	for n, cache := range caches {
		for w := range 4 {
			rng := rand.New(rand.NewPCG(uint64(n), uint64(w)))
			wg.Go(func() {
				ctx := context.Background()
				for {
					select {
					case <-stop:
						return
					default:
					}
					k := keys[rng.IntN(len(keys))]
					switch p := rng.IntN(100); {
					case p < 80:
						gets.Add(1)
						if _, err := cache.Get(ctx, k, db.load); err != nil {
							getErrors.Add(1)
						}
					case p < 90:
						db.put(k, strconv.FormatInt(version.Add(1), 10))
						_ = cache.Delete(ctx, k)
					default:
						v := strconv.FormatInt(version.Add(1), 10)
						db.put(k, v)
						_ = cache.Set(ctx, k, v)
					}
				}
			})
		}
	}
	// out samples, per replica, the shards out of service.
	out := func() [][]string {
		res := make([][]string, len(clients))
		for i, c := range clients {
			for _, h := range c.L2().Health() {
				if !h.Serving {
					res[i] = append(res[i], h.Addr)
				}
			}
		}
		return res
	}
	for round := range 4 {
		stalled := f.shards[round%len(f.shards)]
		stalled.Pause()
		deadline := time.Now().Add(1500 * time.Millisecond) // the stall's length
		worst := 0
		for time.Now().Before(deadline) {
			for i, shards := range out() {
				worst = max(worst, len(shards))
				for _, a := range shards {
					if a != stalled.Addr() {
						t.Errorf("round %d: replica %d has healthy shard %s out of service while %s is stalled (out: %v)", round, i, a, stalled.Addr(), shards)
					}
				}
			}
			time.Sleep(10 * time.Millisecond) // sampling period
		}
		stalled.Resume()
		resumed := time.Now()
		redistest.WaitFor(t, 10*time.Second, func() bool {
			for _, shards := range out() {
				if len(shards) > 0 {
					return false
				}
			}
			return true
		}, fmt.Sprintf("round %d: every replica serves every shard again", round))
		t.Logf("round %d: stalled %s; at most %d shard(s) out per replica; every shard served again %v after the resume",
			round, stalled.Addr(), worst, time.Since(resumed).Round(time.Millisecond))
	}
	close(stop)
	wg.Wait()
	t.Logf("%d Gets, %d errors, %d loads", gets.Load(), getErrors.Load(), db.loads.Load())
	if n := getErrors.Load(); n > 0 {
		t.Errorf("%d Gets failed", n)
	}
}
