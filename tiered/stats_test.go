package tiered_test

import (
	"context"
	"encoding/json"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/strata-cache/strata/tiered"
)

// Every caller counts: 100 concurrent Gets of one key, coalesced into one
// load, are 100 requests, and so are 100 keys' worth of GetMany callers.
// Before, only the caller that led the flight was counted, so a hit ratio
// built on Stats was wrong under load.
func TestStatsCountEveryCaller(t *testing.T) {
	ctx := context.Background()
	c, _ := newRedisClient(t, tiered.Config{})
	cache := newCache(t, c, "stats", tiered.Options[string]{TTL: time.Hour})

	const callers = 100
	release := make(chan struct{})
	load := func(context.Context, string) (string, error) {
		<-release
		return "v", nil
	}
	var started, done sync.WaitGroup
	started.Add(callers)
	for range callers {
		done.Go(func() {
			started.Done()
			if v, err := cache.Get(ctx, "hot", load); err != nil || v != "v" {
				t.Errorf("Get = %q, %v", v, err)
			}
		})
	}
	started.Wait()
	close(release)
	done.Wait()
	s := cache.Stats()
	if s.Requests() != callers || s.Loads != 1 {
		t.Fatalf("after %d Gets of one key: %d requests, %d loads (%+v); want %d and 1", callers, s.Requests(), s.Loads, s, callers)
	}
	// Callers that arrived before the fill waited on the flight (misses,
	// coalesced but the leader); later ones hit L1.
	if s.Misses+s.L1Hits != callers || s.Coalesced != s.Misses-1 {
		t.Errorf("misses %d + L1 hits %d, coalesced %d: want %d in all, coalesced = misses - 1", s.Misses, s.L1Hits, s.Coalesced, callers)
	}

	// A GetMany whose keys another caller is loading counts them too.
	release = make(chan struct{})
	entered := make(chan struct{}, 2)
	loadMany := func(_ context.Context, keys []string) (map[string]string, error) {
		entered <- struct{}{}
		<-release
		m := map[string]string{}
		for _, k := range keys {
			m[k] = "v"
		}
		return m, nil
	}
	keys := []string{"a", "b", "c"}
	getMany := func() {
		if m, err := cache.GetMany(ctx, keys, loadMany); err != nil || len(m) != len(keys) {
			t.Errorf("GetMany = %v, %v", m, err)
		}
	}
	done.Go(getMany)
	<-entered // the first GetMany leads the keys' loads
	done.Go(getMany)
	close(release)
	done.Wait()
	after := cache.Stats()
	if got := after.Requests() - s.Requests(); got != 2*uint64(len(keys)) {
		t.Errorf("two GetMany calls of %d keys counted %d requests (%+v), want %d", len(keys), got, after, 2*len(keys))
	}
}

// Stats marshal with snake_case names, and the ratios add up.
func TestStatsJSONAndRatios(t *testing.T) {
	s := tiered.Stats{L1Hits: 6, L2Hits: 2, Misses: 1, StaleHits: 1}
	b, err := json.Marshal(s)
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{`"l1_hits":6`, `"l2_hits":2`, `"misses":1`, `"stale_hits":1`, `"coalesced":0`} {
		if !strings.Contains(string(b), name) {
			t.Errorf("JSON %s lacks %s", b, name)
		}
	}
	if s.Requests() != 10 || s.HitRatio() != 0.8 || s.L1HitRatio() != 0.6 || s.L2HitRatio() != 0.2 {
		t.Errorf("requests %d, ratios %v %v %v; want 10, 0.8, 0.6, 0.2", s.Requests(), s.HitRatio(), s.L1HitRatio(), s.L2HitRatio())
	}
	if (tiered.Stats{}).HitRatio() != 0 {
		t.Error("HitRatio of no requests is not 0")
	}
}

// Client.Stats sums the caches of each namespace and carries the bus's and
// the retrier's counters; a ClientObserver is handed the client at NewClient.
func TestClientStats(t *testing.T) {
	ctx := context.Background()
	obs := &statsObserver{}
	c, _ := newRedisClient(t, tiered.Config{Observer: obs})
	a1 := newCache(t, c, "a", tiered.Options[string]{})
	a2 := newCache(t, c, "a", tiered.Options[string]{})
	b := newCache(t, c, "b", tiered.Options[string]{})
	load := func(context.Context, string) (string, error) { return "v", nil }
	for _, cache := range []*tiered.Cache[string]{a1, a2, b} {
		if _, err := cache.Get(ctx, "k", load); err != nil {
			t.Fatal(err)
		}
	}
	if err := b.Set(ctx, "k", "w"); err != nil { // published: the bus counts it
		t.Fatal(err)
	}
	if obs.read == nil {
		t.Fatal("NewClient did not hand the ClientObserver its client")
	}
	s := obs.read()
	if got := s.Caches["a"].Requests(); got != 2 {
		t.Errorf("namespace a: %d requests over its two caches (%+v), want 2", got, s.Caches)
	}
	if got := s.Caches["b"].Requests(); got != 1 {
		t.Errorf("namespace b: %d requests, want 1", got)
	}
	if s.Bus.Published == 0 {
		t.Errorf("bus counters %+v: the Set's invalidation is not counted", s.Bus)
	}
}

type statsObserver struct{ read func() tiered.ClientStats }

func (o *statsObserver) Observe(context.Context, tiered.Event) {}
func (o *statsObserver) ObserveClient(c *tiered.Client)        { o.read = c.Stats }
