// Command httpservice is a service to copy: an HTTP JSON API over a SQLite
// database, with Strata in front of it. Run several processes against one
// Redis and they stay coherent (see README.md in this folder).
//
//	GET    /products/{id}                 read-through (X-Cache: l1, l2 or loader)
//	PUT    /products/{id}                 write-through: the database, then the cache
//	DELETE /products/{id}                 the database, then Delete on every replica
//	POST   /categories/{c}/discount?percent=10   the database, then one tag invalidation
//	GET    /stock/{id}, PUT /stock/{id}    write-behind: Redis now, the database in batches
//	GET    /healthz, GET /metrics          Client.Health as JSON; Prometheus metrics
//
// Configuration comes from flags, whose defaults come from the examples'
// environment convention (STRATA_REDIS, STRATA_GOSSIP_BIND,
// STRATA_GOSSIP_JOIN, STRATA_NODE_ID, ...). Without a Redis address it
// runs on an embedded Redis-compatible server, which only this process sees.
package main

import (
	"context"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/alicebob/miniredis/v2"

	"github.com/strata-cache/strata/cluster"
	"github.com/strata-cache/strata/l2"
	"github.com/strata-cache/strata/tiered"
)

// config is the service's configuration.
type config struct {
	http, redis, db, node        string
	gossipBind, gossipJoin, gkey string
	requireRedis                 bool
	drainDelay                   time.Duration
}

func env(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}

func parseFlags(args []string) (config, error) {
	var c config
	fs := flag.NewFlagSet("httpservice", flag.ContinueOnError)
	fs.StringVar(&c.http, "http", env("STRATA_HTTP", "127.0.0.1:8080"), "HTTP listen address ($STRATA_HTTP)")
	fs.StringVar(&c.redis, "redis", env("STRATA_REDIS", ""), "Redis addresses, comma-separated: one node or shards ($STRATA_REDIS; empty: embedded server, this process only)")
	fs.StringVar(&c.db, "db", env("STRATA_DB", filepath.Join(os.TempDir(), "strata-httpservice.db")), "SQLite file, shared by the processes ($STRATA_DB)")
	fs.StringVar(&c.node, "node", env("STRATA_NODE_ID", ""), "this replica's unique ID ($STRATA_NODE_ID; empty: hostname plus a random suffix)")
	fs.StringVar(&c.gossipBind, "gossip-bind", env("STRATA_GOSSIP_BIND", ""), "gossip ip:port ($STRATA_GOSSIP_BIND; empty: no gossip, pub/sub only)")
	fs.StringVar(&c.gossipJoin, "gossip-join", env("STRATA_GOSSIP_JOIN", ""), "gossip seeds host:port, comma-separated ($STRATA_GOSSIP_JOIN)")
	fs.StringVar(&c.gkey, "gossip-key", env("STRATA_GOSSIP_KEY", ""), "gossip AES key, hex (16, 24 or 32 bytes) ($STRATA_GOSSIP_KEY)")
	fs.BoolVar(&c.requireRedis, "require-redis", false, "fail at start if Redis does not answer, instead of starting without L2")
	fs.DurationVar(&c.drainDelay, "drain-delay", 0, "on SIGTERM, how long /healthz answers 503 before the server stops (set it to the load balancer's probe interval)")
	if err := fs.Parse(args); err != nil {
		return c, err
	}
	return c, nil
}

func main() {
	cfg, err := parseFlags(os.Args[1:])
	if err != nil {
		os.Exit(2)
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	if err := run(ctx, cfg, log); err != nil {
		log.Error("httpservice", "err", err)
		os.Exit(1)
	}
}

// run serves until ctx is done, then shuts down in order: stop taking
// requests, finish those in flight, then Close the client (which drains
// write-behind into the database), then close the database.
func run(ctx context.Context, cfg config, log *slog.Logger) error {
	tc, cleanup, err := clientConfig(cfg, log)
	if err != nil {
		return err
	}
	defer cleanup()
	metrics, err := newMetrics()
	if err != nil {
		return err
	}
	tc.Observer = metrics.observer

	db, err := openStore(ctx, cfg.db)
	if err != nil {
		return err
	}
	defer db.close()
	client, err := tiered.NewClient(ctx, tc)
	if err != nil {
		return err
	}
	defer client.Close() // first of the defers to run: drains write-behind while the database is open
	svc, err := newService(client, db, metrics, log, cfg.redis == "")
	if err != nil {
		return err
	}

	ln, err := net.Listen("tcp", cfg.http)
	if err != nil {
		return err
	}
	srv := &http.Server{Handler: svc.routes(), ReadHeaderTimeout: 5 * time.Second}
	log.Info("listening", "addr", ln.Addr().String(), "node", client.NodeID(), "gossip", client.GossipAddr())
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	select {
	case err := <-served:
		return err
	case <-ctx.Done():
	}
	log.Info("shutting down")
	svc.closing.Store(true) // /healthz answers 503: the load balancer stops sending
	if cfg.drainDelay > 0 {
		// Keep serving until the load balancer's probe has seen the 503.
		time.Sleep(cfg.drainDelay)
	}
	shutdownCtx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := srv.Shutdown(shutdownCtx); err != nil {
		return err
	}
	svc.stop()
	if err := client.Close(); err != nil {
		return fmt.Errorf("close: %w", err)
	}
	log.Info("stopped", "stock_flushed", svc.stock.Stats().WriteBehind.Flushed)
	return nil
}

// clientConfig turns the flags into a tiered.Config.
func clientConfig(cfg config, log *slog.Logger) (tiered.Config, func(), error) {
	tc := tiered.Config{NodeID: cfg.node, Logger: log, RequireL2: cfg.requireRedis}
	cleanup := func() {}
	if cfg.redis == "" {
		m, err := miniredis.Run()
		if err != nil {
			return tc, nil, err
		}
		log.Warn("no -redis given: running on an embedded Redis-compatible server that only this process sees")
		cfg.redis, cleanup = m.Addr(), m.Close
	}
	tc.Redis = l2.Config{Addrs: splitList(cfg.redis)}
	if cfg.gossipBind != "" {
		g := &cluster.Config{BindAddr: cfg.gossipBind, Join: splitList(cfg.gossipJoin), KeepJoining: true}
		if cfg.gkey != "" {
			key, err := hex.DecodeString(cfg.gkey)
			if err != nil {
				cleanup()
				return tc, nil, fmt.Errorf("-gossip-key: %w", err)
			}
			g.SecretKey = key
		}
		if ip, _, err := net.SplitHostPort(cfg.gossipBind); err == nil && net.ParseIP(ip).IsLoopback() {
			g.Profile = cluster.ProfileLocal
		}
		tc.Gossip = g
	}
	return tc, cleanup, nil
}

func splitList(s string) []string {
	var out []string
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f != "" {
			out = append(out, f)
		}
	}
	return out
}

var errBadRequest = errors.New("bad request")
