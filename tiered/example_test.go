package tiered_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"maps"
	"slices"
	"sync/atomic"
	"time"

	"github.com/strata-cache/strata/l2"
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
	fmt.Printf("loads=%d l1hits=%d negative=%d\n", loads, s.L1Hits, s.L1NegativeHits)
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

func ExampleCache_GetWithInfo() {
	ctx := context.Background()
	client, err := tiered.NewClient(ctx, tiered.Config{})
	if err != nil {
		log.Fatal(err)
	}
	defer client.Close()
	// StaleIfError keeps an expired value servable for an hour if the loader
	// then fails: GetWithInfo reports it with Stale and the loader's error
	// in Cause.
	rates, err := tiered.NewCache(client, "rates", tiered.Options[float64]{
		TTL:          time.Minute,
		StaleIfError: time.Hour,
	})
	if err != nil {
		log.Fatal(err)
	}
	loadRate := func(ctx context.Context, pair string) (float64, error) {
		return 1.08, nil // the source of truth
	}

	for range 2 {
		v, info, err := rates.GetWithInfo(ctx, "EUR-USD", loadRate)
		if err != nil {
			log.Fatal(err)
		}
		// With L2 configured, a value another replica cached is "l2".
		fmt.Printf("%.2f tier=%s stale=%t cause=%v\n", v, info.Tier, info.Stale, info.Cause)
	}
	// Output:
	// 1.08 tier=loader stale=false cause=<nil>
	// 1.08 tier=l1 stale=false cause=<nil>
}

func ExampleCache_InvalidateTags() {
	type Product struct {
		SKU   string `json:"sku"`
		Brand string `json:"brand"`
	}
	ctx := context.Background()
	client, err := tiered.NewClient(ctx, tiered.Config{})
	if err != nil {
		log.Fatal(err)
	}
	defer client.Close()
	// Options.Tags derives tags from every value cached, whether Set or
	// loaded; WithTags adds tags to one Set.
	products, err := tiered.NewCache(client, "products", tiered.Options[Product]{
		Tags: func(key string, p Product) []string { return []string{"brand:" + p.Brand} },
	})
	if err != nil {
		log.Fatal(err)
	}
	for _, p := range []Product{{"sku-1", "acme"}, {"sku-2", "acme"}, {"sku-3", "globex"}} {
		if err := products.Set(ctx, p.SKU, p); err != nil {
			log.Fatal(err)
		}
	}
	if err := products.Set(ctx, "sku-4", Product{"sku-4", "initech"}, tiered.WithTags("sale")); err != nil {
		log.Fatal(err)
	}
	cached := func() {
		var in []string
		for _, sku := range []string{"sku-1", "sku-2", "sku-3", "sku-4"} {
			if _, err := products.Get(ctx, sku, nil); err == nil {
				in = append(in, sku)
			}
		}
		fmt.Println("cached:", in)
	}

	cached()
	// Drops every key tagged brand:acme from L2 and from every replica's L1.
	if err := products.InvalidateTags(ctx, "brand:acme"); err != nil {
		log.Fatal(err)
	}
	cached()
	if err := products.InvalidateTags(ctx, "sale"); err != nil {
		log.Fatal(err)
	}
	cached()
	// Output:
	// cached: [sku-1 sku-2 sku-3 sku-4]
	// cached: [sku-3 sku-4]
	// cached: [sku-3]
}

func ExampleCache_InvalidatePattern() {
	ctx := context.Background()
	client, err := tiered.NewClient(ctx, tiered.Config{})
	if err != nil {
		log.Fatal(err)
	}
	defer client.Close()
	carts, err := tiered.NewCache(client, "carts", tiered.Options[int]{})
	if err != nil {
		log.Fatal(err)
	}
	for key, items := range map[string]int{"eu:1": 3, "eu:2": 1, "us:1": 5} {
		if err := carts.Set(ctx, key, items); err != nil {
			log.Fatal(err)
		}
	}

	// The pattern is a Redis glob over the namespace's keys: in L2 only the
	// matching keys go (SCAN and UNLINK on every shard or cluster master).
	// L1 keeps no key index, so every replica drops the namespace's whole L1;
	// keys that did not match are read again from L2, or loaded. This client
	// has no L2, so L1 held the only copy of us:1 and it is gone too.
	if err := carts.InvalidatePattern(ctx, "eu:*"); err != nil {
		log.Fatal(err)
	}
	for _, key := range []string{"eu:1", "eu:2", "us:1"} {
		_, err := carts.Get(ctx, key, nil)
		fmt.Println(key, "gone:", errors.Is(err, tiered.ErrNotFound))
	}
	// Output:
	// eu:1 gone: true
	// eu:2 gone: true
	// us:1 gone: true
}

func ExampleCache_Clear() {
	ctx := context.Background()
	client, err := tiered.NewClient(ctx, tiered.Config{})
	if err != nil {
		log.Fatal(err)
	}
	defer client.Close()
	flags, err := tiered.NewCache(client, "flags", tiered.Options[bool]{})
	if err != nil {
		log.Fatal(err)
	}
	if err := flags.Set(ctx, "dark-mode", true); err != nil {
		log.Fatal(err)
	}

	// Clear bumps the namespace's version in L2, so every key written before
	// becomes unreachable at once (Redis expires the old keys by their TTL),
	// and empties the namespace's L1 on every replica.
	if err := flags.Clear(ctx); err != nil {
		log.Fatal(err)
	}
	_, err = flags.Get(ctx, "dark-mode", nil)
	fmt.Println(errors.Is(err, tiered.ErrNotFound))

	v, err := flags.Get(ctx, "dark-mode", func(ctx context.Context, key string) (bool, error) {
		return false, nil // reloaded from the source of truth
	})
	fmt.Println(v, err)
	// Output:
	// true
	// false <nil>
}

func ExampleClient_Invalidate() {
	ctx := context.Background()
	client, err := tiered.NewClient(ctx, tiered.Config{})
	if err != nil {
		log.Fatal(err)
	}
	defer client.Close()
	users, err := tiered.NewCache(client, "users", tiered.Options[string]{})
	if err != nil {
		log.Fatal(err)
	}
	if err := users.Set(ctx, "42", "Ada"); err != nil {
		log.Fatal(err)
	}

	// A process that only learns of changes (a change-data-capture consumer,
	// an admin script) needs no Cache: Client.Invalidate deletes the keys of
	// a namespace from L2 and from the L1 of every replica, this one's
	// included.
	if err := client.Invalidate(ctx, "users", "42"); err != nil {
		log.Fatal(err)
	}
	_, err = users.Get(ctx, "42", nil)
	fmt.Println(errors.Is(err, tiered.ErrNotFound))
	// Output:
	// true
}

func ExampleClient_InvalidateTags() {
	ctx := context.Background()
	client, err := tiered.NewClient(ctx, tiered.Config{})
	if err != nil {
		log.Fatal(err)
	}
	defer client.Close()
	orders, err := tiered.NewCache(client, "orders", tiered.Options[string]{})
	if err != nil {
		log.Fatal(err)
	}
	if err := orders.Set(ctx, "o-1", "shipped", tiered.WithTags("customer:7")); err != nil {
		log.Fatal(err)
	}
	if err := orders.Set(ctx, "o-2", "paid", tiered.WithTags("customer:9")); err != nil {
		log.Fatal(err)
	}

	// Like Cache.InvalidateTags, without a Cache: name the namespace.
	if err := client.InvalidateTags(ctx, "orders", "customer:7"); err != nil {
		log.Fatal(err)
	}
	for _, id := range []string{"o-1", "o-2"} {
		v, err := orders.Get(ctx, id, nil)
		fmt.Printf("%s %q %v\n", id, v, err)
	}
	// Output:
	// o-1 "" tiered: not found
	// o-2 "paid" <nil>
}

func ExampleWithAck() {
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

	// Set, Delete, InvalidateTags, InvalidatePattern, Clear and
	// Client.Invalidate under a WithAck context return only once every live
	// replica has applied the invalidation. Past the timeout they return an
	// error wrapping coherence.ErrNotAcknowledged that names the replicas
	// that did not confirm; the write itself has happened either way.
	actx := tiered.WithAck(ctx, 2*time.Second)
	// This client has no peers (no Redis, no gossip), so nobody is waited for.
	err = prices.Set(actx, "sku-1", 1999)
	fmt.Println(err)
	err = prices.Delete(actx, "sku-1")
	fmt.Println(err)
	// Output:
	// <nil>
	// <nil>
}

// stepClock is a tiered.Clock that moves only when told to.
type stepClock struct{ now atomic.Int64 }

func (c *stepClock) Now() time.Time          { return time.Unix(0, c.now.Load()) }
func (c *stepClock) Advance(d time.Duration) { c.now.Add(int64(d)) }

func ExampleWithTTL() {
	ctx := context.Background()
	clock := &stepClock{}
	clock.now.Store(time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC).UnixNano())
	client, err := tiered.NewClient(ctx, tiered.Config{Clock: clock})
	if err != nil {
		log.Fatal(err)
	}
	defer client.Close()
	codes, err := tiered.NewCache(client, "codes", tiered.Options[string]{TTL: time.Hour})
	if err != nil {
		log.Fatal(err)
	}

	// WithTTL overrides Options.TTL for one Set; jitter (±10% by default)
	// still applies.
	if err := codes.Set(ctx, "login:alice", "493021", tiered.WithTTL(30*time.Second)); err != nil {
		log.Fatal(err)
	}
	if err := codes.Set(ctx, "invite:bob", "XK2-PQ7"); err != nil { // Options.TTL
		log.Fatal(err)
	}

	clock.Advance(45 * time.Second)
	for _, key := range []string{"login:alice", "invite:bob"} {
		v, err := codes.Get(ctx, key, nil)
		fmt.Printf("%s %q %v\n", key, v, err)
	}
	// Output:
	// login:alice "" tiered: not found
	// invite:bob "XK2-PQ7" <nil>
}

// Write-behind needs Redis: this example compiles but does not run here.
// Set returns once Redis recorded the write; Flush receives it in a batch,
// in the background.
func ExampleWriteBehind() {
	ctx := context.Background()
	client, err := tiered.NewClient(ctx, tiered.Config{Redis: l2.Config{Addrs: []string{"localhost:6379"}}})
	if err != nil {
		log.Fatal(err)
	}
	defer client.Close() // flushes what is pending first
	type user struct{ Name string }
	stored := map[string]uint64{} // the database: each key's newest version
	users, err := tiered.NewCache(client, "users", tiered.Options[user]{
		WriteBehind: &tiered.WriteBehind[user]{
			Flush: func(ctx context.Context, batch []tiered.Write[user]) error {
				for _, w := range batch {
					if w.Version <= stored[w.Key] {
						continue // delivered again, or older: at least once
					}
					stored[w.Key] = w.Version // UPSERT ... WHERE version < w.Version
				}
				return nil
			},
		},
	})
	if err != nil {
		log.Fatal(err)
	}
	if err := users.Set(ctx, "42", user{Name: "Ada"}); errors.Is(err, tiered.ErrBackpressure) {
		log.Print("the database is behind: try later")
	}
}
