// Command quickstart is the smallest complete Strata program: two replicas
// (two Clients, each with its own L1) over one Redis, a loader, a write and
// a delete. Without STRATA_REDIS it runs on an embedded Redis-compatible
// server; with STRATA_REDIS=host:port it uses that one, under a prefix of
// its own whose keys it deletes at the end.
//
//	go run ./examples/quickstart
package main

import (
	"context"
	"fmt"
	"log"
	"os"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"

	"github.com/strata-cache/strata/l2"
	"github.com/strata-cache/strata/tiered"
)

// User is the cached value. Every caller that hits L1 gets the same
// value: a pointer, slice or map in V must be treated as read-only.
type User struct {
	ID   string `json:"id"`
	Name string `json:"name"`
}

func main() {
	if err := run(context.Background()); err != nil {
		log.Fatal(err)
	}
}

func run(ctx context.Context) error {
	addr, prefix := os.Getenv("STRATA_REDIS"), fmt.Sprintf("quickstart-%d", time.Now().UnixNano())
	if addr == "" {
		srv, err := miniredis.Run()
		if err != nil {
			return err
		}
		defer srv.Close()
		addr = srv.Addr()
	}
	db := map[string]User{"1": {ID: "1", Name: "Ada Lovelace"}}
	queries := 0
	load := func(ctx context.Context, id string) (User, error) {
		queries++ // a real loader queries the database here
		u, ok := db[id]
		if !ok {
			return User{}, tiered.ErrNotFound
		}
		return u, nil
	}

	// One Client per process; here two, standing for two replicas.
	var replicas []*tiered.Cache[User]
	var rdb redis.UniversalClient
	for _, name := range []string{"replica-a", "replica-b"} {
		client, err := tiered.NewClient(ctx, tiered.Config{NodeID: name,
			Redis: l2.Config{Addrs: []string{addr}, Prefix: prefix}})
		if err != nil {
			return err
		}
		defer client.Close()
		rdb = client.Redis()
		users, err := tiered.NewCache(client, "users", tiered.Options[User]{TTL: time.Minute})
		if err != nil {
			return err
		}
		replicas = append(replicas, users)
	}
	a, b := replicas[0], replicas[1]
	defer cleanup(ctx, rdb, prefix)

	get := func(c *tiered.Cache[User], name string) error {
		u, info, err := c.GetWithInfo(ctx, "1", load)
		if err != nil {
			return err
		}
		fmt.Printf("%s: Get(1) = %-12s from %-6s (database queries so far: %d)\n", name, u.Name, info.Tier, queries)
		return nil
	}
	steps := []func() error{
		func() error { return get(a, "a") }, // a miss: the loader runs, L2 and a's L1 filled
		func() error { return get(a, "a") }, // an L1 hit: no network, no decoding
		func() error { return get(b, "b") }, // an L2 hit: b reuses a's load
		func() error {
			db["1"] = User{ID: "1", Name: "Ada King"} // write the database first, then the cache
			// WithAck: return once every other replica dropped its old copy.
			return a.Set(tiered.WithAck(ctx, time.Second), "1", db["1"])
		},
		func() error { return get(b, "b") }, // b's L1 copy was invalidated: the new value
		func() error { delete(db, "1"); return a.Delete(ctx, "1") },
		func() error { _, err := b.Get(ctx, "1", load); fmt.Println("b: Get(1) after Delete:", err); return nil },
	}
	for _, step := range steps {
		if err := step(); err != nil {
			return err
		}
	}
	return nil
}

// cleanup deletes the program's keys from a real Redis: everything under
// its prefix.
func cleanup(ctx context.Context, rdb redis.UniversalClient, prefix string) {
	for _, match := range []string{prefix + ":*", prefix + "#*", prefix + "@*"} {
		for it := rdb.Scan(ctx, 0, match, 1000).Iterator(); it.Next(ctx); {
			rdb.Unlink(ctx, it.Val())
		}
	}
}
