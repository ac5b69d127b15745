// Package debughttp serves a Strata client's health and counters as JSON
// over HTTP, for /healthz-style probes and dashboards:
//
//	http.Handle("/debug/strata", debughttp.Handler(client))
//
// The body is {"health": tiered.Health, "stats": tiered.ClientStats}. The
// status is 200 whatever the health says: a cache whose Redis is down
// serves from L1 and the loader, so an outage degrades the service but does
// not stop it. A probe that wants to act on it reads "trusted" and each
// server's "serving".
package debughttp

import (
	"encoding/json"
	"net/http"

	"github.com/strata-cache/strata/tiered"
)

// Report is the body Handler serves.
type Report struct {
	Health tiered.Health      `json:"health"`
	Stats  tiered.ClientStats `json:"stats"`
}

// Handler returns a handler that serves c's Report, read at each request.
func Handler(c *tiered.Client) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Cache-Control", "no-store")
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		_ = enc.Encode(Report{Health: c.Health(), Stats: c.Stats()})
	})
}
