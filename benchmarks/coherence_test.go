package benchmarks

// Coherence across replicas (issue 16, item 1): how many loads a cold key
// costs when every replica reads it at once (BenchmarkStampede), how long a
// write on one replica takes to reach the others' local copies
// (BenchmarkPropagation), and how that and its CPU cost grow with the number
// of replicas (BenchmarkScaling). Every replica is its own client in this
// process, over one real Redis; Strata's replicas gossip over loopback.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"runtime"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/go-redis/cache/v9"
	"github.com/maypok86/otter/v2"
	"github.com/redis/go-redis/v9"
	"github.com/redis/rueidis"
	"github.com/strata-cache/strata/cluster"
	"github.com/strata-cache/strata/internal/redistest"
	"github.com/strata-cache/strata/l2"
	"github.com/strata-cache/strata/tiered"
)

const (
	// cohReplicas is the replica count of the stampede and propagation
	// benchmarks: the README's guarantee 3 is stated for three.
	cohReplicas = 3
	// cohCallers is the number of goroutines per replica that read the cold
	// key at once in BenchmarkStampede.
	cohCallers = 300
	// cohLoadTime is the loader's simulated database query.
	cohLoadTime = 5 * time.Millisecond
	// cohMinRounds is the least number of rounds of a propagation or scaling
	// run, whatever b.N: -benchtime 1x (CI) still yields a percentile, and
	// finishes in well under a second. With 50 samples p99 is the largest;
	// for a real p99 run with -benchtime 200x or more (or the default 1 s).
	cohMinRounds = 50
	// cohNeverRounds is the number of rounds run for a contender that never
	// propagates (go-redis/cache): each round waits cohNeverDeadline, so a
	// few show it without costing b.N of them.
	cohNeverRounds = 3
	// cohNeverDeadline is how long a round of such a contender polls.
	cohNeverDeadline = 50 * time.Millisecond
	// cohDeadline bounds a round of a contender that propagates: missing it
	// fails the benchmark, as a broken setup or a lost invalidation.
	cohDeadline = 5 * time.Second
	// cohReadyTimeout bounds the wait for replicas to join and their
	// channels to vouch (30 memberlist nodes converge in about a second).
	cohReadyTimeout = 30 * time.Second
	// cohRate is BenchmarkScaling's invalidation rate, per second.
	cohRate = 200
	// cohPrimeBatch is how many keys BenchmarkScaling loads into every
	// replica's L1 at a time, outside the measured CPU.
	cohPrimeBatch = 256
	// cohKey is the key the propagation benchmarks write.
	cohKey = "user:propagation"
)

// cohQuiet discards the clients' logs (the gossip-only run's refused pub/sub
// reconnects would otherwise fill the output).
var cohQuiet = slog.New(slog.DiscardHandler)

// BenchmarkStampede reads one cold key from 300 goroutines on each of 3
// replicas (each its own client, one Redis), all released together, with a
// loader that counts its calls and takes 5 ms; every b.N iteration uses a
// fresh key and checks that every caller got the loaded value. It reports
// loads/key: Strata's singleflight plus Redis lease should give 1, per-process
// singleflight (go-redis/cache's Once, otter's Get with a loader) 3, plain
// cache-aside (rueidis client-side caching, go-redis) up to 900.
func BenchmarkStampede(b *testing.B) {
	contenders := []struct {
		name string
		new  func(b *testing.B, addr string) cohGet
	}{
		{"strata", cohStrataGet},
		{"go-redis-cache", cohGoRedisCacheGet},
		{"rueidis-csc", cohRueidisGet},
		{"go-redis", cohGoRedisGet},
		{"otter", cohOtterGet},
	}
	for _, c := range contenders {
		b.Run(c.name, func(b *testing.B) {
			srv := redistest.Start(b)
			replicas := make([]cohGet, cohReplicas)
			for i := range replicas {
				replicas[i] = c.new(b, srv.Addr())
			}
			cohRunStampede(b, replicas)
		})
	}
}

// cohLoader is the application's load of a key from its database.
type cohLoader = func(ctx context.Context, key string) (*User, error)

// cohGet is one replica of a stampede contender: a read of key that calls
// load on a miss, the way an application would use that library.
type cohGet func(ctx context.Context, key string, load cohLoader) (*User, error)

// cohRunStampede runs one stampede per b.N iteration and reports loads/key.
func cohRunStampede(b *testing.B, replicas []cohGet) {
	ctx := context.Background()
	var loads atomic.Int64
	keys := 0
	for b.Loop() {
		i := keys
		keys++
		load := func(ctx context.Context, _ string) (*User, error) {
			loads.Add(1)
			query := time.NewTimer(cohLoadTime) // the simulated query, not synchronisation
			defer query.Stop()
			select {
			case <-query.C:
				return newUser(i), nil
			case <-ctx.Done():
				return nil, ctx.Err()
			}
		}
		if err := cohStampede(ctx, replicas, "stampede:"+strconv.Itoa(i), newUser(i), load); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(loads.Load())/float64(keys), "loads/key")
}

// cohStampede starts cohCallers goroutines per replica, releases them at once
// on key and returns an error if any did not get want.
func cohStampede(ctx context.Context, replicas []cohGet, key string, want *User, load cohLoader) error {
	start := make(chan struct{})
	var ready, done sync.WaitGroup
	errs := make(chan error, len(replicas)*cohCallers)
	for _, get := range replicas {
		for range cohCallers {
			ready.Add(1)
			done.Go(func() {
				ready.Done()
				<-start
				u, err := get(ctx, key, load)
				if err == nil && (u == nil || *u != *want) {
					err = fmt.Errorf("got %+v, want %+v", u, want)
				}
				if err != nil {
					errs <- err
				}
			})
		}
	}
	ready.Wait()
	close(start)
	done.Wait()
	close(errs)
	if n := len(errs); n > 0 {
		return fmt.Errorf("%d of %d callers failed, first: %w", n, len(replicas)*cohCallers, <-errs)
	}
	return nil
}

// cohStrataGet is a Strata replica: its own client over Redis, without gossip
// (the load lease is in Redis).
func cohStrataGet(b *testing.B, addr string) cohGet {
	c := cohStrataClient(b, tiered.Config{Redis: l2.Config{Addrs: []string{addr}}})
	users, err := tiered.NewCache(c, "users", tiered.Options[*User]{TTL: ttl, L1: tiered.L1Options{MaxCost: capacityBytes}})
	if err != nil {
		b.Fatal(err)
	}
	return func(ctx context.Context, key string, load cohLoader) (*User, error) {
		return users.Get(ctx, key, load)
	}
}

// cohGoRedisCacheGet is a go-redis/cache replica with a TinyLFU local cache,
// read through Once: its singleflight group is per process.
func cohGoRedisCacheGet(b *testing.B, addr string) cohGet {
	cd, _ := cohGoRedisCache(b, addr)
	return func(ctx context.Context, key string, load cohLoader) (*User, error) {
		u := new(User)
		err := cd.Once(&cache.Item{Ctx: ctx, Key: key, Value: u, TTL: ttl,
			Do: func(it *cache.Item) (any, error) { return load(it.Context(), it.Key) }})
		return u, err
	}
}

// cohRueidisGet is a rueidis replica with client-side caching, which has no
// loader API: cache-aside, DoCache GET, and on a miss load and SET.
func cohRueidisGet(b *testing.B, addr string) cohGet {
	c := cohRueidis(b, addr, nil)
	get := func(ctx context.Context, key string) ([]byte, bool, error) {
		data, err := c.DoCache(ctx, c.B().Get().Key(key).Cache(), ttl).AsBytes()
		if rueidis.IsRedisNil(err) {
			return nil, false, nil
		}
		return data, err == nil, err
	}
	set := func(ctx context.Context, key string, data []byte) error {
		return c.Do(ctx, c.B().Set().Key(key).Value(rueidis.BinaryString(data)).Px(ttl).Build()).Error()
	}
	return cohCacheAside(get, set)
}

// cohGoRedisGet is plain cache-aside over go-redis: GET, and on a miss load
// and SET.
func cohGoRedisGet(b *testing.B, addr string) cohGet {
	rdb := cohGoRedis(b, addr)
	get := func(ctx context.Context, key string) ([]byte, bool, error) {
		data, err := rdb.Get(ctx, key).Bytes()
		if errors.Is(err, redis.Nil) {
			return nil, false, nil
		}
		return data, err == nil, err
	}
	set := func(ctx context.Context, key string, data []byte) error {
		return rdb.Set(ctx, key, data, ttl).Err()
	}
	return cohCacheAside(get, set)
}

// cohCacheAside is cache-aside through get, which reports a miss as not
// found, and set: a hit is decoded; on a miss the value is loaded and its
// JSON set.
func cohCacheAside(get func(ctx context.Context, key string) ([]byte, bool, error),
	set func(ctx context.Context, key string, data []byte) error) cohGet {
	return func(ctx context.Context, key string, load cohLoader) (*User, error) {
		data, found, err := get(ctx, key)
		if err != nil {
			return nil, err
		}
		if found {
			return cohDecode(data)
		}
		u, err := load(ctx, key)
		if err != nil {
			return nil, err
		}
		data, err = json.Marshal(u)
		if err != nil {
			return nil, err
		}
		return u, set(ctx, key, data)
	}
}

// cohOtterGet is an otter cache per replica, read with Get and a loader
// (per-process singleflight); it has no shared tier.
func cohOtterGet(b *testing.B, _ string) cohGet {
	c := otter.Must(&otter.Options[string, *User]{MaximumSize: numKeys})
	return func(ctx context.Context, key string, load cohLoader) (*User, error) {
		return c.Get(ctx, key, otter.LoaderFunc[string, *User](load))
	}
}

// cohDecode decodes a User stored as JSON by the cache-aside contenders.
func cohDecode(data []byte) (*User, error) {
	u := new(User)
	return u, json.Unmarshal(data, u)
}

// BenchmarkPropagation measures how long a write on one replica takes to
// reach the local copies of the two others (3 replicas, each its own client,
// one Redis): each round, the other replicas hold the key in their local
// cache, replica A writes a new version, and the time runs from the write
// returning on A until both others have it (a write applied on both before
// it returned counts as 0). Two figures, from rounds of their own so that
// one does not disturb the other:
//
//   - p50-us, p99-us, max-us: until each other replica applied the
//     invalidation, as the library itself reports it (Strata's Observer,
//     rueidis's OnInvalidations), nobody polling: the precise figure.
//   - user-p50-us, user-p99-us, user-max-us: until a read on each other
//     replica returns the new version, one goroutine polling both in a
//     tight loop (runtime.Gosched between passes): what a user sees,
//     including the read of the new value from Redis. It does not sleep
//     between polls: on Linux a time.Sleep of 20 or 200 µs lasts about
//     1 ms, so a poll "every 200 µs" with sleeps measures its own interval.
//
// Strata also reports msg-p50-us, msg-p99-us and msg-max-us: from just
// before the invalidation was sent (its SentAt, inside Set) until applied,
// the slower of the two replicas, as its Observer measures it.
//
// Contenders: strata-both (pub/sub and gossip), strata-pubsub (no gossip),
// strata-gossip (pub/sub denied by an ACL), rueidis-tracking (RESP3
// client-side caching: Redis pushes the invalidation), and go-redis-cache
// (TinyLFU local caches: a write never reaches another replica's local copy
// before its TTL; it runs cohNeverRounds polled rounds of 50 ms and reports
// never, the share of rounds in which the readers did not all see the write
// (1), and percentiles only of rounds in which they did, if any).
//
// Each run has max(b.N, cohMinRounds) rounds of each kind.
func BenchmarkPropagation(b *testing.B) {
	contenders := []struct {
		name string
		new  func(b *testing.B) *cohTarget
	}{
		{"strata-both", func(b *testing.B) *cohTarget { return cohStrataTarget(b, true, true) }},
		{"strata-pubsub", func(b *testing.B) *cohTarget { return cohStrataTarget(b, true, false) }},
		{"strata-gossip", func(b *testing.B) *cohTarget { return cohStrataTarget(b, false, true) }},
		{"rueidis-tracking", cohRueidisTarget},
		{"go-redis-cache", cohGoRedisCacheTarget},
	}
	for _, c := range contenders {
		b.Run(c.name, func(b *testing.B) { cohRunPropagation(b, c.new(b)) })
	}
}

// cohTarget is a propagation contender's replicas: the first writes, the
// others read.
type cohTarget struct {
	// write stores version under cohKey through replica A.
	write func(ctx context.Context, version int) error
	// readers are the other replicas.
	readers []cohReader
	// applied, if not nil, is told when each reader applied an invalidation.
	applied *cohStamps
	// never marks a contender whose readers are not expected to see a
	// write: its rounds are few, short, and may end unseen.
	never bool
}

// cohReader is a replica that holds cohKey locally.
type cohReader struct {
	// read reads cohKey the way an application does (locally if held) and
	// returns its version.
	read func(ctx context.Context) (int, error)
	// prime reads cohKey until the replica holds it in its local cache.
	prime func(ctx context.Context) error
}

// cohStamps records, per reader, when it applied the invalidation of the
// write being measured (the "armed" one).
type cohStamps struct {
	at   []atomic.Int64 // Unix ns of the apply; 0 until then
	lag  []atomic.Int64 // the library's own send→apply lag, ns (Strata)
	left atomic.Int64   // readers yet to apply
	done chan struct{}  // receives once left reaches 0
}

// newCohStamps returns the stamps of readers replicas.
func newCohStamps(readers int) *cohStamps {
	return &cohStamps{at: make([]atomic.Int64, readers), lag: make([]atomic.Int64, readers), done: make(chan struct{}, 1)}
}

// arm clears the stamps for the next write.
func (s *cohStamps) arm() {
	for i := range s.at {
		s.at[i].Store(0)
	}
	select {
	case <-s.done:
	default:
	}
	s.left.Store(int64(len(s.at)))
}

// mark records that reader i applied the armed write now, lag after it was
// sent. It is called on the library's receiving goroutine: it must be fast.
func (s *cohStamps) mark(i int, lag time.Duration) {
	if !s.at[i].CompareAndSwap(0, time.Now().UnixNano()) {
		return
	}
	s.lag[i].Store(int64(lag))
	if s.left.Add(-1) == 0 {
		select {
		case s.done <- struct{}{}:
		default:
		}
	}
}

// wait waits until every reader applied the armed write and returns the
// latest apply time and the largest send→apply lag.
func (s *cohStamps) wait(timeout time.Duration) (time.Time, time.Duration, error) {
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	select {
	case <-s.done:
	case <-deadline.C:
		return time.Time{}, 0, fmt.Errorf("%d of %d replicas did not apply the invalidation within %v", s.left.Load(), len(s.at), timeout)
	}
	var last, lag int64
	for i := range s.at {
		last, lag = max(last, s.at[i].Load()), max(lag, s.lag[i].Load())
	}
	return time.Unix(0, last), time.Duration(lag), nil
}

// cohRunPropagation runs the rounds and reports their percentiles.
func cohRunPropagation(b *testing.B, t *cohTarget) {
	ctx := context.Background()
	if err := t.write(ctx, 0); err != nil {
		b.Fatal(err)
	}
	maxRounds, deadline := math.MaxInt, cohDeadline
	if t.never {
		maxRounds, deadline = cohNeverRounds, cohNeverDeadline
	}
	var applied, sent, user []time.Duration
	rounds, unseen, version := 0, 0, 0
	round := func() {
		rounds++
		if t.applied != nil {
			version++
			lag, msg, err := cohQuietRound(ctx, t, version)
			if err != nil {
				b.Fatalf("round %d: %v", rounds, err)
			}
			applied, sent = append(applied, lag), append(sent, msg)
		}
		version++
		lag, seen, err := cohPolledRound(ctx, t, version, deadline)
		switch {
		case err != nil:
			b.Fatalf("round %d: %v", rounds, err)
		case seen:
			user = append(user, lag)
		case t.never:
			unseen++
		default:
			b.Fatalf("round %d: a replica did not read the new version within %v", rounds, deadline)
		}
	}
	for b.Loop() {
		if rounds < maxRounds {
			round()
		}
	}
	for rounds < min(cohMinRounds, maxRounds) {
		round()
	}
	if t.never {
		b.ReportMetric(float64(unseen)/float64(rounds), "never")
	}
	cohReport(b, "", applied)
	cohReport(b, "user-", user)
	if len(sent) > 0 && slices.Max(sent) > 0 { // the library measured its own lag (Strata)
		cohReport(b, "msg-", sent)
	}
}

// cohQuietRound has every reader hold the key, writes version and waits,
// without polling, until every reader applied the invalidation. It returns
// the time from the write returning until the last apply, and the largest
// send→apply lag the library measured.
func cohQuietRound(ctx context.Context, t *cohTarget, version int) (time.Duration, time.Duration, error) {
	if err := cohPrime(ctx, t); err != nil {
		return 0, 0, err
	}
	t.applied.arm()
	if err := t.write(ctx, version); err != nil {
		return 0, 0, err
	}
	returned := time.Now()
	last, lag, err := t.applied.wait(cohDeadline)
	return max(0, last.Sub(returned)), lag, err
}

// cohPolledRound has every reader hold the key, writes version and polls the
// readers until each returns it, or deadline passes (seen is false). It
// returns the time from the write returning until the last reader read it.
func cohPolledRound(ctx context.Context, t *cohTarget, version int, deadline time.Duration) (lag time.Duration, seen bool, err error) {
	if err := cohPrime(ctx, t); err != nil {
		return 0, false, err
	}
	if t.applied != nil {
		t.applied.arm()
	}
	if err := t.write(ctx, version); err != nil {
		return 0, false, err
	}
	returned := time.Now()
	pending := slices.Clone(t.readers)
	var last time.Time
	for len(pending) > 0 {
		now := time.Now()
		if now.Sub(returned) > deadline {
			return 0, false, nil
		}
		for i := 0; i < len(pending); {
			v, err := pending[i].read(ctx)
			switch {
			case err != nil:
				return 0, false, err
			case v == version:
				last = time.Now()
				pending = slices.Delete(pending, i, i+1)
			default:
				i++
			}
		}
		runtime.Gosched()
	}
	if t.applied != nil {
		// A reader may return the new value just before its library
		// reports the apply: wait, so the report does not count for the
		// next round.
		if _, _, err := t.applied.wait(cohDeadline); err != nil {
			return 0, false, err
		}
	}
	return last.Sub(returned), true, nil
}

// cohPrime has every reader hold the key locally.
func cohPrime(ctx context.Context, t *cohTarget) error {
	for _, r := range t.readers {
		if err := r.prime(ctx); err != nil {
			return err
		}
	}
	return nil
}

// cohUntil calls cond until it reports true, fails, or timeout passes. Each
// call is a read of the cache under test, so it does not sleep.
func cohUntil(timeout time.Duration, what string, cond func() (bool, error)) error {
	start := time.Now()
	for time.Since(start) < timeout {
		ok, err := cond()
		if err != nil || ok {
			return err
		}
		runtime.Gosched()
	}
	return fmt.Errorf("not %s within %v", what, timeout)
}

// cohReport reports p50, p99 (nearest rank: with fewer than 100 samples,
// the largest) and the largest of lat in microseconds, the names prefixed.
func cohReport(b *testing.B, prefix string, lat []time.Duration) {
	if len(lat) == 0 {
		return
	}
	slices.Sort(lat)
	rank := func(q float64) time.Duration { return lat[int(math.Ceil(q*float64(len(lat))))-1] }
	us := func(d time.Duration) float64 { return float64(d) / float64(time.Microsecond) }
	b.ReportMetric(us(rank(0.50)), prefix+"p50-us")
	b.ReportMetric(us(rank(0.99)), prefix+"p99-us")
	b.ReportMetric(us(lat[len(lat)-1]), prefix+"max-us")
}

// cohStrataTarget is 3 Strata replicas over one Redis with the channels
// asked for; without pub/sub, an ACL denies the replicas PUBLISH and
// SUBSCRIBE and their subscriptions are killed, as a cut would.
func cohStrataTarget(b *testing.B, pubsub, gossip bool) *cohTarget {
	srv := redistest.Start(b)
	applied := newCohStamps(cohReplicas - 1)
	clients := cohStrataReplicas(b, srv.Addr(), cohReplicas, gossip, func(i int) tiered.Observer {
		if i == 0 {
			return nil
		}
		return cohApplyObserver{stamps: applied, reader: i - 1}
	})
	if !pubsub {
		srv.Do(b, "ACL", "SETUSER", "default", "-publish", "-subscribe", "-psubscribe", "-ssubscribe")
		srv.Do(b, "CLIENT", "KILL", "TYPE", "pubsub")
	}
	cohWaitReady(b, clients, pubsub, gossip)
	caches := make([]*tiered.Cache[string], len(clients))
	for i, c := range clients {
		var err error
		if caches[i], err = tiered.NewCache(c, "users", tiered.Options[string]{TTL: ttl, L1: tiered.L1Options{MaxCost: 1 << 20}}); err != nil {
			b.Fatal(err)
		}
	}
	t := &cohTarget{applied: applied, write: func(ctx context.Context, version int) error {
		return caches[0].Set(ctx, cohKey, strconv.Itoa(version))
	}}
	for _, c := range caches[1:] {
		t.readers = append(t.readers, cohReader{
			read: func(ctx context.Context) (int, error) {
				v, err := c.Get(ctx, cohKey, nil)
				if err != nil {
					return 0, err
				}
				return strconv.Atoi(v)
			},
			prime: func(ctx context.Context) error { return cohPrimeStrata(ctx, c, cohKey) },
		})
	}
	return t
}

// cohPrimeStrata reads key on c until c answers it from L1.
func cohPrimeStrata(ctx context.Context, c *tiered.Cache[string], key string) error {
	return cohUntil(cohDeadline, "in L1", func() (bool, error) {
		_, info, err := c.GetWithInfo(ctx, key, nil)
		return info.Tier == tiered.TierL1, err
	})
}

// cohApplyObserver stamps each invalidation its replica applies.
type cohApplyObserver struct {
	stamps *cohStamps
	reader int
}

// Observe implements tiered.Observer.
func (o cohApplyObserver) Observe(_ context.Context, e tiered.Event) {
	if e.Kind == tiered.EventInvalidation {
		o.stamps.mark(o.reader, e.Duration)
	}
}

// Wants implements tiered.EventFilter: the L1 hits of the polling reads
// are not reported to it.
func (cohApplyObserver) Wants(k tiered.EventKind) bool { return k == tiered.EventInvalidation }

// cohStrataClient is a Strata client with cfg, quiet, closed when b ends.
func cohStrataClient(b *testing.B, cfg tiered.Config) *tiered.Client {
	cfg.Logger = cohQuiet
	c, err := tiered.NewClient(context.Background(), cfg)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = c.Close() })
	return c
}

// cohStrataReplicas starts n Strata clients over the Redis at addr, named
// r0…, with the Observer observer(i) (nil for none) and, with gossip, each
// joining all those before it on loopback: every member then learns of every
// other from the joins themselves, where gossip alone leaves a few of 30
// without some members until memberlist's push-pull (15 s or more). They
// are closed together when b ends.
func cohStrataReplicas(b *testing.B, addr string, n int, gossip bool, observer func(i int) tiered.Observer) []*tiered.Client {
	clients := make([]*tiered.Client, 0, n)
	b.Cleanup(func() {
		var closing sync.WaitGroup
		for _, c := range clients {
			closing.Go(func() { _ = c.Close() })
		}
		closing.Wait()
	})
	var seeds []string
	for i := range n {
		cfg := tiered.Config{NodeID: "r" + strconv.Itoa(i), Redis: l2.Config{Addrs: []string{addr}}, Observer: observer(i), Logger: cohQuiet}
		if gossip {
			cfg.Gossip = &cluster.Config{BindAddr: "127.0.0.1:0", Profile: cluster.ProfileLocal, Join: slices.Clone(seeds)}
			cfg.RequireGossip = true
		}
		c, err := tiered.NewClient(context.Background(), cfg)
		if err != nil {
			b.Fatal(err)
		}
		clients = append(clients, c)
		seeds = append(seeds, c.GossipAddr())
	}
	return clients
}

// cohWaitReady waits until every client trusts its L1, sees every other as
// an alive gossip member (with gossip), and each channel asked for vouches.
func cohWaitReady(b *testing.B, clients []*tiered.Client, pubsub, gossip bool) {
	want := map[string]bool{"pubsub": pubsub, "gossip": gossip}
	redistest.WaitFor(b, cohReadyTimeout, func() bool {
		for _, c := range clients {
			h := c.Health()
			if !h.Trusted {
				return false
			}
			alive := 0
			for _, m := range h.Members {
				if m.State == cluster.MemberAlive {
					alive++
				}
			}
			if gossip && alive != len(clients) {
				return false
			}
			for _, ch := range h.Channels {
				if want[ch.Name] && !ch.Vouches {
					return false
				}
			}
		}
		return true
	}, "replicas joined and their channels vouching")
}

// cohRueidisTarget is 3 rueidis clients with client-side caching: A SETs,
// the others read with DoCache, and Redis pushes them the invalidation
// (RESP3 tracking), which OnInvalidations reports.
func cohRueidisTarget(b *testing.B) *cohTarget {
	srv := redistest.Start(b)
	applied := newCohStamps(cohReplicas - 1)
	a := cohRueidis(b, srv.Addr(), nil)
	t := &cohTarget{applied: applied, write: func(ctx context.Context, version int) error {
		return a.Do(ctx, a.B().Set().Key(cohKey).Value(strconv.Itoa(version)).Build()).Error()
	}}
	for i := range cohReplicas - 1 {
		c := cohRueidis(b, srv.Addr(), func(keys []rueidis.RedisMessage) {
			for _, k := range keys {
				if s, _ := k.ToString(); s == cohKey {
					applied.mark(i, 0)
				}
			}
		})
		get := func(ctx context.Context) rueidis.RedisResult {
			return c.DoCache(ctx, c.B().Get().Key(cohKey).Cache(), ttl)
		}
		t.readers = append(t.readers, cohReader{
			read: func(ctx context.Context) (int, error) {
				s, err := get(ctx).ToString()
				if err != nil {
					return 0, err
				}
				return strconv.Atoi(s)
			},
			prime: func(ctx context.Context) error {
				return cohUntil(cohDeadline, "cached", func() (bool, error) {
					r := get(ctx)
					return r.IsCacheHit(), r.Error()
				})
			},
		})
	}
	return t
}

// cohGoRedisCacheTarget is 3 go-redis/cache replicas with TinyLFU local
// caches: A Sets, the others Get; nothing tells them of the write.
func cohGoRedisCacheTarget(b *testing.B) *cohTarget {
	srv := redistest.Start(b)
	a, _ := cohGoRedisCache(b, srv.Addr())
	t := &cohTarget{never: true, write: func(ctx context.Context, version int) error {
		return a.Set(&cache.Item{Ctx: ctx, Key: cohKey, Value: strconv.Itoa(version), TTL: ttl})
	}}
	for range cohReplicas - 1 {
		cd, local := cohGoRedisCache(b, srv.Addr())
		read := func(ctx context.Context) (int, error) {
			var s string
			if err := cd.Get(ctx, cohKey, &s); err != nil {
				return 0, err
			}
			return strconv.Atoi(s)
		}
		t.readers = append(t.readers, cohReader{read: read, prime: func(ctx context.Context) error {
			if _, held := local.Get(cohKey); held {
				return nil
			}
			_, err := read(ctx) // fills the local cache
			return err
		}})
	}
	return t
}

// cohGoRedisCache is a go-redis/cache over its own go-redis client, with a
// TinyLFU local cache of numKeys entries for ttl, which it also returns.
func cohGoRedisCache(b *testing.B, addr string) (*cache.Cache, *cache.TinyLFU) {
	local := cache.NewTinyLFU(numKeys, ttl)
	return cache.New(&cache.Options{Redis: cohGoRedis(b, addr), LocalCache: local}), local
}

// cohGoRedis is a go-redis client, closed when b ends.
func cohGoRedis(b *testing.B, addr string) *redis.Client {
	rdb := redis.NewClient(&redis.Options{Addr: addr})
	b.Cleanup(func() { _ = rdb.Close() })
	return rdb
}

// cohRueidis is a rueidis client with client-side caching (the default),
// closed when b ends; onInvalidations, if not nil, hears Redis's pushes.
func cohRueidis(b *testing.B, addr string, onInvalidations func([]rueidis.RedisMessage)) rueidis.Client {
	c, err := rueidis.NewClient(rueidis.ClientOption{InitAddress: []string{addr}, OnInvalidations: onInvalidations})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(c.Close)
	return c
}

// BenchmarkScaling measures Strata's propagation and its CPU cost with 3, 10
// and 30 replicas in one process (each its own client with its own
// memberlist node on loopback, all joined, one Redis with pub/sub): every
// replica holds the key in L1, and replica r0 Sets one key per round at
// cohRate (200) rounds a second, paced by a ticker. Per round it measures,
// with the Observer, the time from Set returning until every other replica
// applied the invalidation, and reports p50-us, p99-us and max-us (each-*:
// of every reader's own lag; call-*: from calling Set, its own time
// included); and cpu-us/inval, this process's CPU time (user and system,
// all replicas, the background of memberlist and heartbeats included, the
// keys' loading into L1 left out; the Redis server's not included) over
// the rounds divided by their number, and idle-cpu-us/inval, the part of it the replicas spend
// anyway (their CPU rate over 250 ms without invalidations, after the
// rounds, times the rounds' duration, over their number): the cost of the
// invalidations themselves is the difference. Each run has
// max(b.N, cohMinRounds) rounds.
func BenchmarkScaling(b *testing.B) {
	for _, n := range []int{3, 10, 30} {
		b.Run("replicas="+strconv.Itoa(n), func(b *testing.B) { cohRunScaling(b, n) })
	}
}

// cohRunScaling runs BenchmarkScaling with n replicas.
func cohRunScaling(b *testing.B, n int) {
	ctx := context.Background()
	caches, applied := cohScalingReplicas(b, n)
	if err := cohPrimeScaling(ctx, caches[1:], 0); err != nil {
		b.Fatal(err)
	}
	cohRunPaced(b, applied, func(i int) {
		if err := cohPrimeScaling(ctx, caches[1:], i); err != nil {
			b.Fatal(err)
		}
	}, func(i int) error {
		return caches[0].Set(ctx, cohScalingKey(i), "new")
	})
}

// cohRunPaced runs the rounds of a scaling benchmark: before every
// cohPrimeBatch-th (the first excepted), prime, if not nil, prepares the
// next batch, its CPU and wall time left out of the measure; then, paced
// at cohRate, send makes the i-th invalidation, and the round waits until
// every reader applied it. It reports the percentiles of the last reader's
// delay after send returned (p50-us, p99-us, max-us), of every reader's
// (each-*) and of the last reader's after send was called (call-*),
// cpu-us/inval and idle-cpu-us/inval (see BenchmarkScaling). It
// runs max(b.N, cohMinRounds) rounds.
func cohRunPaced(b *testing.B, applied *cohStamps, prime func(i int), send func(i int) error) {
	var lat, each, call []time.Duration
	var primingCPU, primingWall time.Duration
	pace := time.NewTicker(time.Second / cohRate)
	defer pace.Stop()
	start, began := cohCPUTime(), time.Now()
	round := func() {
		i := len(lat)
		if prime != nil && i > 0 && i%cohPrimeBatch == 0 {
			cpu, wall := cohCPUTime(), time.Now()
			prime(i)
			primingCPU, primingWall = primingCPU+cohCPUTime()-cpu, primingWall+time.Since(wall)
		}
		<-pace.C // pacing, not synchronisation
		applied.arm()
		called := time.Now()
		if err := send(i); err != nil {
			b.Fatal(err)
		}
		returned := time.Now()
		last, _, err := applied.wait(cohDeadline)
		if err != nil {
			b.Fatalf("round %d: %v", i, err)
		}
		lat, call = append(lat, max(0, last.Sub(returned))), append(call, last.Sub(called))
		for j := range applied.at {
			each = append(each, max(0, time.Duration(applied.at[j].Load()-returned.UnixNano())))
		}
	}
	for b.Loop() {
		round()
	}
	for len(lat) < cohMinRounds {
		round()
	}
	cpu, window := cohCPUTime()-start-primingCPU, time.Since(began)-primingWall
	idle := cohIdleCPU() // after the rounds: the joins' gossip has long died down
	cohReport(b, "", lat)
	// each-*: every reader's own lag, not the last of them: what one
	// replica of a real deployment (a machine of its own) sees, where the
	// last-of-all figure also counts n-1 receivers queuing for 2 cores.
	cohReport(b, "each-", each)
	// call-*: from calling send, its own time included (a Strata Set's
	// round trips and its gossip datagrams, one per member; PUBLISH's
	// round trip).
	cohReport(b, "call-", call)
	perInval := func(d float64) float64 { return d / float64(time.Microsecond) / float64(len(lat)) }
	b.ReportMetric(perInval(float64(cpu)), "cpu-us/inval")
	b.ReportMetric(perInval(idle*float64(window)), "idle-cpu-us/inval")
}

// BenchmarkScalingFloor is BenchmarkScaling's floor: the same rounds, at
// the same rate, through raw go-redis pub/sub alone, with no cache and no
// second channel. One client PUBLISHes the round's number; n-1 others,
// each its own go-redis client subscribed on its own connection and
// receiving on one goroutine (as Strata's bus does), mark it when it
// arrives. It is a floor in latency, for go-redis: the p99 of 29 go-redis
// receivers queuing for the cores of one process, which an invalidation
// through Strata's pub/sub link, one go-redis subscription per replica,
// cannot beat (its gossip link, whose datagrams leave before PUBLISH, can
// apply before Set returns: compare call-*).
func BenchmarkScalingFloor(b *testing.B) {
	for _, n := range []int{3, 10, 30} {
		b.Run("go-redis-pubsub/replicas="+strconv.Itoa(n), func(b *testing.B) { cohRunPubSubFloor(b, n) })
	}
}

// cohRunPubSubFloor runs BenchmarkScalingFloor with n replicas.
func cohRunPubSubFloor(b *testing.B, n int) {
	const channel = "strata-floor"
	ctx, cancel := context.WithCancel(context.Background())
	srv := redistest.Start(b)
	applied := newCohStamps(n - 1)
	var armed atomic.Int64 // the round being measured
	armed.Store(-1)
	var receivers sync.WaitGroup
	b.Cleanup(func() {
		cancel()
		receivers.Wait()
	})
	for r := range n - 1 {
		ps := cohGoRedis(b, srv.Addr()).Subscribe(ctx, channel)
		if _, err := ps.Receive(ctx); err != nil { // the subscription's confirmation
			b.Fatal(err)
		}
		b.Cleanup(func() { _ = ps.Close() })
		receivers.Go(func() {
			for {
				msg, err := ps.Receive(ctx)
				if err != nil {
					return // closed
				}
				if m, ok := msg.(*redis.Message); ok {
					if i, err := strconv.ParseInt(m.Payload, 10, 64); err == nil && i == armed.Load() {
						applied.mark(r, 0)
					}
				}
			}
		})
	}
	pub := cohGoRedis(b, srv.Addr())
	cohRunPaced(b, applied, nil, func(i int) error {
		armed.Store(int64(i))
		got, err := pub.Publish(ctx, channel, strconv.Itoa(i)).Result()
		if err == nil && got != int64(n-1) {
			err = fmt.Errorf("PUBLISH reached %d subscribers, want %d", got, n-1)
		}
		return err
	})
}

// cohScalingReplicas starts n Strata replicas with both channels, all
// joined and vouching, and returns a cache of each and the stamps their
// Observers (all but r0's) mark.
func cohScalingReplicas(b *testing.B, n int) ([]*tiered.Cache[string], *cohStamps) {
	srv := redistest.Start(b)
	applied := newCohStamps(n - 1)
	clients := cohStrataReplicas(b, srv.Addr(), n, true, func(i int) tiered.Observer {
		if i == 0 {
			return nil
		}
		return cohApplyObserver{stamps: applied, reader: i - 1}
	})
	cohWaitReady(b, clients, true, true)
	caches := make([]*tiered.Cache[string], n)
	for i, c := range clients {
		var err error
		if caches[i], err = tiered.NewCache(c, "scaling", tiered.Options[string]{TTL: ttl, L1: tiered.L1Options{MaxCost: 4 << 20}}); err != nil {
			b.Fatal(err)
		}
	}
	return caches, applied
}

// cohScalingKey is BenchmarkScaling's i-th key.
func cohScalingKey(i int) string { return "user:scaling:" + strconv.Itoa(i) }

// cohIdleWindow is how long cohIdleCPU measures.
const cohIdleWindow = 250 * time.Millisecond

// cohIdleCPU returns this process's CPU time per unit of wall time over
// cohIdleWindow, with nothing asked of it: the replicas' background
// (heartbeats, memberlist probes and gossip, timers).
func cohIdleCPU() float64 {
	cpu, began := cohCPUTime(), time.Now()
	window := time.NewTimer(cohIdleWindow) // the measurement window, not synchronisation
	<-window.C
	return float64(cohCPUTime()-cpu) / float64(time.Since(began))
}

// cohPrimeScaling loads the cohPrimeBatch keys from the from-th into every
// cache's L1 (the first load fills L2; no invalidation is sent).
func cohPrimeScaling(ctx context.Context, caches []*tiered.Cache[string], from int) error {
	keys := make([]string, cohPrimeBatch)
	for j := range keys {
		keys[j] = cohScalingKey(from + j)
	}
	load := func(_ context.Context, keys []string) (map[string]string, error) {
		m := make(map[string]string, len(keys))
		for _, k := range keys {
			m[k] = "old"
		}
		return m, nil
	}
	for _, c := range caches {
		if _, err := c.GetMany(ctx, keys, load); err != nil {
			return err
		}
		for _, k := range keys {
			if err := cohPrimeStrata(ctx, c, k); err != nil {
				return err
			}
		}
	}
	return nil
}

// cohCPUTime is this process's CPU time so far, user and system.
func cohCPUTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
