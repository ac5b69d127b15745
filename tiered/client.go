// Package tiered is Strata's public API: a Client per process and typed
// Caches that compose the in-process L1, the Redis L2 and the caller's loader.
package tiered

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	mathrand "math/rand/v2"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/strata-cache/strata/cluster"
	"github.com/strata-cache/strata/coherence"
	"github.com/strata-cache/strata/internal/clock"
	"github.com/strata-cache/strata/l2"
)

// DefaultLogInterval is how often a recurring L2 error is logged at most: often
// enough to see an outage, rarely enough not to flood logs during one.
const DefaultLogInterval = 10 * time.Second

// clockResolution is the staleness of the default coarse clock. A millisecond
// is finer than any TTL worth setting.
const clockResolution = time.Millisecond

// Clock tells the time. Tests inject a manual clock to drive TTLs.
type Clock interface {
	Now() time.Time
}

// Config configures a Client, one per process.
type Config struct {
	// NodeID names this replica uniquely. Empty means hostname plus a random
	// suffix.
	NodeID string
	// Redis configures L2. The zero value means no L2: L1 and the loader only.
	Redis l2.Config
	// Gossip configures the memberlist gossip channel for invalidations, the
	// second channel beside Redis pub/sub. Nil means none. The memberlist
	// node is named NodeID.
	Gossip *cluster.Config
	// Observer receives telemetry events. Nil means none.
	Observer Observer
	// Logger receives warnings such as L2 errors. Nil means slog.Default().
	Logger *slog.Logger
	// LogInterval is the least time between two logs of L2 errors; the errors
	// in between are counted and reported with the next log. Zero means
	// DefaultLogInterval.
	LogInterval time.Duration
	// Clock is the time source for TTLs. Nil means the real clock, read
	// through a copy refreshed every millisecond.
	Clock Clock
	// InvalidationKey authenticates invalidation messages on both channels
	// with HMAC-SHA-256: messages without a valid MAC are dropped. Every
	// replica and producer must share it. Nil means unauthenticated messages.
	InvalidationKey []byte
	// Rand returns uniform numbers in [0, 1) for jitter. It must be safe for
	// concurrent use. Nil means math/rand/v2's Float64.
	Rand func() float64
}

func (c *Config) setDefaults() error {
	if c.LogInterval < 0 {
		return errors.New("tiered: LogInterval must not be negative")
	}
	if c.NodeID == "" {
		host, _ := os.Hostname()
		var b [4]byte
		_, _ = rand.Read(b[:])
		c.NodeID = host + "-" + hex.EncodeToString(b[:])
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.LogInterval == 0 {
		c.LogInterval = DefaultLogInterval
	}
	if c.Rand == nil {
		c.Rand = mathrand.Float64
	}
	return nil
}

// Client is a process's handle on Strata: it owns the L2 connections and the
// clock, and is shared by every Cache made from it. It is safe for concurrent
// use.
type Client struct {
	cfg    Config
	l2     *l2.Store // nil without L2
	clock  clock.Nano
	coarse *clock.Coarse // nil with an injected clock

	closed atomic.Bool
	// ctx is cancelled by Close; loads derive from it so Close can end them.
	ctx    context.Context
	cancel context.CancelFunc
	loads  sync.WaitGroup
	writes sync.WaitGroup // writes and invalidations in progress (beginWrite)

	mu     sync.Mutex
	caches []registeredCache

	bus     *coherence.Bus // nil without any invalidation channel
	gossip  *cluster.Node  // nil without Config.Gossip
	trusted atomic.Bool    // some channel vouches for L1 (always, without channels)

	l2Log rateLimitedLog
	retry retrier // failed L2 writes tried again
}

// NewClient returns a Client configured by cfg. It does not wait for Redis: a
// Redis that is down makes L2 unavailable, not NewClient fail.
func NewClient(ctx context.Context, cfg Config) (*Client, error) {
	if err := cfg.setDefaults(); err != nil {
		return nil, err
	}
	c := &Client{cfg: cfg}
	c.retry.c = c
	if cfg.Redis.Enabled() {
		store, err := l2.OpenWatched(cfg.Redis, l2Watcher{c})
		if err != nil {
			return nil, fmt.Errorf("tiered: %w", err)
		}
		c.l2 = store
	}
	if cfg.Clock != nil {
		c.clock = clock.ToNano(cfg.Clock)
	} else {
		c.coarse = clock.NewCoarse(clockResolution)
		c.clock = c.coarse
	}
	c.ctx, c.cancel = context.WithCancel(context.WithoutCancel(ctx))
	c.l2Log.interval = int64(cfg.LogInterval)
	if err := c.startBus(); err != nil {
		_ = c.Close()
		return nil, err
	}
	return c, nil
}

// l2Watcher passes the L2 store's routing changes and repairs to c.
type l2Watcher struct{ c *Client }

// RouteChanged implements l2.Watcher.
func (w l2Watcher) RouteChanged(reason string) { w.c.routeChanged(reason) }

// Repaired implements l2.Watcher.
func (w l2Watcher) Repaired(ns string, keys []string) { w.c.repaired(ns, keys) }

// routeChanged drops L1 when L2's routing changed: values read before may
// have come from a server that no longer serves their key, and an
// invalidation may have been applied against a different server.
func (c *Client) routeChanged(reason string) {
	c.cfg.Logger.Warn("strata: L2 routing changed; dropping L1", "reason", reason)
	for _, cache := range c.cachesOf("") {
		cache.reset()
	}
}

// repaired invalidates keys everywhere once a returning Redis server no
// longer holds their old values: a replica may have read one in the
// moments before the repair.
func (c *Client) repaired(ns string, keys []string) {
	done, err := c.beginWrite()
	if err != nil {
		return
	}
	defer done()
	m := &coherence.Message{Kind: coherence.KindKeys, Namespace: ns, Items: keys}
	for _, cache := range c.cachesOf(ns) {
		cache.invalidate(m)
	}
	_ = c.publish(c.ctx, coherence.KindKeys, ns, keys, uint64(c.clock.NowNano()))
}

// NodeID returns this replica's ID.
func (c *Client) NodeID() string { return c.cfg.NodeID }

// L2 returns the Redis tier, or nil when none is configured. Instrumentation
// uses it to reach the go-redis client.
func (c *Client) L2() *l2.Store { return c.l2 }

// Close cancels in-flight loads, waits for them and for the writes and
// invalidations in progress (so that they are published), releases every
// Cache's L1 and closes the Redis connections Strata opened. Every call
// afterwards returns ErrClosed. Close is idempotent.
//
// NOTE: a Set in progress includes its Options.Writer call, which runs
// with the caller's context: a Writer that never returns holds Close up.
func (c *Client) Close() error {
	c.mu.Lock()
	if c.closed.Load() {
		c.mu.Unlock()
		return nil
	}
	// Set under mu so that no load starts after Wait below begins.
	c.closed.Store(true)
	caches := c.caches
	c.caches = nil
	c.mu.Unlock()
	c.cancel()
	c.loads.Wait()
	// Their invalidations go out before the bus's last heartbeat, which
	// lets receivers notice one lost on both channels.
	c.writes.Wait()
	c.retry.close()
	if c.bus != nil {
		_ = c.bus.Close()
	}
	if c.gossip != nil {
		_ = c.gossip.Close()
	}
	for _, cache := range caches {
		cache.close()
	}
	if c.coarse != nil {
		c.coarse.Stop()
	}
	if c.l2 != nil {
		return c.l2.Close()
	}
	return nil
}

// register adds a cache to be closed with the client.
func (c *Client) register(cache registeredCache) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed.Load() {
		return ErrClosed
	}
	c.caches = append(c.caches, cache)
	return nil
}

// beginLoad registers a loader call so Close can cancel it and wait for it.
// It returns ctx, ended also by Close, and the func to call when the load is
// over; it fails once the client is closed. Only loader calls are tracked: L2
// commands are bounded by their own timeout.
func (c *Client) beginLoad(ctx context.Context) (context.Context, func(), error) {
	c.mu.Lock()
	if c.closed.Load() {
		c.mu.Unlock()
		return nil, nil, ErrClosed
	}
	c.loads.Add(1)
	c.mu.Unlock()
	lctx, cancel := context.WithCancel(ctx)
	unhook := context.AfterFunc(c.ctx, cancel)
	return lctx, func() {
		unhook()
		cancel()
		c.loads.Done()
	}, nil
}

// beginWrite registers a write or invalidation so that Close waits for it
// (its L2 part is bounded by the L2 timeout, its publication by WithAck's).
// It fails once the client is closed.
func (c *Client) beginWrite() (func(), error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed.Load() {
		return nil, ErrClosed
	}
	c.writes.Add(1)
	return c.writes.Done, nil
}

// stopwatch starts timing a load: with the injected clock when there is one
// (tests then control load durations), else with the monotonic clock (the
// coarse clock's millisecond would round short loads to zero).
func (c *Client) stopwatch() func() time.Duration {
	if c.coarse == nil {
		start := c.clock.NowNano()
		return func() time.Duration { return time.Duration(c.clock.NowNano() - start) }
	}
	start := time.Now()
	return func() time.Duration { return time.Since(start) }
}

// l2Error reports a failed L2 command: observer, then a rate-limited log.
func (c *Client) l2Error(ctx context.Context, ns, op string, err error) {
	if o := c.cfg.Observer; o != nil {
		o.Observe(ctx, Event{Kind: EventL2Error, Namespace: ns, Tier: TierL2, Err: err})
	}
	if n, ok := c.l2Log.allow(c.clock.NowNano()); ok {
		c.cfg.Logger.Warn("strata: L2 unavailable, serving without it",
			"namespace", ns, "op", op, "err", err, "errors_since_last_log", n)
	}
}

// rateLimitedLog lets one log through per interval and counts the rest.
type rateLimitedLog struct {
	interval   int64
	last       atomic.Int64
	suppressed atomic.Int64
}

// allow reports whether to log now, and how many events were held back since
// the last log (this one included).
func (r *rateLimitedLog) allow(now int64) (int64, bool) {
	n := r.suppressed.Add(1)
	last := r.last.Load()
	if last != 0 && now-last < r.interval {
		return 0, false
	}
	if !r.last.CompareAndSwap(last, now) {
		return 0, false
	}
	r.suppressed.Add(-n)
	return n, true
}
