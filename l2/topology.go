package l2

import (
	"context"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
)

// topology is the deployment a store talks to, decided once in Open. It says
// how keys are routed, how a multi-key command is split, and whether the
// store watches the servers' health: Strata routes and watches only servers
// it connected itself (Addrs); a Cluster and a caller's client route their
// keys themselves.
type topology uint8

const (
	// singleNode is one server Strata connected (Addrs with one address),
	// with a health watch.
	singleNode topology = iota
	// shardRing is shards Strata connected (several Addrs) and routes over
	// itself (shardSet), with a health watch.
	shardRing
	// redisCluster is a Redis Cluster: ClusterAddrs, or a caller's
	// *redis.ClusterClient. It routes by slot and follows failovers itself.
	redisCluster
	// callerNode is a caller's *redis.Client.
	callerNode
	// callerRing is a caller's *redis.Ring, which routes its keys and
	// watches its shards (its heartbeat) itself.
	callerRing
	// callerOther is any other client a caller gave.
	callerOther
)

// callerTopology is the topology of a caller's client.
func callerTopology(c redis.UniversalClient) topology {
	switch c.(type) {
	case *redis.Client:
		return callerNode
	case *redis.Ring:
		return callerRing
	case *redis.ClusterClient:
		return redisCluster
	}
	return callerOther
}

// watched reports whether the store watches its servers' health: a server
// out of service is fenced, and cleaned before it serves again (see Heals).
func (t topology) watched() bool { return t == singleNode || t == shardRing }

// oneServer reports whether every key is on one server: one MGET may read
// any keys, and a script may read a namespace version beside the key it
// writes.
func (t topology) oneServer() bool { return t == singleNode || t == callerNode }

// getPerKey reports whether a multi-key read must send a GET per key: the
// keys of one pipeline may be on different slots or shards, which one MGET
// cannot span (Strata's own Ring splits its batches per shard instead).
func (t topology) getPerKey() bool { return !t.oneServer() && t != shardRing }

// build makes the go-redis client c describes and decides the topology: a
// guard per server Strata connects, and for a single node or a Ring the
// health watch that routes around servers out of service.
func (c *Config) build(s *Store, w Watcher) {
	switch {
	case c.Client != nil:
		s.client, s.topo = c.Client, callerTopology(c.Client)
	case len(c.ClusterAddrs) > 0:
		s.cluster = newClusterView(c.ClusterAddrs)
		s.client, s.topo = c.buildCluster(s.cluster), redisCluster
	case len(c.Addrs) == 1:
		c.buildSingle(s, w)
	default:
		c.buildRing(s, w)
	}
}

// options are a server's client options for cache traffic.
func (c *Config) options(addr string) *redis.Options {
	return &redis.Options{
		Addr: addr, Username: c.Username, Password: c.Password, TLSConfig: c.TLS,
		DialTimeout: c.DialTimeout, ReadTimeout: c.Timeout, WriteTimeout: c.Timeout, PoolSize: c.PoolSize,
		MaxRetries: noRetries, DialerRetries: 1,
	}
}

// buildCluster makes a Cluster client. Cluster nodes come and go with
// failovers: each gets a breaker when go-redis first connects to it, kept
// in view, which also learns the masters from go-redis's own CLUSTER SLOTS
// replies; the cluster itself routes.
func (c *Config) buildCluster(view *clusterView) *redis.ClusterClient {
	var cluster *redis.ClusterClient
	var lastReload atomic.Int64
	// A failing node may have lost its slots to a promoted replica; go-redis
	// reloads the topology on MOVED or on its own retries, which a refused
	// command never reaches. Reload at most every HealthInterval.
	reload := func() {
		now, last := time.Now().UnixNano(), lastReload.Load()
		if now-last > int64(c.HealthInterval) && lastReload.CompareAndSwap(last, now) {
			cluster.ReloadState(context.Background())
		}
	}
	cluster = redis.NewClusterClient(&redis.ClusterOptions{
		Addrs: c.ClusterAddrs, Username: c.Username, Password: c.Password, TLSConfig: c.TLS,
		DialTimeout: c.DialTimeout, ReadTimeout: c.Timeout, WriteTimeout: c.Timeout, PoolSize: c.PoolSize,
		MaxRetries: noRetries, DialerRetries: 1,
		// Redirects (MOVED, ASK) stay on: they are how go-redis follows
		// resharding and failover. The retries they also allow on a
		// connection error go without backoff, so a dead master costs one
		// quick retry, not up to 512 ms of backoff before the breaker opens.
		MinRetryBackoff: -1, MaxRetryBackoff: -1,
		NewClient: func(o *redis.Options) *redis.Client {
			cl := redis.NewClient(o)
			cl.AddHook(view.guard(o.Addr, c.breaker(), reload))
			cl.AddHook(slotsHook{view: view, addr: o.Addr})
			return cl
		},
	})
	return cluster
}

// buildSingle connects the one server of Addrs.
func (c *Config) buildSingle(s *Store, w Watcher) {
	n := newNode("redis", c.Addrs[0], c.breaker(), true)
	n.client = redis.NewClient(c.options(c.Addrs[0]))
	n.client.AddHook(n)
	n.admin = c.adminClient(c.options(c.Addrs[0]))
	s.client, s.topo = n.client, singleNode
	s.health = c.watch(s, []*node{n}, nil, w)
}

// buildRing connects the shards of Addrs through a Ring that Strata routes.
func (c *Config) buildRing(s *Store, w Watcher) {
	shards := make(map[string]string, len(c.Addrs))
	nodes := make([]*node, len(c.Addrs))
	byAddr := make(map[string]*node, len(c.Addrs))
	for i, addr := range c.Addrs {
		name := fmt.Sprintf("shard%d", i)
		shards[name] = addr
		nodes[i] = newNode(name, addr, c.breaker(), true)
		byAddr[addr] = nodes[i]
	}
	set := newShardSet(nodes)
	o := c.options("")
	ring := redis.NewRing(&redis.RingOptions{
		Addrs: shards, Username: c.Username, Password: c.Password, TLSConfig: c.TLS,
		DialTimeout: c.DialTimeout, ReadTimeout: c.Timeout, WriteTimeout: c.Timeout, PoolSize: c.PoolSize,
		MaxRetries: noRetries, DialerRetries: 1,
		// Strata routes (shardSet) and watches the shards (watch); the
		// Ring's own heartbeat would bring a shard back before it is safe.
		NewConsistentHash:  func([]string) redis.ConsistentHash { return set },
		HeartbeatFn:        func(context.Context, *redis.Client) bool { return true },
		HeartbeatFrequency: time.Hour,
		NewClient: func(ro *redis.Options) *redis.Client {
			ro.DialerRetries, ro.MaxRetries = o.DialerRetries, o.MaxRetries
			cl := redis.NewClient(ro)
			if n := byAddr[ro.Addr]; n != nil {
				n.client = cl
				cl.AddHook(n)
				n.admin = c.adminClient(c.options(ro.Addr))
			}
			return cl
		},
	})
	s.client, s.topo, s.set, s.pool = ring, shardRing, set, newWorkers(len(nodes)-1)
	s.health = c.watch(s, nodes, set, w)
}

// Heals reports whether the store keeps a server whose write failed out of
// service until the written keys are deleted from it (a single node or a Ring
// that Strata connected). For a Redis Cluster or a caller's client a failed
// write may leave the old value readable.
func (s *Store) Heals() bool { return s.topo.watched() }

// Settled reports whether a key's server now is where the key will be read
// later, so a write that lands now repairs what a failed one left behind.
// It is false while a caller's own Ring routes around shards it holds down:
// their keys go elsewhere until they return, with whatever they held.
// (Strata's own routing cleans a returning server first; a Cluster moves a
// slot with its data.)
func (s *Store) Settled() bool {
	if s.topo != callerRing {
		return true
	}
	ring := s.client.(*redis.Ring)
	return ring.Len() >= len(ring.Options().Addrs)
}

// Server returns the address of the server a key (of any namespace) is sent
// to now, for naming it if the write fails (see MarkDirty): the configured
// address of a single node or Ring shard, "" for a Redis Cluster or a
// caller's client.
func (s *Store) Server(key string) string {
	switch s.topo {
	case singleNode:
		return s.health.nodes[0].addr
	case shardRing:
		// Routed by the value key's hash tag, as route does.
		at, _, _ := s.set.place(hashTag("{" + keyTag(key) + "}"))
		return s.set.nodes[at].addr
	}
	return ""
}

// PubSubClient returns the client to publish and subscribe invalidations on.
// On a Ring it is the shard that owns channel when all are up, whatever the
// routing: replicas that disagree about a shard still meet on one channel.
// That shard being out leaves the other channel (gossip) to carry them.
func (s *Store) PubSubClient(channel string) redis.UniversalClient {
	if s.topo != shardRing {
		return s.client
	}
	return s.set.nodes[s.set.all.Get(hashTag(channel))].client
}
