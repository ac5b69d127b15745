// Command cluster shows what Strata does across replicas: three replicas in
// one process (each its own Client, its own L1 and memberlist gossip on
// loopback) over one Redis, in front of a slow simulated database that
// counts its queries. It plays a scripted scenario, prints a line per step
// and a report, and exits non-zero if a claim it prints does not hold:
//
//  1. 300 concurrent Gets of a cold key across the replicas: one query;
//  2. an update on replica a: b and c read it, the lag measured;
//  3. pub/sub cut on every replica: gossip alone delivers the next update;
//  4. both channels to b cut for 400 ms while a updates: b finds the gap
//     at a's next heartbeat, drops its L1, and reads the new value;
//  5. Redis unreachable: every Get answered from L1 and the database, no
//     error; then Redis back in service;
//  6. a report: per-tier hit ratios and the database queries saved.
//
// Without STRATA_REDIS it runs on an embedded Redis-compatible server
// (miniredis); STRATA_REDIS=host:port uses a real one, under a prefix of
// its own whose keys it deletes at the end.
//
//	go run ./examples/cluster
package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log"
	"log/slog"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"

	"github.com/strata-cache/strata/cluster"
	"github.com/strata-cache/strata/cluster/clustertest"
	"github.com/strata-cache/strata/l2"
	"github.com/strata-cache/strata/tiered"
)

// dbLatency is what the simulated database takes per query.
const dbLatency = 5 * time.Millisecond

// database is the source of truth: versioned rows and a query counter.
type database struct {
	mu      sync.Mutex
	rows    map[string]string
	queries atomic.Int64
}

func (db *database) load(ctx context.Context, key string) (string, error) {
	db.queries.Add(1)
	t := time.NewTimer(dbLatency)
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
		return "", ctx.Err()
	}
	db.mu.Lock()
	defer db.mu.Unlock()
	v, ok := db.rows[key]
	if !ok {
		return "", tiered.ErrNotFound
	}
	return v, nil
}

func (db *database) write(key, v string) {
	db.mu.Lock()
	defer db.mu.Unlock()
	db.rows[key] = v
}

// replica is one of the three.
type replica struct {
	name   string
	client *tiered.Client
	users  *tiered.Cache[string]
	proxy  *proxy              // its network path to Redis, which the demo cuts
	gossip *clustertest.Faults // its gossip transport, which the demo cuts too
}

func main() {
	if err := run(context.Background(), os.Stdout); err != nil {
		log.Fatal(err)
	}
}

// demo holds the scenario's state and the claims it checked.
type demo struct {
	w        io.Writer
	db       *database
	replicas []*replica
	failed   []string
}

// claim prints a claim and records it if it does not hold.
func (d *demo) claim(ok bool, format string, args ...any) {
	mark := "ok  "
	if !ok {
		mark = "FAIL"
		d.failed = append(d.failed, fmt.Sprintf(format, args...))
	}
	fmt.Fprintf(d.w, "    %s %s\n", mark, fmt.Sprintf(format, args...))
}

func run(ctx context.Context, w io.Writer) error {
	target, prefix, cleanup, err := redisTarget()
	if err != nil {
		return err
	}
	defer cleanup()
	d := &demo{w: w, db: &database{rows: map[string]string{"user:1": "Ada", "user:2": "Alan", "user:3": "Grace"}}}
	fmt.Fprintf(w, "# 3 replicas over %s, gossip on loopback\n", target)
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	var seed []string
	for _, name := range []string{"a", "b", "c"} {
		p, err := newProxy(target)
		if err != nil {
			return err
		}
		defer p.close()
		faults := &clustertest.Faults{}
		c, err := tiered.NewClient(ctx, tiered.Config{NodeID: "replica-" + name, Logger: quiet,
			Redis: l2.Config{Addrs: []string{p.Addr()}, Prefix: prefix, Timeout: 200 * time.Millisecond},
			Gossip: &cluster.Config{BindAddr: "127.0.0.1:0", Profile: cluster.ProfileLocal, Join: seed,
				Transport: faults.Wrap}})
		if err != nil {
			return err
		}
		defer c.Close()
		seed = []string{c.GossipAddr()}
		users, err := tiered.NewCache(c, "users", tiered.Options[string]{TTL: time.Minute, EarlyRefreshBeta: tiered.Off})
		if err != nil {
			return err
		}
		d.replicas = append(d.replicas, &replica{name: name, client: c, users: users, proxy: p, gossip: faults})
	}
	if !d.waitFor(10*time.Second, func() bool {
		for _, r := range d.replicas {
			if h := r.client.Health(); !h.Trusted || len(h.Members) != 3 || !bothVouch(h) {
				return false
			}
		}
		return true
	}) {
		return errors.New("the replicas did not form a cluster with both channels up")
	}
	steps := []struct {
		title string
		run   func(context.Context)
	}{
		{"300 concurrent Gets of a cold key, 100 on each replica", d.stampede},
		{"an update on replica a", d.update},
		{"pub/sub cut on every replica; an update on a", d.pubsubCut},
		{"both channels to replica b cut for 400ms; an update on a meanwhile", d.lostInvalidation},
		{"Redis unreachable from every replica", d.redisDown},
	}
	for i, s := range steps {
		fmt.Fprintf(w, "[%d/%d] %s\n", i+1, len(steps), s.title)
		s.run(ctx)
	}
	d.report()
	if len(d.failed) > 0 {
		return fmt.Errorf("%d claims did not hold: %s", len(d.failed), strings.Join(d.failed, "; "))
	}
	return nil
}

func bothVouch(h tiered.Health) bool {
	n := 0
	for _, ch := range h.Channels {
		if ch.Vouches {
			n++
		}
	}
	return n == 2
}

// stampede: one database query for the whole cluster.
func (d *demo) stampede(ctx context.Context) {
	before := d.db.queries.Load()
	var wg sync.WaitGroup
	var errs atomic.Int64
	for _, r := range d.replicas {
		for range 100 {
			wg.Go(func() {
				if v, err := r.users.Get(ctx, "user:1", d.db.load); err != nil || v != "Ada" {
					errs.Add(1)
				}
			})
		}
	}
	wg.Wait()
	q := d.db.queries.Load() - before
	d.claim(q == 1 && errs.Load() == 0, "%d database query for 300 Gets on 3 replicas (%d errors)", q, errs.Load())
}

// update: a writes the database, then Set; b and c see it.
func (d *demo) update(ctx context.Context) {
	lag, ok := d.writeAndWatch(ctx, "user:1", "Ada Lovelace")
	d.claim(ok, "replicas b and c read the new value %v after the Set returned (pub/sub and gossip both up)", lag)
}

// pubsubCut: with the subscriptions cut, gossip alone delivers.
func (d *demo) pubsubCut(ctx context.Context) {
	for _, r := range d.replicas {
		r.proxy.cutPubSub(true)
	}
	defer func() {
		for _, r := range d.replicas {
			r.proxy.cutPubSub(false)
		}
	}()
	d.waitFor(5*time.Second, func() bool {
		for _, r := range d.replicas {
			for _, ch := range r.client.Health().Channels {
				if ch.Name == "pubsub" && ch.Vouches {
					return false
				}
			}
		}
		return true
	})
	before := d.gossipReceived()
	lag, ok := d.writeAndWatch(ctx, "user:1", "Countess Lovelace")
	d.claim(ok && d.gossipReceived() > before, "b and c read the new value %v after the Set, through gossip alone", lag)
	for _, r := range d.replicas[1:] {
		v, _ := r.users.Get(ctx, "user:1", d.db.load)
		d.claim(v == "Countess Lovelace", "replica %s serves the new value from its L1 while pub/sub is down", r.name)
	}
}

// lostInvalidation: b misses an update on both channels; it finds the gap
// in a's sequence at a's next heartbeat, drops its L1 and reads the new
// value.
func (d *demo) lostInvalidation(ctx context.Context) {
	b := d.replicas[1]
	if v, err := b.users.Get(ctx, "user:3", d.db.load); err != nil || v != "Grace" {
		d.claim(false, "b holds user:3 in L1 before the cut (got %q, %v)", v, err)
		return
	}
	resets := b.client.BusStats().Resets
	b.proxy.cutPubSub(true)
	b.gossip.Cut(true)
	d.db.write("user:3", "Grace Hopper")
	err := d.replicas[0].users.Set(ctx, "user:3", "Grace Hopper")
	set := time.Now()
	// The cut is the fault being shown, not a wait for something: 400ms
	// outlasts gossip's retransmissions (two rounds of 100ms) and stays
	// under the 1.5s after which a silent channel stops vouching for L1.
	time.Sleep(400 * time.Millisecond)
	b.gossip.Cut(false)
	b.proxy.cutPubSub(false)
	d.claim(err == nil && b.gossip.Dropped() > 0, "a's update was lost on both channels to b (%d gossip packets dropped, subscription cut)", b.gossip.Dropped())
	found := d.waitFor(3*time.Second, func() bool { return b.client.BusStats().Resets > resets })
	lag := time.Since(set).Round(time.Millisecond)
	reason := "none"
	if f := b.client.Health().LastFlush; f != nil {
		reason = f.Reason
	}
	d.claim(found && lag <= 2*time.Second, "b noticed the missed invalidation %v after the Set (reason: %s) and dropped its L1; until then its L1 could answer the old value, for at most 2s by design", lag, reason)
	stale := 0
	for range 100 {
		if v, err := b.users.Get(ctx, "user:3", d.db.load); err != nil || v != "Grace Hopper" {
			stale++
		}
	}
	d.claim(stale == 0, "0 stale reads on b after that: %d of 100 Gets answered the old value", stale)
}

func (d *demo) gossipReceived() uint64 {
	var n uint64
	for _, r := range d.replicas {
		g := r.client.BusStats().Gossip.Received
		n += g.Keys + g.Tags + g.Pattern + g.Clear
	}
	return n
}

// redisDown: every replica loses Redis; answers keep coming from L1 and the
// database, with no error; then Redis comes back.
func (d *demo) redisDown(ctx context.Context) {
	for _, r := range d.replicas {
		r.proxy.setDown(true)
	}
	var errs, answers int
	for _, r := range d.replicas {
		for _, key := range []string{"user:1", "user:2", "user:3"} {
			for range 20 {
				if _, err := r.users.Get(ctx, key, d.db.load); err != nil {
					errs++
				}
				answers++
			}
		}
	}
	d.claim(errs == 0, "%d Gets answered with Redis unreachable, %d errors (L1 and the database answer)", answers, errs)
	for _, r := range d.replicas {
		r.proxy.setDown(false)
	}
	back := d.waitFor(15*time.Second, func() bool {
		for _, r := range d.replicas {
			for _, s := range r.client.Health().Servers {
				if !s.Serving {
					return false
				}
			}
		}
		return true
	})
	v, err := d.replicas[2].users.Get(ctx, "user:2", d.db.load)
	d.claim(back && err == nil && v == "Alan", "Redis back in service on every replica, reads go through it again")
}

// writeAndWatch writes key in the database and Sets it on replica a, then
// measures until b and c both read v.
func (d *demo) writeAndWatch(ctx context.Context, key, v string) (time.Duration, bool) {
	d.db.write(key, v)
	if err := d.replicas[0].users.Set(ctx, key, v); err != nil {
		return 0, false
	}
	start := time.Now()
	ok := d.waitFor(2*time.Second, func() bool {
		for _, r := range d.replicas[1:] {
			if got, err := r.users.Get(ctx, key, d.db.load); err != nil || got != v {
				return false
			}
		}
		return true
	})
	return time.Since(start).Round(time.Microsecond), ok
}

// waitFor polls cond until it holds or timeout passes.
func (d *demo) waitFor(timeout time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(50 * time.Microsecond)
	}
	return true
}

func (d *demo) report() {
	var s tiered.Stats
	for _, r := range d.replicas {
		s = s.Add(r.users.Stats())
	}
	fmt.Fprintln(d.w, "# report")
	fmt.Fprintf(d.w, "    requests %d: L1 hits %.1f%%, L2 hits %.1f%%, misses %d (%d of them waited for another caller's load)\n",
		s.Requests(), 100*s.L1HitRatio(), 100*s.L2HitRatio(), s.Misses, s.Coalesced+s.LeaseWaits)
	q := d.db.queries.Load()
	fmt.Fprintf(d.w, "    database queries %d for %d requests: %d saved\n", q, s.Requests(), int64(s.Requests())-q)
}

// redisTarget is STRATA_REDIS's first address, or an embedded server; on a
// real Redis the demo writes under a prefix of its own, removed at the end.
func redisTarget() (addr, prefix string, cleanup func(), err error) {
	if env := strings.TrimSpace(os.Getenv("STRATA_REDIS")); env != "" {
		addr = strings.Split(env, ",")[0]
		b := make([]byte, 4)
		_, _ = rand.Read(b)
		prefix = "strata-demo-" + hex.EncodeToString(b)
		return addr, prefix, func() { deletePrefix(addr, prefix) }, nil
	}
	m, err := miniredis.Run()
	if err != nil {
		return "", "", nil, err
	}
	return m.Addr(), "", m.Close, nil
}

func deletePrefix(addr, prefix string) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	rdb := redis.NewClient(&redis.Options{Addr: addr})
	defer rdb.Close()
	for _, match := range []string{prefix + ":*", prefix + "#*", prefix + "@*"} {
		iter := rdb.Scan(ctx, 0, match, 1000).Iterator()
		for iter.Next(ctx) {
			rdb.Unlink(ctx, iter.Val())
		}
	}
}
