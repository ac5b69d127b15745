package l2_test

import (
	"context"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/strata-cache/strata/internal/redistest"
	"github.com/strata-cache/strata/l2"
)

// Store.Reachable's doc: each server is PINGed for "at most bound each (the
// connection's DialTimeout plus Timeout, or 2 s for a caller's client)".
// For a caller's *redis.Client the code uses that client's own DialTimeout
// plus ReadTimeout (go-redis defaults: 5 s + 3 s) and falls back to 2 s only
// when that sum is not positive: a caller's client at a hung server holds
// RequireL2's NewClient for seconds past the documented 2 s.
func TestReview10ReachableCallerClientNotBoundedByTwoSeconds(t *testing.T) {
	srv := redistest.Start(t)
	raw := redis.NewClient(&redis.Options{Addr: srv.Addr()}) // go-redis defaults, as a caller has them
	t.Cleanup(func() { _ = raw.Close() })
	s := openStore(t, l2.Config{Client: raw})
	if err := s.Reachable(context.Background()); err != nil {
		t.Fatalf("Reachable with the server up: %v", err)
	}
	srv.Pause()
	t.Cleanup(srv.Resume)
	start := time.Now()
	err := s.Reachable(context.Background())
	took := time.Since(start)
	if err == nil {
		t.Fatal("Reachable with the server paused: nil")
	}
	if took > 2500*time.Millisecond {
		t.Errorf("Reachable of a caller's client (go-redis defaults) at a hung server took %v; its doc bounds it at 2 s, and the code's own bound is DialTimeout+ReadTimeout = 8 s (err: %v)", took, err)
	}
}

// Reachable bounds a watched server's PING by HealthTimeout, as the health
// watch's own checks (review 10 found RequireL2's doc saying DialTimeout
// plus Timeout): a server stalled past it is reported, promptly, however
// long Timeout is.
func TestReview10ReachableSingleNodeBoundIsHealthTimeout(t *testing.T) {
	srv := redistest.Start(t)
	s := openStore(t, l2.Config{Addrs: []string{srv.Addr()}, Timeout: 5 * time.Second, HealthTimeout: 100 * time.Millisecond})
	if err := s.Reachable(context.Background()); err != nil {
		t.Fatalf("Reachable with the server up: %v", err)
	}
	srv.Pause()
	t.Cleanup(srv.Resume)
	start := time.Now()
	err := s.Reachable(context.Background())
	if took := time.Since(start); err == nil || took >= 5*time.Second {
		t.Errorf("Reachable of a stalled server: %v after %v; want an error bounded by HealthTimeout, not Timeout", err, took)
	}
}
