package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/strata-cache/strata/tiered"
)

// service holds the caches and serves the API.
type service struct {
	client   *tiered.Client
	db       *store
	products *tiered.Cache[Product]
	stock    *tiered.Cache[Stock]
	metrics  *metrics
	log      *slog.Logger
	closing  atomic.Bool
	retries  sync.WaitGroup // background tag invalidations
	done     chan struct{}  // closed by stop
}

func newService(client *tiered.Client, db *store, m *metrics, log *slog.Logger, embedded bool) (*service, error) {
	s := &service{client: client, db: db, metrics: m, log: log, done: make(chan struct{})}
	var err error
	// Products: read-through, write-through. Values are Product, not
	// *Product: every caller that hits L1 shares the value.
	s.products, err = tiered.NewCache(client, "products", tiered.Options[Product]{
		TTL:                  10 * time.Minute,
		StaleWhileRevalidate: time.Minute, // serve at once while one refresh runs for the cluster
		StaleIfError:         time.Hour,   // the database down: serve what we had
		NegativeTTL:          30 * time.Second,
		Tags:                 func(_ string, p Product) []string { return []string{"category:" + p.Category} },
		Writer:               db.putProduct,
	})
	if err != nil {
		return nil, err
	}
	// Stock: write-behind. Set returns once the count is in Redis (and in
	// the stream the flushers read); the database gets it within Interval.
	stockOpts := tiered.Options[Stock]{
		TTL:         time.Hour,
		WriteBehind: &tiered.WriteBehind[Stock]{Flush: db.flushStock, Interval: 100 * time.Millisecond},
	}
	if embedded {
		// Write-behind needs Redis Streams as Redis 6.2 has them, which the
		// embedded server lacks.
		log.Warn("embedded server: stock is written through, not behind")
		stockOpts.WriteBehind = nil
		stockOpts.Writer = db.putStock
	}
	s.stock, err = tiered.NewCache(client, "stock", stockOpts)
	return s, err
}

func (s *service) routes() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /products/{id}", s.getProduct)
	mux.HandleFunc("PUT /products/{id}", s.putProduct)
	mux.HandleFunc("DELETE /products/{id}", s.deleteProduct)
	mux.HandleFunc("POST /categories/{category}/discount", s.discount)
	mux.HandleFunc("GET /stock/{id}", s.getStock)
	mux.HandleFunc("PUT /stock/{id}", s.putStock)
	mux.HandleFunc("GET /healthz", s.healthz)
	mux.Handle("GET /metrics", s.metrics.handler)
	return mux
}

func (s *service) getProduct(w http.ResponseWriter, r *http.Request) {
	p, info, err := s.products.GetWithInfo(r.Context(), r.PathValue("id"), s.db.product)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	w.Header().Set("X-Cache", info.Tier.String())
	if info.Stale {
		w.Header().Set("X-Cache-Stale", "true")
	}
	writeJSON(w, http.StatusOK, p)
}

func (s *service) putProduct(w http.ResponseWriter, r *http.Request) {
	var p Product
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 64<<10)).Decode(&p); err != nil {
		s.fail(w, r, fmt.Errorf("%w: %w", errBadRequest, err))
		return
	}
	p.ID = r.PathValue("id")
	// The Writer puts p in the database first; the cache changes only if
	// that succeeded, on this replica at once and on the others within
	// milliseconds.
	if err := s.products.Set(r.Context(), p.ID, p); err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, p)
}

func (s *service) deleteProduct(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	// The database first, then the cache: a Get in between loads the row
	// that is going away at worst, and Delete fences that load off.
	if err := s.db.deleteProduct(r.Context(), id); err != nil {
		s.fail(w, r, err)
		return
	}
	if err := s.products.Delete(r.Context(), id); err != nil {
		// The row is gone; on a Redis Cluster Strata retries the failed
		// delete itself until it lands (see RetryStats).
		s.log.Warn("cache delete failed after the database delete", "id", id, "err", err)
	}
	w.WriteHeader(http.StatusNoContent)
}

func (s *service) discount(w http.ResponseWriter, r *http.Request) {
	category := r.PathValue("category")
	percent, err := strconv.Atoi(r.URL.Query().Get("percent"))
	if err != nil || percent < 1 || percent > 99 {
		s.fail(w, r, fmt.Errorf("%w: percent must be 1 to 99", errBadRequest))
		return
	}
	n, err := s.db.discount(r.Context(), category, percent)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	// One invalidation for every product of the category, on every replica
	// and in Redis, whichever keys they are. The database has changed
	// whatever happens next: a failure here (Redis out) is not the
	// client's to retry (the discount would apply twice); the service
	// keeps trying in the background.
	tag := "category:" + category
	if err := s.products.InvalidateTags(r.Context(), tag); err != nil {
		s.log.Warn("tag invalidation failed; retrying in the background", "tag", tag, "err", err)
		s.retryInvalidate(tag)
	}
	writeJSON(w, http.StatusOK, map[string]any{"category": category, "updated": n})
}

func (s *service) getStock(w http.ResponseWriter, r *http.Request) {
	st, info, err := s.stock.GetWithInfo(r.Context(), r.PathValue("id"), s.db.stock)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	w.Header().Set("X-Cache", info.Tier.String())
	writeJSON(w, http.StatusOK, st)
}

func (s *service) putStock(w http.ResponseWriter, r *http.Request) {
	var st Stock
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 4<<10)).Decode(&st); err != nil {
		s.fail(w, r, fmt.Errorf("%w: %w", errBadRequest, err))
		return
	}
	st.ID = r.PathValue("id")
	if err := s.stock.Set(r.Context(), st.ID, st); err != nil {
		s.fail(w, r, err) // ErrBackpressure: the database is behind; 503
		return
	}
	writeJSON(w, http.StatusAccepted, st)
}

// healthz is for readiness probes: 503 once this replica shuts down, 200
// otherwise. A Redis outage or an untrusted channel is in the body, not in
// the status: every replica shares them, and each still answers (from L1,
// L2 or the database), so failing the probe would take the whole service
// out for what the cache rides out.
func (s *service) healthz(w http.ResponseWriter, _ *http.Request) {
	status := http.StatusOK
	if s.closing.Load() {
		status = http.StatusServiceUnavailable
	}
	writeJSON(w, status, s.client.Health())
}

// retryInvalidate invalidates tag until it succeeds or the service shuts
// down, backing off to 5 s; Shutdown waits for it.
func (s *service) retryInvalidate(tag string) {
	s.retries.Go(func() {
		for wait := 100 * time.Millisecond; ; wait = min(2*wait, 5*time.Second) {
			select {
			case <-s.done:
				return
			case <-time.After(wait):
			}
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			err := s.products.InvalidateTags(ctx, tag)
			cancel()
			if err == nil {
				s.log.Info("tag invalidated after retrying", "tag", tag)
				return
			}
		}
	})
}

// stop ends the background retries.
func (s *service) stop() {
	close(s.done)
	s.retries.Wait()
}

// fail maps an error to a status. The client sees the message of its own
// mistakes (a bad request, an unknown id); anything else is logged and
// answered with its status only, since it may name servers and addresses.
func (s *service) fail(w http.ResponseWriter, r *http.Request, err error) {
	status, msg := http.StatusInternalServerError, "internal error"
	switch {
	case errors.Is(err, tiered.ErrNotFound):
		status, msg = http.StatusNotFound, "not found"
	case errors.Is(err, errBadRequest), errors.Is(err, tiered.ErrInvalidKey):
		status, msg = http.StatusBadRequest, err.Error()
	case errors.Is(err, tiered.ErrBackpressure):
		status, msg = http.StatusServiceUnavailable, "busy: try again later"
	}
	if status >= 500 {
		s.log.Error("request failed", "method", r.Method, "path", r.URL.Path, "status", status, "err", err)
	}
	writeJSON(w, status, map[string]string{"error": msg})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}
