package benchmarks

// Constructors for every contender, shared by the benchmark files of this
// package. Each takes a testing.TB, fails it on error and closes what it
// opened in tb.Cleanup. Each gives its contender the workload's byte
// capacity (capacityBytes) and TTL (ttl), or the nearest equivalent the
// contender has, as its comment says.
//
// Encodings: Strata keeps decoded *User in L1 and JSON in L2 (its default
// codec); raw ristretto and otter keep the *User itself; go-redis/cache
// keeps its default encoding, msgpack (s2-compressed from 64 bytes on), in
// TinyLFU and Redis; go-redis, rueidis and go-redis's client-side cache keep
// JSON, in Redis and in their local tier, and decode it on every read, as a
// user of them must.

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/dgraph-io/ristretto/v2"
	"github.com/go-redis/cache/v9"
	"github.com/maypok86/otter/v2"
	"github.com/redis/go-redis/v9"
	"github.com/redis/rueidis"
	"github.com/strata-cache/strata/internal/redistest"
	"github.com/strata-cache/strata/l2"
	"github.com/strata-cache/strata/tiered"
)

// entryOverhead is the fixed per-entry cost Strata's L1 charges beside the
// key and the encoded value (l1's entryOverhead). The raw local caches are
// weighed with the same formula, entryCost, so that capacityBytes holds as
// many entries in each.
const entryOverhead = 128

// strataNamespace is the namespace of every Strata cache of the benchmarks.
const strataNamespace = "users"

// quiet drops the log lines of the Strata replicas: a benchmark's output is
// its results.
var quiet = slog.New(slog.DiscardHandler)

// encodeJSON returns u as JSON: what go-redis, rueidis and go-redis's
// client-side cache store, and what Strata's default codec writes to L2.
func encodeJSON(u *User) []byte {
	data, err := json.Marshal(u)
	if err != nil {
		panic(err) // a User always encodes
	}
	return data
}

// decodeJSON decodes data into a new *User: what a user of a cache that
// keeps bytes does on every hit.
func decodeJSON(data []byte) (*User, error) {
	u := new(User)
	if err := json.Unmarshal(data, u); err != nil {
		return nil, err
	}
	return u, nil
}

// entryCost is the bytes an entry of u under k is charged: its JSON, its key
// and entryOverhead, as Strata's L1 charges it.
func entryCost(k string, u *User) int64 {
	return int64(len(encodeJSON(u)) + len(k) + entryOverhead)
}

// capacityEntries converts capacityBytes into a number of entries for the
// caches that count entries (go-redis/cache's TinyLFU): capacityBytes over
// the workload's mean entry, sized as entryCost sizes it but with encode as
// the encoding.
func capacityEntries(encode func(*User) []byte) int {
	var total int
	for i := range numKeys {
		total += len(encode(newUser(i))) + len(key(i)) + entryOverhead
	}
	return capacityBytes / (total / numKeys)
}

// startRedis starts n Redis servers (independent shards when n > 1) and
// returns their addresses.
func startRedis(tb testing.TB, n int) []string {
	tb.Helper()
	var addrs []string
	for _, s := range redistest.StartShards(tb, n) {
		addrs = append(addrs, s.Addr())
	}
	return addrs
}

// inParallel runs f(i) for every i in [0, n) on 8 goroutines and returns
// the first error: warming does 1,000 round trips, 8 at a time.
func inParallel(n int, f func(i int) error) error {
	const workers = 8
	var (
		wg    sync.WaitGroup
		once  sync.Once
		first error
	)
	for w := range workers {
		wg.Go(func() {
			for i := w; i < n; i += workers {
				if err := f(i); err != nil {
					once.Do(func() { first = fmt.Errorf("key %d: %w", i, err) })
					return
				}
			}
		})
	}
	wg.Wait()
	return first
}

// --- Strata ---------------------------------------------------------------

// newStrataClient opens a Strata replica with cfg, its logs dropped unless
// cfg.Logger is set. With L2 (cfg.Redis) it waits until a channel vouches
// for L1: the first trust drops L1, so a value cached before would be lost.
// The client is closed in tb.Cleanup.
func newStrataClient(tb testing.TB, cfg tiered.Config) *tiered.Client {
	tb.Helper()
	if cfg.Logger == nil {
		cfg.Logger = quiet
	}
	client, err := tiered.NewClient(context.Background(), cfg)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { _ = client.Close() })
	redistest.WaitFor(tb, 5*time.Second, func() bool { return client.Health().Trusted }, "Strata L1 never trusted")
	return client
}

// newStrataCache returns client's Cache of *User in namespace "users": TTL
// ttl, L1 configured by l1 with MaxCost capacityBytes and MaxTTL ttl where l1
// leaves them zero. MaxTTL (Strata's bound on serving an L1 copy without
// looking at L2, a minute by default) is set to the TTL as every other
// contender serves its local copy for the TTL: a long run must not turn
// hits into L2 reads.
func newStrataCache(tb testing.TB, client *tiered.Client, l1 tiered.L1Options) *tiered.Cache[*User] {
	tb.Helper()
	if l1.MaxCost == 0 {
		l1.MaxCost = capacityBytes
	}
	if l1.MaxTTL == 0 {
		l1.MaxTTL = ttl
	}
	c, err := tiered.NewCache(client, strataNamespace, tiered.Options[*User]{TTL: ttl, L1: l1})
	if err != nil {
		tb.Fatal(err)
	}
	return c
}

// newStrata is a Strata replica on the Redis servers at addrs (one address:
// a single node; several: shards) with its "users" cache, configured by
// l1. The replica's only invalidation channel is Redis pub/sub.
func newStrata(tb testing.TB, addrs []string, l1 tiered.L1Options) *tiered.Cache[*User] {
	tb.Helper()
	client := newStrataClient(tb, tiered.Config{Redis: l2.Config{Addrs: addrs}})
	return newStrataCache(tb, client, l1)
}

// warmStrata sets key(i) to newUser(i) for every i in [0, n), in L2 and in
// the L1 of c's replica, then reads every key once. The reads matter:
// Sets run 8 at a time, and a Set whose key shares a fill-guard stripe with
// another key written meanwhile does not install its copy in L1 (about 1% of
// keys here; a refused install, never a wrong one); its read fills L1 from
// L2.
func warmStrata(tb testing.TB, c *tiered.Cache[*User], n int) {
	tb.Helper()
	ctx := context.Background()
	if err := inParallel(n, func(i int) error { return c.Set(ctx, key(i), newUser(i)) }); err != nil {
		tb.Fatal(err)
	}
	for i := range n {
		if _, err := c.Get(ctx, key(i), nil); err != nil {
			tb.Fatal(err)
		}
	}
}

// --- raw local caches -----------------------------------------------------

// newRistretto is a raw ristretto v2 cache of *User configured as Strata's
// L1 configures its Ristretto engine: MaxCost capacityBytes, one admission
// counter per 16 bytes of it (l1's default: ten per 160-byte entry), 64
// buffer items, entries weighed by entryCost.
func newRistretto(tb testing.TB) *ristretto.Cache[string, *User] {
	tb.Helper()
	rc, err := ristretto.NewCache(&ristretto.Config[string, *User]{
		NumCounters: capacityBytes / 16, MaxCost: capacityBytes, BufferItems: 64, IgnoreInternalCost: true,
	})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(rc.Close)
	return rc
}

// warmRistretto sets key(i) to newUser(i) for every i in [0, n), with TTL
// entryTTL (0: none), until each is readable: ristretto's Set is
// asynchronous and may drop a write when its buffers are full.
func warmRistretto(tb testing.TB, rc *ristretto.Cache[string, *User], n int, entryTTL time.Duration) {
	tb.Helper()
	for i := range n {
		k, u := key(i), newUser(i)
		for try := 0; ; try++ {
			rc.SetWithTTL(k, u, entryCost(k, u), entryTTL)
			rc.Wait()
			if _, ok := rc.Get(k); ok {
				break
			}
			if try == 10 {
				tb.Fatalf("ristretto never admitted %s", k)
			}
		}
	}
}

// newOtter is a raw otter v2 cache of *User: MaximumWeight capacityBytes,
// entries weighed by entryCost, expiring ttl after they are written unless
// expiring is false.
func newOtter(tb testing.TB, expiring bool) *otter.Cache[string, *User] {
	tb.Helper()
	o := &otter.Options[string, *User]{
		MaximumWeight: capacityBytes,
		Weigher:       func(k string, u *User) uint32 { return uint32(entryCost(k, u)) },
	}
	if expiring {
		o.ExpiryCalculator = otter.ExpiryWriting[string, *User](ttl)
	}
	oc, err := otter.New(o)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { oc.StopAllGoroutines() })
	return oc
}

// warmOtter sets key(i) to newUser(i) for every i in [0, n) (otter's Set is
// synchronous).
func warmOtter(oc *otter.Cache[string, *User], n int) {
	for i := range n {
		oc.Set(key(i), newUser(i))
	}
}

// --- go-redis -------------------------------------------------------------

// newGoRedis is a plain go-redis v9 client (its defaults: RESP3, 10
// connections per CPU) of the Redis at addr, without a local tier.
func newGoRedis(tb testing.TB, addr string) *redis.Client {
	tb.Helper()
	rdb := redis.NewClient(&redis.Options{Addr: addr})
	tb.Cleanup(func() { _ = rdb.Close() })
	return rdb
}

// newGoRedisRing is a go-redis v9 Ring over the Redis shards at addrs:
// client-side consistent hashing, as Strata's l2 uses it for Addrs.
func newGoRedisRing(tb testing.TB, addrs []string) *redis.Ring {
	tb.Helper()
	shards := map[string]string{}
	for i, a := range addrs {
		shards["shard"+strconv.Itoa(i)] = a
	}
	ring := redis.NewRing(&redis.RingOptions{Addrs: shards})
	tb.Cleanup(func() { _ = ring.Close() })
	return ring
}

// setJSON stores key(i) → JSON of newUser(i) with TTL ttl for every i in
// [0, n), in one pipeline, through rdb (a Client or a Ring).
func setJSON(tb testing.TB, rdb redis.Cmdable, n int) {
	tb.Helper()
	ctx := context.Background()
	_, err := rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i := range n {
			p.Set(ctx, key(i), encodeJSON(newUser(i)), ttl)
		}
		return nil
	})
	if err != nil {
		tb.Fatal(err)
	}
}

// newGoRedisCSC is a go-redis v9 client of the Redis at addr with its
// built-in client-side cache (Options.ClientSideCacheConfig, experimental
// since v9.22): RESP3 (Protocol 3; with RESP2 go-redis silently leaves the
// cache off), MaxMemoryBytes capacityBytes by go-redis's own sizer, no
// MaxStaleness (an entry lives until Redis invalidates it or Redis's TTL
// ends). A plain GET is served by the cache; CSCStats counts its hits.
func newGoRedisCSC(tb testing.TB, addr string) *redis.Client {
	tb.Helper()
	rdb := redis.NewClient(&redis.Options{
		Addr:                  addr,
		Protocol:              3,
		ClientSideCacheConfig: &redis.ClientSideCacheConfig{MaxMemoryBytes: capacityBytes},
	})
	tb.Cleanup(func() { _ = rdb.Close() })
	return rdb
}

// fillGoRedisCSC reads key(i) for every i in [0, n) through rdb's
// client-side cache until a read is a hit: the first read of a key is a
// miss that fills the cache.
func fillGoRedisCSC(tb testing.TB, rdb *redis.Client, n int) {
	tb.Helper()
	ctx := context.Background()
	for i := range n {
		for try := 0; ; try++ {
			before := rdb.CSCStats().Hits
			if err := rdb.Get(ctx, key(i)).Err(); err != nil {
				tb.Fatal(err)
			}
			if rdb.CSCStats().Hits > before {
				break
			}
			if try == 10 {
				tb.Fatalf("go-redis client-side cache never served %s", key(i))
			}
		}
	}
}

// --- go-redis/cache -------------------------------------------------------

// newGoRedisCache is a go-redis/cache v9 cache over its own go-redis client
// of the Redis at addr, with the local TinyLFU it documents,
// cache.NewTinyLFU(size, ttl). TinyLFU counts entries, not bytes: size is
// capacityEntries of the msgpack encoding (about 170,000 entries). Its TTL
// is ttl plus a random offset of up to 10 s, go-redis/cache's default.
// StatsEnabled: Stats counts the reads that went to Redis (a local hit is
// counted nowhere).
func newGoRedisCache(tb testing.TB, addr string) *cache.Cache {
	tb.Helper()
	codec := cache.New(&cache.Options{}) // its Marshal, to size entries
	msgpack := func(u *User) []byte {
		b, err := codec.Marshal(u)
		if err != nil {
			panic(err)
		}
		return b
	}
	return cache.New(&cache.Options{
		Redis:        newGoRedis(tb, addr),
		LocalCache:   cache.NewTinyLFU(capacityEntries(msgpack), ttl),
		StatsEnabled: true,
	})
}

// warmGoRedisCache sets key(i) to newUser(i) with TTL ttl for every i in
// [0, n): in Redis and in cd's TinyLFU.
func warmGoRedisCache(tb testing.TB, cd *cache.Cache, n int) {
	tb.Helper()
	ctx := context.Background()
	err := inParallel(n, func(i int) error {
		return cd.Set(&cache.Item{Ctx: ctx, Key: key(i), Value: newUser(i), TTL: ttl})
	})
	if err != nil {
		tb.Fatal(err)
	}
}

// --- rueidis --------------------------------------------------------------

// rueidisMultiplex is rueidis's PipelineMultiplex for the benchmarks: 2^1 =
// 2 pipelined connections per Redis server (what rueidis picks by itself on
// 2 CPUs: log2(GOMAXPROCS), at most 2; zero means that default, and a
// negative value means 1 connection). Each connection has its own
// client-side cache of CacheSizeEachConn bytes, and DoCache sends a key
// always to the same connection (by its slot), so the client caches
// CacheSizeEachConn × 2^PipelineMultiplex bytes in all.
const rueidisMultiplex = 1

// newRueidis is a rueidis client of the single Redis node at addr
// (ForceSingleClient: rueidis would otherwise try Cluster first). With csc,
// DoCache is served by its client-side cache, invalidated by RESP3 client
// tracking (OPTIN, rueidis's default), of capacityBytes in all
// (CacheSizeEachConn = capacityBytes / 2^rueidisMultiplex); without,
// DisableCache turns tracking off and DoCache into Do.
func newRueidis(tb testing.TB, addr string, csc bool) rueidis.Client {
	tb.Helper()
	client, err := rueidis.NewClient(rueidis.ClientOption{
		InitAddress:       []string{addr},
		ForceSingleClient: true,
		PipelineMultiplex: rueidisMultiplex,
		CacheSizeEachConn: capacityBytes >> rueidisMultiplex,
		DisableCache:      !csc,
	})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(client.Close)
	return client
}

// setJSONRueidis stores key(i) → JSON of newUser(i) with TTL ttl for every i
// in [0, n), in one pipeline.
func setJSONRueidis(tb testing.TB, client rueidis.Client, n int) {
	tb.Helper()
	cmds := make(rueidis.Commands, n)
	for i := range n {
		cmds[i] = client.B().Set().Key(key(i)).Value(rueidis.BinaryString(encodeJSON(newUser(i)))).Ex(ttl).Build()
	}
	for _, r := range client.DoMulti(context.Background(), cmds...) {
		if err := r.Error(); err != nil {
			tb.Fatal(err)
		}
	}
}

// rueidisGet reads k through client's client-side cache (DoCache, local
// TTL ttl) and decodes it; hit reports whether the cache answered.
func rueidisGet(ctx context.Context, client rueidis.Client, k string) (u *User, hit bool, err error) {
	resp := client.DoCache(ctx, client.B().Get().Key(k).Cache(), ttl)
	u = new(User)
	if err := resp.DecodeJSON(u); err != nil {
		return nil, false, err
	}
	return u, resp.IsCacheHit(), nil
}

// fillRueidis reads key(i) for every i in [0, n) through client's
// client-side cache until a read is a hit.
func fillRueidis(tb testing.TB, client rueidis.Client, n int) {
	tb.Helper()
	ctx := context.Background()
	for i := range n {
		for try := 0; ; try++ {
			_, hit, err := rueidisGet(ctx, client, key(i))
			if err != nil {
				tb.Fatal(err)
			}
			if hit {
				break
			}
			if try == 10 {
				tb.Fatalf("rueidis client-side cache never served %s", key(i))
			}
		}
	}
}

// --- replicas -------------------------------------------------------------

// replica is one process's handle on a contender that has a local tier over
// a shared Redis, for the benchmarks with several replicas: get reads
// through the local tier (decoding as the contender must), set writes the
// value to Redis (and to the local tier, for the contenders that write it
// there). A write's reach into the other replicas' local tiers is the
// contender's own: invalidation (Strata, rueidis, go-redis CSC) or none
// (go-redis/cache).
type replica interface {
	get(ctx context.Context, k string) (*User, error)
	set(ctx context.Context, k string, u *User) error
}

// replicaContenders names the contenders openReplicas knows.
var replicaContenders = []string{"strata", "go-redis-cache", "rueidis-csc", "go-redis-csc"}

// openReplicas opens n replicas of contender (one of replicaContenders) on
// the single Redis node at addr, and warms them: key(i) → value(i) (nil
// value: newUser) for every i in [0, numKeys) written through the first,
// then read once through every replica so that each holds every key
// locally. Strata's replicas are named replica-0, replica-1, … and use
// pub/sub alone.
func openReplicas(tb testing.TB, contender, addr string, n int, value func(i int) *User) []replica {
	tb.Helper()
	reps := make([]replica, n)
	for r := range reps {
		switch contender {
		case "strata":
			client := newStrataClient(tb, tiered.Config{NodeID: "replica-" + strconv.Itoa(r), Redis: l2.Config{Addrs: []string{addr}}})
			reps[r] = strataReplica{newStrataCache(tb, client, tiered.L1Options{})}
		case "go-redis-cache":
			reps[r] = goRedisCacheReplica{newGoRedisCache(tb, addr)}
		case "rueidis-csc":
			reps[r] = rueidisReplica{newRueidis(tb, addr, true)}
		case "go-redis-csc":
			reps[r] = goRedisCSCReplica{newGoRedisCSC(tb, addr)}
		default:
			tb.Fatalf("no replicas of contender %q", contender)
		}
	}
	if value == nil {
		value = newUser
	}
	ctx := context.Background()
	if err := inParallel(numKeys, func(i int) error { return reps[0].set(ctx, key(i), value(i)) }); err != nil {
		tb.Fatal(err)
	}
	for _, rep := range reps {
		if err := inParallel(numKeys, func(i int) error { _, err := rep.get(ctx, key(i)); return err }); err != nil {
			tb.Fatal(err)
		}
	}
	return reps
}

// strataReplica is a Strata Cache as a replica: Get with no loader (a
// lookup), Set.
type strataReplica struct{ c *tiered.Cache[*User] }

func (r strataReplica) get(ctx context.Context, k string) (*User, error) { return r.c.Get(ctx, k, nil) }

func (r strataReplica) set(ctx context.Context, k string, u *User) error { return r.c.Set(ctx, k, u) }

// goRedisCacheReplica is go-redis/cache as a replica: Get into a new *User,
// Set of an Item (its TinyLFU and Redis).
type goRedisCacheReplica struct{ cd *cache.Cache }

func (r goRedisCacheReplica) get(ctx context.Context, k string) (*User, error) {
	u := new(User)
	if err := r.cd.Get(ctx, k, u); err != nil {
		return nil, err
	}
	return u, nil
}

func (r goRedisCacheReplica) set(ctx context.Context, k string, u *User) error {
	return r.cd.Set(&cache.Item{Ctx: ctx, Key: k, Value: u, TTL: ttl})
}

// rueidisReplica is rueidis with client-side caching as a replica: DoCache
// GET, and a SET of the JSON to Redis, whose tracking invalidates every
// client's cached copy (the writer's too).
type rueidisReplica struct{ client rueidis.Client }

func (r rueidisReplica) get(ctx context.Context, k string) (*User, error) {
	u, _, err := rueidisGet(ctx, r.client, k)
	return u, err
}

func (r rueidisReplica) set(ctx context.Context, k string, u *User) error {
	return r.client.Do(ctx, r.client.B().Set().Key(k).Value(rueidis.BinaryString(encodeJSON(u))).Ex(ttl).Build()).Error()
}

// goRedisCSCReplica is go-redis's client-side cache as a replica: a GET
// served by the cache and decoded, and a SET of the JSON to Redis.
type goRedisCSCReplica struct{ rdb *redis.Client }

func (r goRedisCSCReplica) get(ctx context.Context, k string) (*User, error) {
	data, err := r.rdb.Get(ctx, k).Bytes()
	if err != nil {
		return nil, err
	}
	return decodeJSON(data)
}

func (r goRedisCSCReplica) set(ctx context.Context, k string, u *User) error {
	return r.rdb.Set(ctx, k, encodeJSON(u), ttl).Err()
}
