package tiered_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"maps"
	"slices"
	"time"

	"github.com/strata-cache/strata/tiered"
)

// The examples use a Client without Redis (the zero Config.Redis), so they run
// anywhere and their output is deterministic. A service points L2 at Redis:
//
//	client, err := tiered.NewClient(ctx, tiered.Config{
//		Redis: l2.Config{Addrs: []string{"redis-1:6379", "redis-2:6379"}}, // shards; or ClusterAddrs, or Client
//	})

func ExampleNewClient() {
	ctx := context.Background()
	// One Client per process, shared by all its Caches. With L2:
	//
	//	cfg.Redis = l2.Config{Addrs: []string{"localhost:6379"}}
	client, err := tiered.NewClient(ctx, tiered.Config{NodeID: "replica-1"})
	if err != nil {
		log.Fatal(err)
	}
	defer client.Close()

	fmt.Println("node:", client.NodeID())
	fmt.Println("has L2:", client.L2() != nil)
	// Output:
	// node: replica-1
	// has L2: false
}

func ExampleNewCache() {
	type User struct {
		ID   int    `json:"id"`
		Name string `json:"name"`
	}
	ctx := context.Background()
	client, err := tiered.NewClient(ctx, tiered.Config{})
	if err != nil {
		log.Fatal(err)
	}
	defer client.Close()

	// Values of *User are shared by every caller that hits L1: treat them as
	// read-only.
	users, err := tiered.NewCache(client, "users", tiered.Options[*User]{
		TTL:         10 * time.Minute,
		NegativeTTL: time.Minute,                         // remember "no such user"
		L1:          tiered.L1Options{MaxCost: 32 << 20}, // 32 MiB in this process
	})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("namespace:", users.Namespace())

	_, err = tiered.NewCache(client, "bad{ns}", tiered.Options[*User]{})
	fmt.Println(errors.Is(err, tiered.ErrInvalidNamespace))
	// Output:
	// namespace: users
	// true
}

func ExampleCache_Get() {
	type User struct {
		ID   string `json:"id"`
		Name string `json:"name"`
	}
	ctx := context.Background()
	client, err := tiered.NewClient(ctx, tiered.Config{})
	if err != nil {
		log.Fatal(err)
	}
	defer client.Close()
	users, err := tiered.NewCache(client, "users", tiered.Options[*User]{NegativeTTL: time.Minute})
	if err != nil {
		log.Fatal(err)
	}

	// The loader reads the source of truth; ErrNotFound means "no such record".
	loads := 0
	loadUser := func(ctx context.Context, id string) (*User, error) {
		loads++
		if id != "42" {
			return nil, fmt.Errorf("user %s: %w", id, tiered.ErrNotFound)
		}
		return &User{ID: id, Name: "Ada"}, nil
	}

	for range 3 {
		u, err := users.Get(ctx, "42", loadUser) // loaded once, then L1 hits
		if err != nil {
			log.Fatal(err)
		}
		fmt.Println(u.Name)
	}
	for range 2 {
		_, err := users.Get(ctx, "7", loadUser) // the miss is cached for NegativeTTL
		fmt.Println(errors.Is(err, tiered.ErrNotFound))
	}
	s := users.Stats()
	fmt.Printf("loads=%d l1hits=%d negative=%d\n", loads, s.L1Hits, s.NegativeHits)
	// Output:
	// Ada
	// Ada
	// Ada
	// true
	// true
	// loads=2 l1hits=3 negative=1
}

func ExampleCache_GetMany() {
	ctx := context.Background()
	client, err := tiered.NewClient(ctx, tiered.Config{})
	if err != nil {
		log.Fatal(err)
	}
	defer client.Close()
	names, err := tiered.NewCache(client, "names", tiered.Options[string]{})
	if err != nil {
		log.Fatal(err)
	}
	if err := names.Set(ctx, "1", "Ada"); err != nil {
		log.Fatal(err)
	}

	// The batch loader gets only the keys neither tier holds, in one call.
	// Keys it leaves out of the map are not found.
	db := map[string]string{"1": "Ada", "2": "Alan", "3": "Grace"}
	loadNames := func(ctx context.Context, ids []string) (map[string]string, error) {
		fmt.Println("loading", ids)
		out := make(map[string]string, len(ids))
		for _, id := range ids {
			if name, ok := db[id]; ok {
				out[id] = name
			}
		}
		return out, nil
	}

	got, err := names.GetMany(ctx, []string{"1", "2", "3", "4"}, loadNames)
	if err != nil {
		log.Fatal(err)
	}
	for _, id := range slices.Sorted(maps.Keys(got)) {
		fmt.Println(id, got[id])
	}
	// Output:
	// loading [2 3 4]
	// 1 Ada
	// 2 Alan
	// 3 Grace
}

func ExampleCache_Set() {
	ctx := context.Background()
	client, err := tiered.NewClient(ctx, tiered.Config{})
	if err != nil {
		log.Fatal(err)
	}
	defer client.Close()
	sessions, err := tiered.NewCache(client, "sessions", tiered.Options[string]{TTL: time.Hour})
	if err != nil {
		log.Fatal(err)
	}

	// Set writes L2 (when configured), then L1: once it returns, Gets on this
	// replica see the new value. WithTTL overrides Options.TTL for one call.
	if err := sessions.Set(ctx, "s-1", "alice", tiered.WithTTL(15*time.Minute)); err != nil {
		log.Fatal(err)
	}
	v, err := sessions.Get(ctx, "s-1", nil) // a nil loader makes Get a lookup
	fmt.Println(v, err)

	if err := sessions.Set(ctx, "s-1", "bob"); err != nil {
		log.Fatal(err)
	}
	v, err = sessions.Get(ctx, "s-1", nil)
	fmt.Println(v, err)
	// Output:
	// alice <nil>
	// bob <nil>
}

func ExampleCache_Delete() {
	ctx := context.Background()
	client, err := tiered.NewClient(ctx, tiered.Config{})
	if err != nil {
		log.Fatal(err)
	}
	defer client.Close()
	prices, err := tiered.NewCache(client, "prices", tiered.Options[int]{})
	if err != nil {
		log.Fatal(err)
	}
	if err := prices.Set(ctx, "sku-1", 1999); err != nil {
		log.Fatal(err)
	}

	// Delete removes keys from both tiers; once it returns, Gets on this
	// replica no longer see the old value, and a Get with a loader reloads.
	if err := prices.Delete(ctx, "sku-1"); err != nil {
		log.Fatal(err)
	}
	_, err = prices.Get(ctx, "sku-1", nil)
	fmt.Println(errors.Is(err, tiered.ErrNotFound))

	v, err := prices.Get(ctx, "sku-1", func(ctx context.Context, key string) (int, error) {
		return 2499, nil // the new price from the source of truth
	})
	fmt.Println(v, err)
	// Output:
	// true
	// 2499 <nil>
}
