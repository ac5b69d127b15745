// Command quickstart walks through Strata's read and write paths with two
// replicas sharing one L2.
//
// With STRATA_REDIS unset or empty it starts an embedded Redis-compatible
// server (miniredis), so it runs anywhere. Otherwise STRATA_REDIS is a
// comma-separated list of Redis addresses: one is a single node, several are
// shards.
//
//	go run ./examples/quickstart
//	STRATA_REDIS=localhost:6379 go run ./examples/quickstart
package main

import (
	"context"
	"errors"
	"fmt"
	"log"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"
	"github.com/strata-cache/strata/l2"
	"github.com/strata-cache/strata/tiered"
)

// User is the cached value. Strata hands the same *User to every caller that
// hits L1, so callers must treat it as read-only.
type User struct {
	ID    string `json:"id"`
	Name  string `json:"name"`
	Email string `json:"email"`
}

// dbLatency is how long the pretend database takes per query.
const dbLatency = 50 * time.Millisecond

// database simulates a slow source of truth and counts its queries.
type database struct {
	mu      sync.Mutex
	users   map[string]User
	queries atomic.Int64
}

func newDatabase() *database {
	return &database{users: map[string]User{
		"1": {ID: "1", Name: "Ada Lovelace", Email: "ada@example.com"},
		"2": {ID: "2", Name: "Alan Turing", Email: "alan@example.com"},
		"3": {ID: "3", Name: "Grace Hopper", Email: "grace@example.com"},
	}}
}

// wait sleeps for one query's latency, or until ctx ends.
func (db *database) wait(ctx context.Context) error {
	db.queries.Add(1)
	t := time.NewTimer(dbLatency)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// LoadUser is a tiered.Loader: tiered.ErrNotFound marks a missing record, so
// the cache can remember the miss (Options.NegativeTTL).
func (db *database) LoadUser(ctx context.Context, id string) (*User, error) {
	if err := db.wait(ctx); err != nil {
		return nil, err
	}
	db.mu.Lock()
	defer db.mu.Unlock()
	u, ok := db.users[id]
	if !ok {
		return nil, fmt.Errorf("user %q: %w", id, tiered.ErrNotFound)
	}
	return &u, nil
}

// LoadUsers is a tiered.BatchLoader: one query for many ids. Missing ids are
// left out of the map.
func (db *database) LoadUsers(ctx context.Context, ids []string) (map[string]*User, error) {
	if err := db.wait(ctx); err != nil {
		return nil, err
	}
	db.mu.Lock()
	defer db.mu.Unlock()
	out := make(map[string]*User, len(ids))
	for _, id := range ids {
		if u, ok := db.users[id]; ok {
			out[id] = &u
		}
	}
	return out, nil
}

func main() {
	if err := run(context.Background()); err != nil {
		log.Fatal(err)
	}
}

func run(ctx context.Context) error {
	addrs, prefix, stop, err := redisAddrs()
	if err != nil {
		return err
	}
	defer stop()

	db := newDatabase()
	opts := tiered.Options[*User]{
		TTL:         time.Minute,
		NegativeTTL: 30 * time.Second, // remember "no such user" for 30s
	}
	// Two Clients stand for two replicas of a service: each has its own L1,
	// and they share L2.
	replicaA, usersA, err := newReplica(ctx, "replica-a", addrs, prefix, opts)
	if err != nil {
		return err
	}
	defer replicaA.Close()
	replicaB, usersB, err := newReplica(ctx, "replica-b", addrs, prefix, opts)
	if err != nil {
		return err
	}
	defer replicaB.Close()

	steps := []func() error{
		func() error { return readThrough(ctx, db, usersA, usersB) },
		func() error { return writeAndDelete(ctx, db, usersA, usersB) },
		func() error { return getMany(ctx, db, usersA) },
		func() error { return negativeCaching(ctx, db, usersA) },
	}
	for _, step := range steps {
		if err := step(); err != nil {
			return err
		}
		fmt.Println()
	}
	fmt.Printf("stats A: %+v\n", usersA.Stats())
	fmt.Printf("stats B: %+v\n", usersB.Stats())
	fmt.Printf("database queries in total: %d\n", db.queries.Load())
	return nil
}

// redisAddrs returns the L2 addresses from STRATA_REDIS, with a key prefix
// of the demo's own whose keys stop deletes, or starts an embedded server,
// which stop shuts down.
func redisAddrs() (addrs []string, prefix string, stop func(), err error) {
	if env := os.Getenv("STRATA_REDIS"); env != "" {
		for a := range strings.SplitSeq(env, ",") {
			if a = strings.TrimSpace(a); a != "" {
				addrs = append(addrs, a)
			}
		}
		if len(addrs) == 0 {
			return nil, "", nil, fmt.Errorf("STRATA_REDIS=%q lists no address", env)
		}
		prefix = fmt.Sprintf("strata-quickstart-%d", time.Now().UnixNano())
		fmt.Printf("L2: Redis at %s (from STRATA_REDIS), keys under %s:, deleted at the end\n\n", strings.Join(addrs, ", "), prefix)
		return addrs, prefix, func() { deletePrefix(addrs, prefix) }, nil
	}
	srv, err := miniredis.Run()
	if err != nil {
		return nil, "", nil, fmt.Errorf("starting embedded Redis: %w", err)
	}
	fmt.Printf("L2: embedded Redis-compatible server (miniredis) at %s; set STRATA_REDIS=host:port[,host:port...] for a real one\n\n", srv.Addr())
	return []string{srv.Addr()}, "", srv.Close, nil
}

// deletePrefix removes the demo's keys from every server.
func deletePrefix(addrs []string, prefix string) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for _, a := range addrs {
		rdb := redis.NewClient(&redis.Options{Addr: a})
		for _, match := range []string{prefix + ":*", prefix + "#*", prefix + "@*"} {
			iter := rdb.Scan(ctx, 0, match, 1000).Iterator()
			for iter.Next(ctx) {
				rdb.Unlink(ctx, iter.Val())
			}
		}
		_ = rdb.Close()
	}
}

// newReplica makes one replica's Client and its users cache.
func newReplica(ctx context.Context, name string, addrs []string, prefix string, opts tiered.Options[*User]) (*tiered.Client, *tiered.Cache[*User], error) {
	client, err := tiered.NewClient(ctx, tiered.Config{
		NodeID: name,
		Redis:  l2.Config{Addrs: addrs, Prefix: prefix},
	})
	if err != nil {
		return nil, nil, err
	}
	users, err := tiered.NewCache(client, "users", opts)
	if err != nil {
		client.Close()
		return nil, nil, err
	}
	return client, users, nil
}

// readThrough shows a load, an L1 hit, and another replica's L2 hit.
func readThrough(ctx context.Context, db *database, a, b *tiered.Cache[*User]) error {
	fmt.Println("== Read-through: L1, then L2, then the loader")
	if err := timedGet(ctx, db, a, "A", "1", "miss in both tiers: loaded from the database, stored in L2 and A's L1"); err != nil {
		return err
	}
	if err := timedGet(ctx, db, a, "A", "1", "L1 hit: no network, no decoding"); err != nil {
		return err
	}
	if err := timedGet(ctx, db, b, "B", "1", "L2 hit: replica B reuses A's load, its loader is not called"); err != nil {
		return err
	}
	return timedGet(ctx, db, b, "B", "1", "L1 hit on B from now on")
}

// timedGet runs one Get and prints what it returned, how long it took and
// whether the database was queried.
func timedGet(ctx context.Context, db *database, c *tiered.Cache[*User], replica, id, note string) error {
	before := db.queries.Load()
	start := time.Now()
	u, err := c.Get(ctx, id, db.LoadUser)
	took := time.Since(start)
	if err != nil && !errors.Is(err, tiered.ErrNotFound) {
		return fmt.Errorf("get %q on %s: %w", id, replica, err)
	}
	result := "not found"
	if err == nil {
		result = fmt.Sprintf("%s <%s>", u.Name, u.Email)
	}
	fmt.Printf("  %s Get(%q) = %-34s %10v  db queries +%d  (%s)\n",
		replica, id, result, took.Round(time.Microsecond), db.queries.Load()-before, note)
	return nil
}

// writeAndDelete shows read-your-writes after Set and a reload after Delete.
func writeAndDelete(ctx context.Context, db *database, a, b *tiered.Cache[*User]) error {
	fmt.Println("== Set and Delete")
	// A real service writes its database first (or sets Options.Writer for
	// write-through), then updates the cache.
	updated := &User{ID: "1", Name: "Ada King", Email: "ada.king@example.com"}
	db.mu.Lock()
	db.users["1"] = *updated
	db.mu.Unlock()
	// WithAck waits until every other replica has dropped its old copy.
	if err := a.Set(tiered.WithAck(ctx, time.Second), "1", updated); err != nil {
		return err
	}
	fmt.Println("  A Set(\"1\") -> Ada King, in L2 and A's L1; B's L1 copy invalidated (acknowledged)")
	if err := timedGet(ctx, db, a, "A", "1", "read-your-writes on A"); err != nil {
		return err
	}
	if err := timedGet(ctx, db, b, "B", "1",
		"B's old copy was dropped by the invalidation: read from L2"); err != nil {
		return err
	}
	if err := a.Delete(ctx, "1"); err != nil {
		return err
	}
	fmt.Println("  A Delete(\"1\") -> gone from L2 and A's L1")
	return timedGet(ctx, db, a, "A", "1", "loaded again")
}

// getMany shows one batch: L1 hits first, then one loader call for the rest.
func getMany(ctx context.Context, db *database, a *tiered.Cache[*User]) error {
	fmt.Println("== GetMany with a BatchLoader")
	keys := []string{"1", "2", "3", "404"}
	before := db.queries.Load()
	start := time.Now()
	users, err := a.GetMany(ctx, keys, db.LoadUsers)
	if err != nil {
		return err
	}
	fmt.Printf("  A GetMany(%q) took %v, db queries +%d (\"1\" from L1, the rest in one batch query)\n",
		keys, time.Since(start).Round(time.Microsecond), db.queries.Load()-before)
	for _, k := range keys {
		if u, ok := users[k]; ok {
			fmt.Printf("    %-6q %s\n", k, u.Name)
		} else {
			fmt.Printf("    %-6q absent (not in the database)\n", k)
		}
	}
	before = db.queries.Load()
	users, err = a.GetMany(ctx, keys, db.LoadUsers)
	if err != nil {
		return err
	}
	fmt.Printf("  again: %d users, db queries +%d (all from L1, including the cached miss of \"404\")\n",
		len(users), db.queries.Load()-before)
	return nil
}

// negativeCaching shows a remembered "not found".
func negativeCaching(ctx context.Context, db *database, a *tiered.Cache[*User]) error {
	fmt.Println("== Negative caching (NegativeTTL: 30s)")
	const id = "999"
	for i, note := range []string{"the loader returned ErrNotFound; the miss is cached", "cached miss: ErrNotFound without a query"} {
		before := db.queries.Load()
		start := time.Now()
		_, err := a.Get(ctx, id, db.LoadUser)
		if !errors.Is(err, tiered.ErrNotFound) {
			return fmt.Errorf("get %q: got %v, want ErrNotFound", id, err)
		}
		fmt.Printf("  A Get(%q) #%d: errors.Is(err, ErrNotFound) in %v, db queries +%d (%s)\n",
			id, i+1, time.Since(start).Round(time.Microsecond), db.queries.Load()-before, note)
	}
	return nil
}
