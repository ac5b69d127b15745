package tiered_test

import (
	"bytes"
	"context"
	"math"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/strata-cache/strata/l2"
	"github.com/strata-cache/strata/tiered"
)

// auditedClient returns a client on a fresh Redis with every L1 hit audited
// (window 100 ms), logging to the returned buffer.
func auditedClient(t *testing.T) (*tiered.Cache[string], *syncBuffer, func(args ...any) any) {
	t.Helper()
	var logs syncBuffer
	c, srv := newRedisClient(t, tiered.Config{Logger: newBufferLogger(&logs),
		Audit: tiered.AuditConfig{SampleRate: 1, Window: 100 * time.Millisecond, MaxRate: 100_000}})
	cache := newCache(t, c, "ns", tiered.Options[string]{TTL: time.Hour})
	return cache, &logs, func(args ...any) any { return srv.Do(t, args...) }
}

// syncBuffer is a bytes.Buffer safe for a logger and a test to share.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// hitL1 reads key n times, each an L1 hit answering want.
func hitL1(t *testing.T, cache *tiered.Cache[string], key, want string, n int) {
	t.Helper()
	for range n {
		info, v, err := getWithInfo(cache, key)
		if err != nil || v != want || info.Tier != tiered.TierL1 {
			t.Fatalf("Get(%q) = %q, %v from %v; want %q from L1", key, v, err, info.Tier, want)
		}
	}
}

func getWithInfo(cache *tiered.Cache[string], key string) (tiered.Info, string, error) {
	v, info, err := cache.GetWithInfo(context.Background(), key, nil)
	return info, v, err
}

// waitAudited waits until the cache's samples and skips add up to n.
func waitAudited(t *testing.T, cache *tiered.Cache[string], n uint64) tiered.AuditStats {
	t.Helper()
	var s tiered.AuditStats
	if !eventually(10*time.Second, func() bool {
		s = cache.Stats().Audit
		return s.Samples+s.Skipped >= n
	}) {
		t.Fatalf("audit stats %+v, want %d samples checked", s, n)
	}
	return s
}

func TestAuditCountsConsistentHits(t *testing.T) {
	cache, logs, _ := auditedClient(t)
	if err := cache.Set(context.Background(), "k", "v1"); err != nil {
		t.Fatal(err)
	}
	hitL1(t, cache, "k", "v1", 20)
	s := waitAudited(t, cache, 20)
	if s.Samples != 20 || s.Inconsistent != 0 || s.Skipped != 0 {
		t.Fatalf("audit stats %+v, want 20 consistent samples", s)
	}
	if got, want := s.Nines(), math.Log10(20); math.Abs(got-want) > 1e-9 {
		t.Errorf("Nines = %v, want %v (the most 20 samples can show)", got, want)
	}
	if strings.Contains(logs.String(), "audit") {
		t.Errorf("a consistent sample was logged:\n%s", logs)
	}
}

// TestAuditFindsACopyL2Replaced: a write that reached L2 but not this
// replica's L1 (a lost invalidation, made here by writing Redis directly)
// makes every later L1 hit inconsistent once the write is older than the
// window; the log names the key and its history here.
func TestAuditFindsACopyL2Replaced(t *testing.T) {
	cache, logs, do := auditedClient(t)
	if err := cache.Set(context.Background(), "k", "v1"); err != nil {
		t.Fatal(err)
	}
	written := time.Now().Add(-time.Second).UnixNano() // a second before the hits
	newer := l2.Envelope{Version: uint64(time.Now().UnixNano()), Created: written,
		FreshUntil: time.Now().Add(time.Hour).UnixNano(), StaleUntil: time.Now().Add(time.Hour).UnixNano(), Payload: []byte("v2")}
	do("SET", "strata:ns:{k}", newer.Encode())
	hitL1(t, cache, "k", "v1", 5)
	s := waitAudited(t, cache, 5)
	if s.Samples != 5 || s.Inconsistent != 5 {
		t.Fatalf("audit stats %+v, want 5 inconsistent samples", s)
	}
	if s.Nines() != -math.Log10(1) {
		t.Errorf("Nines = %v, want 0 (every sample inconsistent)", s.Nines())
	}
	out := logs.String()
	for _, want := range []string{"strata: audit: an L1 hit served a value L2 had replaced", "key=k", "written here version"} {
		if !strings.Contains(out, want) {
			t.Errorf("log lacks %q:\n%s", want, out)
		}
	}
}

// TestAuditWindowExcusesRecentWrites: a newer L2 value written less than
// the window before the hit is not (yet) an inconsistency, and neither is a
// newer version of the same value (a refresh that loaded it again).
func TestAuditWindowExcusesRecentWrites(t *testing.T) {
	c, srv := newRedisClient(t, tiered.Config{Audit: tiered.AuditConfig{SampleRate: 1, Window: time.Hour, MaxRate: 100_000}})
	wide := newCache(t, c, "ns", tiered.Options[string]{TTL: time.Hour})
	if err := wide.Set(context.Background(), "k", "v1"); err != nil {
		t.Fatal(err)
	}
	// Written a minute before the hits, inside the hour's window.
	minute := l2.Envelope{Version: uint64(time.Now().UnixNano()), Created: time.Now().Add(-time.Minute).UnixNano(),
		FreshUntil: time.Now().Add(time.Hour).UnixNano(), StaleUntil: time.Now().Add(time.Hour).UnixNano(), Payload: []byte("v2")}
	srv.Do(t, "SET", "strata:ns:{k}", minute.Encode())
	hitL1(t, wide, "k", "v1", 3)
	if s := waitAudited(t, wide, 3); s.Samples != 3 || s.Inconsistent != 0 {
		t.Fatalf("audit stats %+v, want 3 consistent samples inside the window", s)
	}

	cache, _, do := auditedClient(t)
	if err := cache.Set(context.Background(), "k", "v1"); err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	recent := l2.Envelope{Version: uint64(now.UnixNano()), Created: now.Add(time.Minute).UnixNano(),
		FreshUntil: now.Add(time.Hour).UnixNano(), StaleUntil: now.Add(time.Hour).UnixNano(), Payload: []byte("v2")}
	do("SET", "strata:ns:{k}", recent.Encode())
	hitL1(t, cache, "k", "v1", 3)
	waitAudited(t, cache, 3)
	same := l2.Envelope{Version: uint64(now.UnixNano()), Created: now.Add(-time.Hour).UnixNano(),
		FreshUntil: now.Add(time.Hour).UnixNano(), StaleUntil: now.Add(time.Hour).UnixNano(), Payload: []byte("v1")}
	do("SET", "strata:ns:{k}", same.Encode())
	hitL1(t, cache, "k", "v1", 3)
	if s := waitAudited(t, cache, 6); s.Samples != 6 || s.Inconsistent != 0 {
		t.Fatalf("audit stats %+v, want 6 consistent samples", s)
	}
}

// TestAuditFindsACopyL2Dropped: a key deleted from L2 (a lost Delete)
// whose L1 copy lives on for the window after the check is inconsistent; a
// copy L1 drops within the window is not.
func TestAuditFindsACopyL2Dropped(t *testing.T) {
	cache, _, do := auditedClient(t)
	ctx := context.Background()
	for _, k := range []string{"lost", "heard"} {
		if err := cache.Set(ctx, k, "v1"); err != nil {
			t.Fatal(err)
		}
	}
	do("DEL", "strata:ns:{lost}")
	hitL1(t, cache, "lost", "v1", 1)
	if s := waitAudited(t, cache, 1); s.Inconsistent != 1 {
		t.Fatalf("audit stats %+v, want the lost Delete's copy inconsistent", s)
	}
	do("DEL", "strata:ns:{heard}")
	hitL1(t, cache, "heard", "v1", 1)
	if err := cache.Delete(ctx, "heard"); err != nil { // the invalidation, heard in time
		t.Fatal(err)
	}
	if s := waitAudited(t, cache, 2); s.Samples != 2 || s.Inconsistent != 1 {
		t.Fatalf("audit stats %+v, want the second copy consistent", s)
	}
}

// TestAuditRateLimits: samples beyond MaxRate are skipped and counted, not
// queued without bound.
func TestAuditRateLimits(t *testing.T) {
	c, _ := newRedisClient(t, tiered.Config{Audit: tiered.AuditConfig{SampleRate: 1, MaxRate: 1}})
	cache := newCache(t, c, "ns", tiered.Options[string]{TTL: time.Hour})
	if err := cache.Set(context.Background(), "k", "v"); err != nil {
		t.Fatal(err)
	}
	hitL1(t, cache, "k", "v", 50)
	s := waitAudited(t, cache, 50)
	if s.Skipped < 40 || s.Samples+s.Skipped != 50 {
		t.Fatalf("audit stats %+v at one check a second, want most of 50 skipped", s)
	}
}

func TestAuditConfigValidated(t *testing.T) {
	for _, a := range []tiered.AuditConfig{{SampleRate: -0.1}, {SampleRate: 1.5}, {SampleRate: math.NaN()},
		{SampleRate: 0.1, Window: -time.Second}, {SampleRate: 0.1, MaxRate: -1}} {
		if _, err := tiered.NewClient(context.Background(), tiered.Config{Audit: a}); err == nil || !strings.Contains(err.Error(), "Audit") {
			t.Errorf("NewClient with Audit %+v: err = %v, want one naming Audit", a, err)
		}
	}
}

func TestAuditStatsNines(t *testing.T) {
	for _, tt := range []struct {
		s    tiered.AuditStats
		want float64
	}{
		{tiered.AuditStats{}, 0},
		{tiered.AuditStats{Samples: 1000, Inconsistent: 1}, 3},
		{tiered.AuditStats{Samples: 1000}, 3},
		{tiered.AuditStats{Samples: 100, Inconsistent: 10}, 1},
	} {
		if got := tt.s.Nines(); math.Abs(got-tt.want) > 1e-9 {
			t.Errorf("%+v.Nines() = %v, want %v", tt.s, got, tt.want)
		}
	}
}
