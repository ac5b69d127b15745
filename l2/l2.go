package l2

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"slices"
	"strings"
	"sync"
	"time"
	"unsafe"

	"github.com/redis/go-redis/v9"
)

// Defaults used when a Config field is zero.
const (
	// DefaultPrefix starts every key Strata writes, so its data is easy to
	// find, scan and remove in a shared Redis.
	DefaultPrefix = "strata"
	// DefaultTimeout bounds each cache command. A cache read that takes longer
	// than this is slower than most loaders; failing it fast keeps a sick Redis
	// from turning into a latency outage.
	DefaultTimeout = 100 * time.Millisecond
	// DefaultDialTimeout bounds opening a connection.
	DefaultDialTimeout = time.Second
	// DefaultHealthInterval is how often each server is checked.
	DefaultHealthInterval = 100 * time.Millisecond
	// DefaultHealthTimeout bounds one health check. It is longer than
	// DefaultTimeout: a check that fails takes the server out of service
	// (and drops every replica's L1), while a slow cache command only falls
	// back to the loader; a busy server should not flap.
	DefaultHealthTimeout = 250 * time.Millisecond
	// DefaultStandInTTL caps the time to live of data written to a stand-in
	// shard while the key's own shard is out of service.
	DefaultStandInTTL = 30 * time.Second
	// MaxStandInTTL is the largest StandInTTL accepted.
	MaxStandInTTL = 60 * time.Second
	// DefaultBreakerFailures is how many failures in a row open a server's
	// circuit breaker.
	DefaultBreakerFailures = 3
	// DefaultBreakerCoolDown is how long an open breaker fails calls fast
	// before it lets one probe through.
	DefaultBreakerCoolDown = time.Second
)

// Off turns off a setting whose zero value means its default
// (Config.BreakerFailures). Any negative value does the same; Off says so by
// name.
const Off = -1

// Config selects and configures the Redis deployment behind L2. Exactly one of
// Addrs, ClusterAddrs and Client may be set; the zero Config means no L2.
type Config struct {
	// Addrs lists Redis servers. One address is a single node; several are
	// independent shards that keys are spread over by consistent (rendezvous)
	// hashing, through go-redis's Ring.
	Addrs []string
	// ClusterAddrs lists seed nodes of a Redis Cluster.
	ClusterAddrs []string
	// Client is an existing go-redis client (Client, Ring or ClusterClient).
	// Strata does not close it.
	Client redis.UniversalClient
	// Prefix starts every key. Zero means DefaultPrefix. It must not contain
	// '{' or '}', which would break Redis Cluster hash tags.
	Prefix string
	// Username and Password authenticate to Redis (ACL or requirepass). Empty
	// means none. Ignored when Client is set.
	Username string
	Password string
	// TLS enables TLS with this configuration. Nil means plain TCP. Ignored
	// when Client is set.
	TLS *tls.Config
	// Timeout bounds each read and write of a cache command. Zero means
	// DefaultTimeout. Ignored when Client is set.
	Timeout time.Duration
	// DialTimeout bounds opening a connection. Zero means DefaultDialTimeout.
	// Ignored when Client is set.
	DialTimeout time.Duration
	// PoolSize is the number of connections per server. Zero means go-redis's
	// default (10 per CPU). Ignored when Client is set.
	PoolSize int

	// HealthInterval is how often each server of a single node or a Ring
	// (Addrs) is checked. Zero means DefaultHealthInterval. A server that
	// fails two checks in a row, or a write, is out of service until it is
	// safe again; see Store.
	HealthInterval time.Duration
	// HealthTimeout bounds one health check. Zero means DefaultHealthTimeout.
	HealthTimeout time.Duration
	// StandInTTL caps the time to live of data written to a stand-in shard
	// of a Ring while the key's own shard is out of service. Zero means
	// DefaultStandInTTL; at most MaxStandInTTL.
	StandInTTL time.Duration
	// BreakerFailures is how many failed commands in a row (errors or
	// timeouts, not misses or error replies) open a server's circuit breaker.
	// Zero means DefaultBreakerFailures; Off (any negative value) means no
	// breakers.
	BreakerFailures int
	// BreakerCoolDown is how long an open breaker fails commands at once
	// before one probe may try the server. Zero means DefaultBreakerCoolDown.
	BreakerCoolDown time.Duration
	// Logger receives a warning when a server goes out of service and a
	// line at info when it returns. Nil means slog.Default(); tiered passes
	// its Config.Logger.
	Logger *slog.Logger
}

// Enabled reports whether c configures an L2 at all.
func (c *Config) Enabled() bool {
	return len(c.Addrs) > 0 || len(c.ClusterAddrs) > 0 || c.Client != nil
}

func (c *Config) setDefaults() error {
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	set := 0
	for _, b := range []bool{len(c.Addrs) > 0, len(c.ClusterAddrs) > 0, c.Client != nil} {
		if b {
			set++
		}
	}
	if set > 1 {
		return errors.New("l2: set only one of Addrs, ClusterAddrs and Client")
	}
	for _, addr := range append(slices.Clip(c.Addrs), c.ClusterAddrs...) {
		if _, _, err := net.SplitHostPort(addr); err != nil {
			return fmt.Errorf("l2: address %q is not host:port: %w", addr, err)
		}
	}
	if c.Prefix == "" {
		c.Prefix = DefaultPrefix
	}
	if strings.ContainsAny(c.Prefix, "{}") {
		return fmt.Errorf("l2: prefix %q must not contain '{' or '}'", c.Prefix)
	}
	if c.Timeout < 0 || c.DialTimeout < 0 || c.PoolSize < 0 || c.HealthInterval < 0 || c.HealthTimeout < 0 ||
		c.StandInTTL < 0 || c.BreakerCoolDown < 0 {
		return errors.New("l2: Timeout, DialTimeout, PoolSize, HealthInterval, HealthTimeout, StandInTTL and BreakerCoolDown must not be negative")
	}
	if c.HealthTimeout == 0 {
		c.HealthTimeout = DefaultHealthTimeout
	}
	if c.StandInTTL > MaxStandInTTL {
		return fmt.Errorf("l2: StandInTTL %v is over %v", c.StandInTTL, MaxStandInTTL)
	}
	if c.HealthInterval == 0 {
		c.HealthInterval = DefaultHealthInterval
	}
	if c.StandInTTL == 0 {
		c.StandInTTL = DefaultStandInTTL
	}
	if c.BreakerFailures == 0 {
		c.BreakerFailures = DefaultBreakerFailures
	}
	if c.BreakerCoolDown == 0 {
		c.BreakerCoolDown = DefaultBreakerCoolDown
	}
	seen := make(map[string]bool, len(c.Addrs))
	for _, a := range c.Addrs {
		if seen[a] {
			return fmt.Errorf("l2: address %s is listed twice", a)
		}
		seen[a] = true
	}
	if c.Timeout == 0 {
		c.Timeout = DefaultTimeout
	}
	if c.DialTimeout == 0 {
		c.DialTimeout = DefaultDialTimeout
	}
	return nil
}

// noRetries turns off go-redis's command retries (3 by default, with backoff
// up to 512 ms), and DialerRetries: 1 its dial retries (5 by default, 100 ms
// apart): for a cache a failed command falls back to the loader at once, and
// retrying it would turn a Redis outage into a latency outage (measured: 800 ms
// per Get against a killed server with the defaults).
const noRetries = -1

// adminClient is a server's client for health checks and cleaning: two
// connections, HealthTimeout per command.
func (c *Config) adminClient(o *redis.Options) *redis.Client {
	o.ReadTimeout, o.WriteTimeout, o.PoolSize = c.HealthTimeout, c.HealthTimeout, 2
	return redis.NewClient(o)
}

// randomID names a store on the out markers it keeps: 16 random hex digits.
func randomID() string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// Store is the L2 tier. It is safe for concurrent use.
type Store struct {
	client     redis.UniversalClient
	topo       topology
	owned      bool
	prefix     string
	standInTTL time.Duration
	set        *shardSet    // a Ring's routing (shardRing); nil otherwise
	pool       *workers     // a Ring's fan-out workers (shardRing); nil otherwise
	health     *watch       // the health watch (topo.watched()); nil otherwise
	cluster    *clusterView // a Cluster client Strata made; nil otherwise
	// healthTimeout bounds the checks Health makes of a caller's client;
	// pinging holds the servers with a check's PING unanswered.
	healthTimeout time.Duration
	pinging       sync.Map
	closeOnce     sync.Once
	closeErr      error
}

// Watcher is told of the changes the health watch of a single node or a
// Ring makes (a Redis Cluster or a caller's client has none); see
// OpenWatched.
//
// Each call runs on a goroutine of its own, and may use the store. Close
// waits for the calls in progress: a method must not call Close, nor wait
// for anything Close ends.
type Watcher interface {
	// RouteChanged is called when a Ring shard returns to service or the
	// routing epoch advances. Values read from L2 before may have come from
	// a server that no longer serves their key; Strata's tiered client drops
	// its L1.
	RouteChanged(reason string)
	// Repaired is called with the keys deleted from a returning server
	// because writes to them failed while it was away, as namespace (without
	// its version) and key; keys is the method's to keep. Another replica
	// may have read their old values from the server in the moments before
	// the repair; Strata's tiered client publishes an invalidation of them.
	Repaired(ns string, keys []string)
}

// Open returns a store for cfg, or an error if cfg is invalid or not Enabled.
// For a single node or a Ring it checks each server once (bounded by
// HealthTimeout) so that those answering serve at once; a Redis that is down at
// start is not a failure to start: it serves once it answers.
func Open(cfg Config) (*Store, error) { return OpenWatched(cfg, nil) }

// OpenWatched is Open with w told of routing changes and repairs (nil: no
// one is). Strata's tiered client opens its store this way.
func OpenWatched(cfg Config, w Watcher) (*Store, error) {
	if !cfg.Enabled() {
		return nil, errors.New("l2: no Addrs, ClusterAddrs or Client configured")
	}
	if err := cfg.setDefaults(); err != nil {
		return nil, err
	}
	s := &Store{owned: cfg.Client == nil, prefix: cfg.Prefix, standInTTL: cfg.StandInTTL, healthTimeout: cfg.HealthTimeout}
	cfg.build(s, w)
	if s.topo.watched() {
		s.health.start()
	}
	return s, nil
}

// Prefix returns the key prefix in force.
func (s *Store) Prefix() string { return s.prefix }

// Client returns the underlying go-redis client, for instrumentation such as
// redisotel. Callers must not close it. On a Ring, Strata sends multi-key
// operations to the shards' clients itself (see pipelined): hooks belong on
// each shard's client (Ring.GetShardClients), where they see every command;
// a hook on the Ring itself sees only single-key commands.
func (s *Store) Client() redis.UniversalClient { return s.client }

// locate returns key's Redis key and whether it is on a stand-in shard.
func (s *Store) locate(ns, key string) (string, bool) {
	k, _, standIn := s.route(ns, key)
	return k, standIn
}

// routeAll routes keys: their Redis keys, and a function giving the Ring
// shard of each (for pipelined).
func (s *Store) routeAll(ns string, keys []string) (full []string, shard func(i int) int) {
	full = make([]string, len(keys))
	if s.topo != shardRing {
		for i, k := range keys {
			full[i], _ = s.locate(ns, k)
		}
		return full, nil
	}
	at := make([]int, len(keys))
	for i, k := range keys {
		full[i], at[i], _ = s.route(ns, k)
	}
	return full, func(i int) int { return at[i] }
}

// route is locate that also returns the index of the Ring shard serving the
// key (0 without a Ring), from the same routing decision.
func (s *Store) route(ns, key string) (k string, at int, standIn bool) {
	tag := keyTag(key)
	k = s.prefix + ":" + ns + ":{" + tag + "}"
	if s.topo == shardRing {
		// Routed by the key's hash tag exactly as the Ring routes it (a key
		// with a '}' is cut there); a stand-in key has the same one.
		var epoch uint64
		if at, standIn, epoch = s.set.place(hashTag(k)); standIn {
			return standInPrefix(s.prefix, epoch) + ":" + ns + ":{" + tag + "}", at, true
		}
	}
	return k, at, false
}

// ttl caps ttl for a key on a stand-in shard.
func (s *Store) ttl(standIn bool, ttl time.Duration) time.Duration {
	if standIn {
		return min(ttl, s.standInTTL)
	}
	return ttl
}

// Get returns the bytes stored for key, or nil without error when there are none.
func (s *Store) Get(ctx context.Context, ns, key string) ([]byte, error) {
	b, err := s.client.Get(ctx, s.Key(ns, key)).Bytes()
	if errors.Is(err, redis.Nil) {
		return nil, nil
	}
	return b, err
}

// GetMany returns the bytes stored for each key, nil where there are none:
// one MGET per shard (single node or Ring), shards in parallel, or on a
// Cluster a GET per key in one pipeline per node (an MGET cannot span
// slots). On a partial failure the keys that were read are returned along
// with the error, a *PartialError naming the keys that failed. The slices
// are views of go-redis's reply strings, as
// StringCmd.Bytes gives: read them, do not write into them.
func (s *Store) GetMany(ctx context.Context, ns string, keys []string) ([][]byte, error) {
	full, shard := s.routeAll(ns, keys)
	out := make([][]byte, len(keys))
	var errs []error
	if s.topo.getPerKey() {
		cmds := make([]*redis.StringCmd, len(keys))
		s.pipelined(ctx, len(keys), shard, func(p redis.Pipeliner, i int) {
			cmds[i] = p.Get(ctx, full[i])
		})
		var failed []bool
		for i, cmd := range cmds {
			b, err := cmd.Bytes()
			switch {
			case err == nil:
				out[i] = b
			case !errors.Is(err, redis.Nil):
				errs = append(errs, err)
				failed = markFailed(failed, len(keys), i)
			}
		}
		return out, partial(failed, errs)
	}
	// One MGET per shard: far fewer commands for the servers to run than a
	// GET per key, and fewer replies to parse.
	mgets := make([]*redis.SliceCmd, len(keys))
	pos := make([]int32, len(keys))
	s.perShard(ctx, len(keys), shard, func(p redis.Pipeliner, idx []int32) {
		args := make([]string, len(idx))
		for j, i := range idx {
			args[j] = full[i]
		}
		cmd := p.MGet(ctx, args...)
		for j, i := range idx {
			mgets[i], pos[i] = cmd, int32(j)
		}
	})
	var failed []bool
	for i, cmd := range mgets {
		vals, err := cmd.Result()
		switch {
		case err != nil && !errors.Is(err, redis.Nil):
			errs = append(errs, err)
			failed = markFailed(failed, len(keys), i)
		case int(pos[i]) < len(vals):
			if v, ok := vals[pos[i]].(string); ok {
				out[i] = stringBytes(v)
			}
		}
	}
	return out, partial(failed, errs)
}

// PartialError is the error of a multi-key command some of whose keys
// failed: Failed[i] tells whether keys[i]'s read or delete failed (for a
// read, its nil value is then not a miss).
type PartialError struct {
	Failed []bool
	Err    error
}

// Error implements error.
func (e *PartialError) Error() string { return e.Err.Error() }

// Unwrap returns the reads' errors.
func (e *PartialError) Unwrap() error { return e.Err }

// KeyFailed tells, from the error of a multi-key command, whether its i-th
// key failed: as a *PartialError names them, else every key when err is not
// nil.
func KeyFailed(err error) func(i int) bool {
	if pe := (*PartialError)(nil); errors.As(err, &pe) && pe.Failed != nil {
		return func(i int) bool { return pe.Failed[i] }
	}
	return func(int) bool { return err != nil }
}

func markFailed(failed []bool, n, i int) []bool {
	if failed == nil {
		failed = make([]bool, n)
	}
	failed[i] = true
	return failed
}

func partial(failed []bool, errs []error) error {
	if len(errs) == 0 {
		return nil
	}
	return &PartialError{Failed: failed, Err: joinDistinct(errs)}
}

// stringBytes is a view of a reply string as bytes, as go-redis's own
// StringCmd.Bytes gives: replies are fresh strings nothing else holds, and
// readers of the view only read it.
func stringBytes(s string) []byte { return unsafe.Slice(unsafe.StringData(s), len(s)) }

// Expire makes key live at least ttl from now (sliding expiration): it
// never shortens a longer time to live (PEXPIRE GT), such as a jittered
// one's, that L1 copies may rely on.
func (s *Store) Expire(ctx context.Context, ns, key string, ttl time.Duration) error {
	k, standIn := s.locate(ns, key)
	return s.client.Do(ctx, "PEXPIRE", k, ms(s.ttl(standIn, ttl)), "GT").Err()
}

// Delete removes keys and their load leases (so a fill of data loaded before
// the delete fails), one DEL per key in one pipeline: a key and its lease
// share a slot, different keys may not. When some deletes fail, the error is
// a *PartialError naming them.
func (s *Store) Delete(ctx context.Context, ns string, keys ...string) error {
	if len(keys) == 1 {
		k := s.Key(ns, keys[0])
		return s.client.Del(ctx, k, k+leaseSuffix).Err()
	}
	full, shard := s.routeAll(ns, keys)
	cmds := make([]redis.Cmder, len(keys))
	s.pipelined(ctx, len(keys), shard, func(p redis.Pipeliner, i int) {
		cmds[i] = p.Del(ctx, full[i], full[i]+leaseSuffix)
	})
	return cmdPartial(cmds)
}

// cmdPartial is cmdErrors as a *PartialError naming the commands (one per
// key) that failed.
func cmdPartial[C redis.Cmder](cmds []C) error {
	var failed []bool
	var errs []error
	for i, c := range cmds {
		if err := c.Err(); err != nil && !errors.Is(err, redis.Nil) {
			errs = append(errs, err)
			failed = markFailed(failed, len(cmds), i)
		}
	}
	return partial(failed, errs)
}

// DeleteSeeing is Delete that, on a single node, also reads the version of
// namespace base (see NamespaceVersion) in the same round trip, after the
// deletes: see WriteSeeing. seen is false where that is not possible.
func (s *Store) DeleteSeeing(ctx context.Context, ns, base string, keys ...string) (version uint64, seen bool, err error) {
	if !s.topo.oneServer() || base == "" {
		return 0, false, s.Delete(ctx, ns, keys...)
	}
	cmds := make([]redis.Cmder, len(keys))
	var v *redis.StringCmd
	_, _ = s.client.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i, key := range keys {
			k := s.Key(ns, key)
			cmds[i] = p.Del(ctx, k, k+leaseSuffix)
		}
		v = p.Get(ctx, s.versionKey(base))
		return nil
	})
	if err := cmdPartial(cmds); err != nil {
		return 0, false, err
	}
	version, err = v.Uint64()
	switch {
	case errors.Is(err, redis.Nil):
		return 0, true, nil
	case err != nil:
		return 0, false, fmt.Errorf("l2: namespace version: %w", err)
	}
	return version, true, nil
}

func roundTTL(ttl time.Duration) time.Duration {
	return max(ttl.Round(time.Millisecond), time.Millisecond)
}

// cmdErrors joins the distinct errors of cmds, misses aside.
func cmdErrors[C redis.Cmder](cmds []C) error {
	var errs []error
	for _, c := range cmds {
		if err := c.Err(); err != nil && !errors.Is(err, redis.Nil) {
			errs = append(errs, err)
		}
	}
	return joinDistinct(errs)
}

// joinDistinct joins errors, keeping one of each message: a dead shard fails
// every command sent to it with the same error.
func joinDistinct(errs []error) error {
	seen := make(map[string]bool, 2)
	var out []error
	for _, e := range errs {
		if !seen[e.Error()] {
			seen[e.Error()] = true
			out = append(out, e)
		}
	}
	return errors.Join(out...)
}

// Close closes the connections Strata opened; a user's Client is left open.
// It is idempotent.
func (s *Store) Close() error {
	s.closeOnce.Do(func() {
		if s.topo.watched() {
			s.health.close()
		}
		if s.topo == shardRing {
			s.pool.close()
		}
		if s.owned {
			s.closeErr = s.client.Close()
		}
	})
	return s.closeErr
}

// NamespaceVersion returns ns's version: 0 until the first BumpVersion. On
// shards it is the largest copy on a serving shard: each shard holds one, so
// the version survives any shard's absence.
func (s *Store) NamespaceVersion(ctx context.Context, ns string) (uint64, error) {
	return s.namespaceVersion(ctx, ns, false)
}

// LatestVersion is NamespaceVersion for a writer checking, after its write,
// whether a Clear moved ns: on shards, the largest copy among the serving
// shards that answered, failing only if none did. A Clear that returned
// wrote every serving shard, so any one that answers knows of it (a shard
// that rejoined since is the exception: see the README's windows).
func (s *Store) LatestVersion(ctx context.Context, ns string) (uint64, error) {
	return s.namespaceVersion(ctx, ns, true)
}

func (s *Store) namespaceVersion(ctx context.Context, ns string, anyShard bool) (uint64, error) {
	k := s.versionKey(ns)
	if s.topo != shardRing {
		v, err := s.client.Get(ctx, k).Uint64()
		if errors.Is(err, redis.Nil) {
			return 0, nil
		}
		return v, err
	}
	var (
		mu   sync.Mutex
		wg   sync.WaitGroup
		top  uint64
		errs []error
		read int
	)
	for _, n := range s.set.nodes {
		if !n.serving() {
			continue
		}
		wg.Go(func() { // writers read it after every write: one round trip, not one per shard
			v, err := n.client.Get(ctx, k).Uint64()
			mu.Lock()
			defer mu.Unlock()
			switch {
			case err == nil:
				top = max(top, v)
				read++
			case errors.Is(err, redis.Nil):
				read++
			default:
				errs = append(errs, err)
			}
		})
	}
	wg.Wait()
	if read == 0 || len(errs) > 0 && !anyShard {
		// A shard that did not answer may hold the latest version.
		return 0, errors.Join(append(errs, fmt.Errorf("%w: not every serving shard answered for the version of %q", ErrUnavailable, ns))...)
	}
	return top, nil
}

// BumpVersion moves ns's version to a larger one and returns it. Callers key
// the namespace's data by version, so a bump makes every older key
// unreachable at once; the old keys expire by their TTL. On a single node, a
// Cluster or a caller's client the version is incremented (INCR). On shards
// it becomes the current time in Unix milliseconds, or one past the largest
// copy if that is larger, so no version is used twice even when a shard that
// holds one is away; it is written to every serving shard (two concurrent
// bumps may give one new version, which serves both).
func (s *Store) BumpVersion(ctx context.Context, ns string) (uint64, error) {
	k := s.versionKey(ns)
	if s.topo != shardRing {
		v, err := s.client.Incr(ctx, k).Result()
		return uint64(v), err
	}
	cur, err := s.NamespaceVersion(ctx, ns)
	if err != nil {
		return 0, err
	}
	// Never a version used before, even one a shard now out of service
	// holds: a millisecond clock, or one past the largest seen.
	next := max(cur+1, uint64(time.Now().UnixMilli()))
	written := 0
	var errs []error
	for _, n := range s.set.nodes {
		if !n.serving() {
			continue
		}
		if err := setMaxScript.Run(ctx, n.client, []string{k}, next).Err(); err != nil {
			errs = append(errs, err)
			continue
		}
		written++
	}
	if written == 0 || len(errs) > 0 {
		// A serving shard left at the old version would answer reads with it.
		return 0, errors.Join(append(errs, fmt.Errorf("%w: not every serving shard took the version of %q", ErrUnavailable, ns))...)
	}
	return next, nil
}
