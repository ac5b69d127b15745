package main

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/strata-cache/strata/internal/redistest"
	"github.com/strata-cache/strata/tiered"
)

// review10Service runs the service in process over redisAddr ("" for the
// embedded server), one replica, no gossip.
func review10Service(t *testing.T, redisAddr string) (*httptest.Server, *tiered.Client, *store) {
	t.Helper()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	tc, cleanup, err := clientConfig(config{redis: redisAddr}, log)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cleanup)
	m, err := newMetrics()
	if err != nil {
		t.Fatal(err)
	}
	tc.Observer = m.observer
	db, err := openStore(context.Background(), filepath.Join(t.TempDir(), "shop.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = db.close() })
	client, err := tiered.NewClient(context.Background(), tc)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = client.Close() })
	svc, err := newService(client, db, m, log, redisAddr == "")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(svc.stop)
	hs := httptest.NewServer(svc.routes())
	t.Cleanup(hs.Close)
	return hs, client, db
}

func review10Do(t *testing.T, hs *httptest.Server, method, path, body string) (int, string) {
	t.Helper()
	return request(t, hs.URL, method, path, body)
}

// /healthz answers 503 whenever no invalidation channel vouches for L1.
// With Redis down (shared by every replica), that is every replica at
// once, while each still answers every GET (guarantee 10): a readiness
// probe wired to /healthz, as the README suggests ("the load balancer
// stops sending"), takes the whole service out for the length of a Redis
// outage that the cache was built to ride out (and a liveness probe would
// restart every replica).
func TestReview10HealthzFailsEveryReplicaDuringARedisOutage(t *testing.T) {
	srv := redistest.Start(t)
	hs, client, _ := review10Service(t, srv.Addr())
	if code, body := review10Do(t, hs, "GET", "/healthz", ""); code != http.StatusOK {
		t.Fatalf("healthz with Redis up: %d %s", code, body)
	}
	srv.Kill()
	redistest.WaitFor(t, 10*time.Second, func() bool { return !client.Health().Trusted }, "the link loss to be noticed")
	code, body := review10Do(t, hs, "GET", "/products/p1", "")
	if code != http.StatusOK {
		t.Fatalf("GET with Redis down: %d %s", code, body)
	}
	if code, _ := review10Do(t, hs, "GET", "/healthz", ""); code != http.StatusOK {
		t.Errorf("with Redis down the replica answers GET /products/p1 (200) but /healthz answers %d: "+
			"every replica reports unready at once during a Redis outage", code)
	}
}

// fail returns err.Error() to the HTTP client for every status ("Strata's
// errors are one line"), so a 500 carries internal detail: here the Redis
// server's address (and the Go network error) to an anonymous caller.
func TestReview10ErrorResponsesLeakInternals(t *testing.T) {
	srv := redistest.Start(t)
	hs, client, _ := review10Service(t, srv.Addr())
	if code, body := review10Do(t, hs, "GET", "/products/p1", ""); code != http.StatusOK {
		t.Fatalf("GET: %d %s", code, body)
	}
	srv.Kill()
	redistest.WaitFor(t, 10*time.Second, func() bool {
		h := client.Health()
		return len(h.Servers) == 1 && !h.Servers[0].Serving
	}, "the server out of service")
	code, body := review10Do(t, hs, "POST", "/categories/kitchen/discount?percent=10", "")
	t.Logf("discount with Redis down: %d %s", code, body)
	if strings.Contains(body, srv.Addr()) || strings.Contains(body, "tcp") {
		t.Errorf("a %d response body carries internal detail (Redis address %s): %s", code, srv.Addr(), strings.TrimSpace(body))
	}
}

// flushStock keeps a row only for a newer Version. Write-behind versions
// come from Redis stream IDs (ms<<20 | seq, about 1.9e18 today); the
// embedded-server path (putStock) stamps time.Now().UnixNano() (about
// 1.8e18), which stays below any Redis version ever written. The default
// -db file is shared by both modes: after one run against a real Redis,
// every stock PUT of a run on the embedded server is acknowledged and
// cached but silently dropped by the database.
func TestReview10EmbeddedStockWritesLoseToEarlierRedisVersions(t *testing.T) {
	ctx := context.Background()
	db, err := openStore(ctx, filepath.Join(t.TempDir(), "shop.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.close()
	// Yesterday's write-behind flush from a run with STRATA_REDIS set.
	redisVersion := uint64(time.Now().Add(-24*time.Hour).UnixMilli()) << 20
	if err := db.flushStock(ctx, []tiered.Write[Stock]{{Key: "p1", Value: Stock{ID: "p1", Count: 5}, Version: redisVersion}}); err != nil {
		t.Fatal(err)
	}
	// Today's run on the embedded server: PUT /stock/p1 {"count":9}.
	if err := db.putStock(ctx, "p1", Stock{ID: "p1", Count: 9}); err != nil {
		t.Fatal(err)
	}
	st, err := db.stock(ctx, "p1")
	if err != nil || st.Count != 9 {
		t.Errorf("stock after a newer write-through of 9: %+v %v; the older Redis-versioned row won", st, err)
	}
}

// POST /categories/{c}/discount commits the discount, then calls
// InvalidateTags; while Redis's server is out, InvalidateTags fails
// (l2.ErrUnavailable: it will not trust a partial tag set) and the handler
// answers 500 although the database changed. The client cannot tell, and a
// retry of the 500 applies the (non-idempotent) discount a second time.
// This test shows the first half and what the replica serves once Redis
// answers again.
func TestReview10DiscountDuringAnOutage(t *testing.T) {
	srv := redistest.Start(t)
	hs, client, db := review10Service(t, srv.Addr())
	if code, body := review10Do(t, hs, "GET", "/products/p1", ""); code != http.StatusOK || !strings.Contains(body, "19900") {
		t.Fatalf("GET: %d %s", code, body)
	}
	serving := func(want bool) func() bool {
		return func() bool { h := client.Health(); return len(h.Servers) == 1 && h.Servers[0].Serving == want }
	}
	srv.Pause()
	redistest.WaitFor(t, 10*time.Second, serving(false), "the server out of service")
	code, body := review10Do(t, hs, "POST", "/categories/kitchen/discount?percent=10", "")
	p, _ := db.product(context.Background(), "p1")
	if code != http.StatusOK {
		t.Errorf("discount with Redis out: %d %s, but the database committed it (p1 now %d): a retry discounts twice", code, strings.TrimSpace(body), p.PriceCents)
	}
	srv.Resume()
	redistest.WaitFor(t, 10*time.Second, serving(true), "the server back in service")
	_, body = review10Do(t, hs, "GET", "/products/p1", "")
	if !strings.Contains(body, "17910") {
		t.Errorf("after Redis is back, GET /products/p1 = %s; the database has 17910", strings.TrimSpace(body))
	}
}
