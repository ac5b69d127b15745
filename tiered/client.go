package tiered

import (
	"github.com/redis/go-redis/v9"

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
	"github.com/strata-cache/strata/internal/bus"
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
	// node is named NodeID. Unless RequireGossip, a replica whose seeds
	// (Gossip.Join) do not answer starts alone and keeps joining in the
	// background: NewClient sets Gossip.KeepJoining to !RequireGossip,
	// whatever it held.
	Gossip *cluster.Config
	// RequireL2 makes NewClient fail, naming the server, when a Redis
	// server does not answer a PING at start (bounded as l2.Store.Reachable
	// says: l2.Config.HealthTimeout for a single node or shards, as their
	// health checks are; 2 s for a caller's client). By default a replica starts without it, logs a
	// warning, and the health watch brings the server into service once it
	// answers (a caller's own client: go-redis reconnects).
	RequireL2 bool
	// RequireGossip makes NewClient fail when none of Gossip.Join answers
	// within Gossip.JoinTimeout, instead of starting alone.
	RequireGossip bool
	// Observer receives telemetry events. Nil means none.
	Observer Observer
	// Logger receives everything Strata logs: L2 errors (rate-limited), a
	// server going out of service and returning, invalidations not sent,
	// and, unless Redis.Logger or Gossip.Logger say otherwise, the L2
	// health watch's and memberlist's lines. Nil means slog.Default().
	//
	// NOTE: go-redis logs connection-pool failures through its own
	// process-wide logger (stderr by default). Strata leaves it alone, since
	// setting it (redis.SetLogger) would change it for the whole process;
	// an application that wants those lines in its slog calls
	// redis.SetLogger itself.
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
	// Rand returns uniform numbers in [0, 1) for TTL jitter and for XFetch's
	// early-refresh draw. It must be safe for concurrent use. Nil means
	// math/rand/v2's Float64. With Clock, it makes a run reproducible.
	Rand func() float64
	// Audit turns on the consistency auditor: a share of L1 hits is checked
	// against L2 in the background, and counted in Stats.Audit. Off by
	// default; it needs L2.
	Audit AuditConfig
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
	return c.Audit.setDefaults()
}

// Client is a process's handle on Strata: it owns the L2 connections and the
// clock, and is shared by every Cache made from it. It is safe for concurrent
// use.
type Client struct {
	cfg          Config
	l2           *l2.Store // nil without L2
	clock        clock.Nano
	coarse       *clock.Coarse // nil with an injected clock; shared by the process's clients
	releaseClock func()        // lets go of coarse

	closed atomic.Bool
	// ctx is cancelled by Close; loads derive from it so Close can end them.
	ctx    context.Context
	cancel context.CancelFunc
	loads  sync.WaitGroup
	writes sync.WaitGroup // writes and invalidations in progress (beginWrite)

	mu      sync.Mutex
	caches  []registeredCache
	counted []registeredCache // every cache made, for Stats: Close keeps them

	bus     *bus.Bus      // nil without any invalidation channel
	gossip  *cluster.Node // nil without Config.Gossip
	trusted atomic.Bool   // some channel vouches for L1 (always, without channels)

	lastVersion    atomic.Uint64         // the latest version handed out (nextVersion)
	routeFlushes   atomic.Uint64         // L1 drops for L2 routing changes
	lastRouteFlush atomic.Pointer[Flush] // the latest of them

	l2Log       rateLimitedLog
	uncachedLog rateLimitedLog // loaded values too large (or not encodable) to cache
	foreignLog  rateLimitedLog // L2 entries of another value type or codec (see typeFingerprint)
	wbLog       rateLimitedLog // write-behind flush failures
	retry       retrier        // failed L2 writes tried again
	audit       *auditor       // nil with Config.Audit off
	spans       SpanObserver   // Config.Observer, if it traces operations
	wants       uint32         // the event kinds Config.Observer is sent, by bit (see EventFilter)
}

// NewClient returns a Client configured by cfg. Unless cfg.RequireL2, a Redis
// that is down makes L2 unavailable, not NewClient fail: NewClient checks a
// single node or Ring shards once, for at most l2.Config.HealthTimeout, and
// waits at most a second for an invalidation channel to vouch for L1 (not at
// all when that check found every server down and there is no gossip), then
// starts; the server serves once it answers.
func NewClient(ctx context.Context, cfg Config) (*Client, error) {
	if err := cfg.setDefaults(); err != nil {
		return nil, err
	}
	c := &Client{cfg: cfg}
	c.retry.c = c
	c.spans, _ = cfg.Observer.(SpanObserver)
	c.wants = wanted(cfg.Observer)
	if cfg.Redis.Enabled() {
		redisCfg := cfg.Redis
		if redisCfg.Logger == nil {
			redisCfg.Logger = cfg.Logger
		}
		store, err := l2.OpenWatched(redisCfg, l2Watcher{c})
		if err != nil {
			return nil, fmt.Errorf("tiered: %w", err)
		}
		c.l2 = store
		if cfg.RequireL2 {
			if err := store.Reachable(ctx); err != nil {
				_ = store.Close()
				return nil, fmt.Errorf("tiered: Config.RequireL2: %w", err)
			}
		}
	}
	if cfg.Clock != nil {
		c.clock = clock.ToNano(cfg.Clock)
	} else {
		c.coarse, c.releaseClock = clock.Acquire(clockResolution)
		c.clock = c.coarse
	}
	c.ctx, c.cancel = context.WithCancel(context.WithoutCancel(ctx))
	c.l2Log.interval = int64(cfg.LogInterval)
	c.wbLog.interval = int64(cfg.LogInterval)
	c.uncachedLog.interval = int64(cfg.LogInterval)
	c.foreignLog.interval = int64(cfg.LogInterval)
	c.audit = newAuditor(c)
	if err := c.startBus(); err != nil {
		_ = c.Close()
		return nil, err
	}
	if co, ok := cfg.Observer.(ClientObserver); ok {
		co.ObserveClient(c)
	}
	return c, nil
}

// NodeID returns this replica's ID.
func (c *Client) NodeID() string { return c.cfg.NodeID }

// GossipAddr returns the address other replicas can join this one's gossip
// at ("ip:port"), or "" without gossip.
func (c *Client) GossipAddr() string {
	return c.gossipAddr()
}

// Redis returns the go-redis client L2 runs on (a *redis.Client, *redis.Ring
// or *redis.ClusterClient; the caller's own one with l2.Config.Client), or
// nil when no L2 is configured. It is for instrumentation, such as
// redisotel's tracing and metrics hooks; cache entries written through it
// directly skip the load lease and the invalidations that keep the replicas
// coherent.
func (c *Client) Redis() redis.UniversalClient {
	if c.l2 == nil {
		return nil
	}
	return c.l2.Client()
}

// L2Health returns the state of each Redis server (see l2.Store.Health): a
// single node's or Ring's in l2.Config.Addrs order, a Redis Cluster's
// masters, a caller's own client's servers: whether it serves, why not, and
// its circuit breaker's state. It is nil without L2.
func (c *Client) L2Health() []l2.ServerHealth {
	if c.l2 == nil {
		return nil
	}
	return c.l2.Health()
}

// Invalidate deletes keys of namespace from L2 and from every replica's L1,
// without a Cache: a process that only learns of changes (a database
// change-data-capture consumer, a script) calls it. It returns the L2 error,
// if any; the invalidation is published either way.
func (c *Client) Invalidate(ctx context.Context, namespace string, keys ...string) error {
	ctx, sp := c.start(ctx, OpInvalidate, namespace, soleKey(keys), len(keys))
	err := c.invalidate(ctx, namespace, keys...)
	end(sp, Outcome{Err: err})
	return err
}

// InvalidateTags removes every key of namespace carrying one of tags from L2
// and from every replica's L1, without a Cache (see Invalidate).
func (c *Client) InvalidateTags(ctx context.Context, namespace string, tags ...string) error {
	ctx, sp := c.start(ctx, OpInvalidateTags, namespace, "", len(tags))
	err := c.invalidateTags(ctx, namespace, tags...)
	end(sp, Outcome{Err: err})
	return err
}

// Health returns this replica's view of its tiers and channels: each Redis
// server's state, each invalidation channel's, the gossip members and the
// last L1 flush.
func (c *Client) Health() Health {
	return c.health()
}

// Stats returns the client's counters: every cache's, the bus's and the
// retrier's, read now.
func (c *Client) Stats() ClientStats {
	return c.clientStats()
}

// BusStats returns the invalidation bus's counters (zero without one).
func (c *Client) BusStats() coherence.Stats {
	return c.busStats()
}

// RetryStats reports the failed L2 writes this client tries again: deletes
// after a failed Set or Delete on a Redis Cluster or a caller's client, and
// releases of load leases whose fill failed.
func (c *Client) RetryStats() RetryStats {
	return c.retryStats()
}

// Close cancels in-flight loads, waits for them and for the writes and
// invalidations in progress (so that they are published), releases every
// Cache's L1 and closes the Redis connections Strata opened. Every call
// afterwards returns ErrClosed. Close is idempotent.
//
// NOTE: a Set in progress includes its Options.Writer call, which runs
// with the caller's context: a Writer that never returns holds Close up.
func (c *Client) Close() error {
	return c.close()
}
