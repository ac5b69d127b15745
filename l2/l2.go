// Package l2 is Strata's shared tier: Redis as a single node, consistent-hashed
// shards or a Redis Cluster, behind one store with a binary entry envelope.
package l2

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

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
	DefaultTimeout = 250 * time.Millisecond
	// DefaultDialTimeout bounds opening a connection.
	DefaultDialTimeout = time.Second
)

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
}

// Enabled reports whether c configures an L2 at all.
func (c *Config) Enabled() bool {
	return len(c.Addrs) > 0 || len(c.ClusterAddrs) > 0 || c.Client != nil
}

func (c *Config) setDefaults() error {
	set := 0
	for _, b := range []bool{len(c.Addrs) > 0, len(c.ClusterAddrs) > 0, c.Client != nil} {
		if b {
			set++
		}
	}
	if set > 1 {
		return errors.New("l2: set only one of Addrs, ClusterAddrs and Client")
	}
	if c.Prefix == "" {
		c.Prefix = DefaultPrefix
	}
	if strings.ContainsAny(c.Prefix, "{}") {
		return fmt.Errorf("l2: prefix %q must not contain '{' or '}'", c.Prefix)
	}
	if c.Timeout < 0 || c.DialTimeout < 0 || c.PoolSize < 0 {
		return errors.New("l2: Timeout, DialTimeout and PoolSize must not be negative")
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

// newClient builds the go-redis client c describes.
func (c *Config) newClient() redis.UniversalClient {
	switch {
	case c.Client != nil:
		return c.Client
	case len(c.ClusterAddrs) > 0:
		return redis.NewClusterClient(&redis.ClusterOptions{
			Addrs: c.ClusterAddrs, Username: c.Username, Password: c.Password, TLSConfig: c.TLS,
			DialTimeout: c.DialTimeout, ReadTimeout: c.Timeout, WriteTimeout: c.Timeout, PoolSize: c.PoolSize,
			MaxRetries: noRetries, DialerRetries: 1,
		})
	case len(c.Addrs) == 1:
		return redis.NewClient(&redis.Options{
			Addr: c.Addrs[0], Username: c.Username, Password: c.Password, TLSConfig: c.TLS,
			DialTimeout: c.DialTimeout, ReadTimeout: c.Timeout, WriteTimeout: c.Timeout, PoolSize: c.PoolSize,
			MaxRetries: noRetries, DialerRetries: 1,
		})
	default:
		shards := make(map[string]string, len(c.Addrs))
		for i, addr := range c.Addrs {
			shards[fmt.Sprintf("shard%d", i)] = addr
		}
		return redis.NewRing(&redis.RingOptions{
			Addrs: shards, Username: c.Username, Password: c.Password, TLSConfig: c.TLS,
			DialTimeout: c.DialTimeout, ReadTimeout: c.Timeout, WriteTimeout: c.Timeout, PoolSize: c.PoolSize,
			MaxRetries: noRetries, DialerRetries: 1,
		})
	}
}

// Store is the L2 tier. It is safe for concurrent use.
type Store struct {
	client    redis.UniversalClient
	owned     bool
	prefix    string
	closeOnce sync.Once
	closeErr  error
}

// Open returns a store for cfg, or an error if cfg is invalid or not Enabled.
// It does not contact Redis: a Redis that is down at start is an L2 error on
// use, not a failure to start.
func Open(cfg Config) (*Store, error) {
	if !cfg.Enabled() {
		return nil, errors.New("l2: no Addrs, ClusterAddrs or Client configured")
	}
	if err := cfg.setDefaults(); err != nil {
		return nil, err
	}
	return &Store{client: cfg.newClient(), owned: cfg.Client == nil, prefix: cfg.Prefix}, nil
}

// Prefix returns the key prefix in force.
func (s *Store) Prefix() string { return s.prefix }

// Client returns the underlying go-redis client, for instrumentation such as
// redisotel. Callers must not close it.
func (s *Store) Client() redis.UniversalClient { return s.client }

// Key returns the Redis key of key in namespace ns: prefix:ns:{key}. The braces
// are a Redis Cluster hash tag (go-redis's Ring honours it too), so a key's
// value and its helper keys share a slot and a shard while different keys
// spread. A key starting with '}' or '~' gets a '~' in front inside the tag,
// so the tag of a non-empty key is never empty and the mapping stays
// one-to-one.
func (s *Store) Key(ns, key string) string {
	escape := ""
	if key != "" && (key[0] == '}' || key[0] == '~') {
		escape = "~"
	}
	return s.prefix + ":" + ns + ":{" + escape + key + "}"
}

// Get returns the bytes stored for key, or nil without error when there are none.
func (s *Store) Get(ctx context.Context, ns, key string) ([]byte, error) {
	b, err := s.client.Get(ctx, s.Key(ns, key)).Bytes()
	if errors.Is(err, redis.Nil) {
		return nil, nil
	}
	return b, err
}

// GetMany returns the bytes stored for each key, nil where there are none. It
// sends one pipeline; go-redis splits it per shard (Ring) or node (Cluster)
// and runs those in parallel, so it costs about one round trip per shard. (One
// MGET per shard measured no faster here, and a Cluster MGET cannot span
// slots.) On a partial failure the keys that were read are returned along
// with the error.
func (s *Store) GetMany(ctx context.Context, ns string, keys []string) ([][]byte, error) {
	full := make([]string, len(keys))
	for i, k := range keys {
		full[i] = s.Key(ns, k)
	}
	out := make([][]byte, len(keys))
	return out, s.pipelineGetMany(ctx, full, out)
}

// pipelineGetMany sends one GET per key in one pipeline.
func (s *Store) pipelineGetMany(ctx context.Context, full []string, out [][]byte) error {
	cmds := make([]*redis.StringCmd, len(full))
	_, _ = s.client.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i, k := range full {
			cmds[i] = p.Get(ctx, k)
		}
		return nil
	})
	var errs []error
	for i, cmd := range cmds {
		b, err := cmd.Bytes()
		switch {
		case err == nil:
			out[i] = b
		case !errors.Is(err, redis.Nil):
			errs = append(errs, err)
		}
	}
	return joinDistinct(errs)
}

// Expire sets key's time to live to ttl (sliding expiration).
func (s *Store) Expire(ctx context.Context, ns, key string, ttl time.Duration) error {
	return s.client.PExpire(ctx, s.Key(ns, key), roundTTL(ttl)).Err()
}

// Item is one entry to write with SetMany.
type Item struct {
	Key  string
	Data []byte
	TTL  time.Duration
}

// Set stores data under key for ttl (rounded to a millisecond, at least one).
func (s *Store) Set(ctx context.Context, ns, key string, data []byte, ttl time.Duration) error {
	return s.client.Set(ctx, s.Key(ns, key), data, roundTTL(ttl)).Err()
}

// SetMany stores items in one pipeline, split per shard like GetMany.
func (s *Store) SetMany(ctx context.Context, ns string, items []Item) error {
	cmds, err := s.client.Pipelined(ctx, func(p redis.Pipeliner) error {
		for _, it := range items {
			p.Set(ctx, s.Key(ns, it.Key), it.Data, roundTTL(it.TTL))
		}
		return nil
	})
	return firstErrors(cmds, err)
}

// Delete removes keys and their load leases (so a fill of data loaded before
// the delete fails), one DEL per key in one pipeline: a key and its lease
// share a slot, different keys may not.
func (s *Store) Delete(ctx context.Context, ns string, keys ...string) error {
	if len(keys) == 1 {
		k := s.Key(ns, keys[0])
		return s.client.Del(ctx, k, k+leaseSuffix).Err()
	}
	cmds, err := s.client.Pipelined(ctx, func(p redis.Pipeliner) error {
		for _, key := range keys {
			k := s.Key(ns, key)
			p.Del(ctx, k, k+leaseSuffix)
		}
		return nil
	})
	return firstErrors(cmds, err)
}

func roundTTL(ttl time.Duration) time.Duration {
	return max(ttl.Round(time.Millisecond), time.Millisecond)
}

func firstErrors(cmds []redis.Cmder, err error) error {
	if err == nil {
		return nil
	}
	errs := make([]error, 0, len(cmds))
	for _, c := range cmds {
		if c.Err() != nil {
			errs = append(errs, c.Err())
		}
	}
	if len(errs) == 0 {
		return err
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
		if s.owned {
			s.closeErr = s.client.Close()
		}
	})
	return s.closeErr
}

// versionSuffix names a namespace's version counter: prefix:ns#version.
// Namespaces cannot contain '#', so it collides with no namespace's keys.
const versionSuffix = "#version"

// NamespaceVersion returns ns's version: 0 until the first BumpVersion.
func (s *Store) NamespaceVersion(ctx context.Context, ns string) (uint64, error) {
	v, err := s.client.Get(ctx, s.prefix+":"+ns+versionSuffix).Uint64()
	if errors.Is(err, redis.Nil) {
		return 0, nil
	}
	return v, err
}

// BumpVersion increments ns's version and returns the new one. Callers key
// the namespace's data by version, so a bump makes every older key
// unreachable at once; the old keys expire by their TTL.
func (s *Store) BumpVersion(ctx context.Context, ns string) (uint64, error) {
	v, err := s.client.Incr(ctx, s.prefix+":"+ns+versionSuffix).Result()
	return uint64(v), err
}

// DeleteMatching removes the keys of ns whose key matches pattern (Redis
// glob syntax), with their leases: SCAN and UNLINK on every shard or cluster
// master. It returns how many keys it removed.
func (s *Store) DeleteMatching(ctx context.Context, ns, pattern string) (int, error) {
	match := s.prefix + ":" + ns + ":{" + pattern + "}"
	var mu sync.Mutex
	total := 0
	each := func(ctx context.Context, c *redis.Client) error {
		n, err := scanUnlink(ctx, c, match)
		mu.Lock()
		total += n
		mu.Unlock()
		return err
	}
	var err error
	switch c := s.client.(type) {
	case *redis.ClusterClient:
		err = c.ForEachMaster(ctx, each)
	case *redis.Ring:
		err = c.ForEachShard(ctx, each)
	case *redis.Client:
		err = each(ctx, c)
	default:
		err = fmt.Errorf("l2: pattern deletion needs a *redis.Client, Ring or ClusterClient, not %T", s.client)
	}
	return total, err
}

// scanUnlink unlinks every key of one server matching match, and its lease.
func scanUnlink(ctx context.Context, c *redis.Client, match string) (int, error) {
	total := 0
	var cursor uint64
	for {
		keys, next, err := c.Scan(ctx, cursor, match, 1000).Result()
		if err != nil {
			return total, err
		}
		if len(keys) > 0 {
			all := make([]string, 0, 2*len(keys))
			for _, k := range keys {
				all = append(all, k, k+leaseSuffix)
			}
			// A key and its lease share a slot; different keys may not.
			if _, err := c.Pipelined(ctx, func(p redis.Pipeliner) error {
				for i := 0; i < len(all); i += 2 {
					p.Unlink(ctx, all[i], all[i+1])
				}
				return nil
			}); err != nil {
				return total, err
			}
			total += len(keys)
		}
		if cursor = next; cursor == 0 {
			return total, nil
		}
	}
}
