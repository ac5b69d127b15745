package debughttp_test

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/strata-cache/strata/debughttp"
	"github.com/strata-cache/strata/internal/redistest"
	"github.com/strata-cache/strata/l2"
	"github.com/strata-cache/strata/tiered"
)

func TestHandlerServesHealthAndStats(t *testing.T) {
	ctx := context.Background()
	srv := redistest.Start(t)
	c, err := tiered.NewClient(ctx, tiered.Config{NodeID: "a", Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
		Redis: l2.Config{Addrs: []string{srv.Addr()}}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	cache, err := tiered.NewCache(c, "users", tiered.Options[string]{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cache.Get(ctx, "k", func(context.Context, string) (string, error) { return "v", nil }); err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(debughttp.Handler(c))
	defer hs.Close()
	resp, err := http.Get(hs.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var r debughttp.Report
	if err := json.NewDecoder(resp.Body).Decode(&r); err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "application/json" {
		t.Errorf("status %d, content type %q", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	if r.Health.NodeID != "a" || len(r.Health.Servers) != 1 || r.Health.Servers[0].Addr != srv.Addr() {
		t.Errorf("health %+v, want node a and its one server", r.Health)
	}
	if got := r.Stats.Caches["users"].Requests(); got != 1 {
		t.Errorf("stats of users: %d requests, want 1", got)
	}
}
