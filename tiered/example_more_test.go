package tiered_test

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log"
	"sync/atomic"
	"time"

	"github.com/strata-cache/strata/cluster"
	"github.com/strata-cache/strata/l2"
	"github.com/strata-cache/strata/tiered"
)

func ExampleWithTags() {
	ctx := context.Background()
	client, err := tiered.NewClient(ctx, tiered.Config{})
	if err != nil {
		log.Fatal(err)
	}
	defer client.Close()
	pages, err := tiered.NewCache(client, "pages", tiered.Options[string]{})
	if err != nil {
		log.Fatal(err)
	}

	// A rendered page depends on several records: tag it with each, and a
	// change to any of them invalidates the page.
	err = pages.Set(ctx, "/products/7", "<html>…</html>", tiered.WithTags("product:7", "brand:acme"))
	if err != nil {
		log.Fatal(err)
	}
	if err := pages.InvalidateTags(ctx, "brand:acme"); err != nil {
		log.Fatal(err)
	}
	_, err = pages.Get(ctx, "/products/7", nil)
	fmt.Println(errors.Is(err, tiered.ErrNotFound))
	// Output:
	// true
}

// Options.Writer makes Set write-through: the source of truth first, the
// cache only if that succeeded.
func ExampleOptions_writer() {
	ctx := context.Background()
	client, err := tiered.NewClient(ctx, tiered.Config{})
	if err != nil {
		log.Fatal(err)
	}
	defer client.Close()
	db := map[string]int{}
	stock, err := tiered.NewCache(client, "stock", tiered.Options[int]{
		Writer: func(ctx context.Context, sku string, n int) error {
			if n < 0 {
				return fmt.Errorf("stock of %s: %d is negative", sku, n)
			}
			db[sku] = n // UPDATE stock SET n = $2 WHERE sku = $1
			return nil
		},
	})
	if err != nil {
		log.Fatal(err)
	}

	fmt.Println(stock.Set(ctx, "sku-1", 12))
	fmt.Println(stock.Set(ctx, "sku-1", -1)) // refused: neither the database nor the cache changes
	v, err := stock.Get(ctx, "sku-1", nil)
	fmt.Println(v, err, db["sku-1"])
	// Output:
	// <nil>
	// tiered: write-through of "sku-1": stock of sku-1: -1 is negative
	// 12 <nil> 12
}

func ExampleCache_Stats() {
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
	load := func(ctx context.Context, id string) (string, error) { return "user " + id, nil }
	for _, id := range []string{"1", "1", "1", "2"} {
		if _, err := users.Get(ctx, id, load); err != nil {
			log.Fatal(err)
		}
	}

	// Every Get counts once: in L1Hits, L2Hits, StaleHits, StaleOnError or
	// Misses. The ratios are shares of Requests.
	s := users.Stats()
	fmt.Printf("requests=%d l1=%d misses=%d loads=%d\n", s.Requests(), s.L1Hits, s.Misses, s.Loads)
	fmt.Printf("hit ratio %.2f (L1 %.2f, L2 %.2f)\n", s.HitRatio(), s.L1HitRatio(), s.L2HitRatio())
	// Output:
	// requests=4 l1=2 misses=2 loads=2
	// hit ratio 0.50 (L1 0.50, L2 0.00)
}

// Stats.Add sums the counters of one namespace over several caches or
// replicas, as a dashboard would.
func ExampleStats_Add() {
	ctx := context.Background()
	var total tiered.Stats
	for _, node := range []string{"replica-1", "replica-2"} {
		client, err := tiered.NewClient(ctx, tiered.Config{NodeID: node})
		if err != nil {
			log.Fatal(err)
		}
		users, err := tiered.NewCache(client, "users", tiered.Options[string]{})
		if err != nil {
			log.Fatal(err)
		}
		for range 3 {
			_, err := users.Get(ctx, "42", func(ctx context.Context, id string) (string, error) { return "Ada", nil })
			if err != nil {
				log.Fatal(err)
			}
		}
		total = total.Add(users.Stats())
		_ = client.Close()
	}
	fmt.Printf("requests=%d loads=%d hit ratio %.2f\n", total.Requests(), total.Loads, total.HitRatio())
	// Output:
	// requests=6 loads=2 hit ratio 0.67
}

// Client.Stats reads the counters of every cache of the client, summed per
// namespace, with the invalidation bus's and the retrier's.
func ExampleClient_Stats() {
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
	for range 2 {
		if _, err := users.Get(ctx, "42", nil); err != nil {
			log.Fatal(err)
		}
	}

	s := client.Stats()
	fmt.Println("l1 hits of", users.Namespace()+":", s.Caches[users.Namespace()].L1Hits)
	fmt.Println("invalidations published:", s.Bus.Published) // no channel without L2 or gossip
	// Output:
	// l1 hits of users: 2
	// invalidations published: 0
}

// Close ends the client: loads in flight are cancelled, writes in progress
// are published, and every later call returns ErrClosed. Calling it again
// is harmless, so a deferred Close can stay beside an explicit one.
func ExampleClient_Close() {
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

	fmt.Println(client.Close())
	_, err = users.Get(ctx, "42", func(ctx context.Context, id string) (string, error) { return "Ada", nil })
	fmt.Println(errors.Is(err, tiered.ErrClosed))
	fmt.Println(client.Close())
	// Output:
	// <nil>
	// true
	// <nil>
}

// Health is what a readiness probe or a dashboard reads (package debughttp
// serves it as JSON). Without Redis or gossip there are no servers or
// channels, and L1 is always trusted.
func ExampleClient_Health() {
	ctx := context.Background()
	client, err := tiered.NewClient(ctx, tiered.Config{NodeID: "api-7"})
	if err != nil {
		log.Fatal(err)
	}
	defer client.Close()

	h := client.Health()
	fmt.Println(h.NodeID, "trusted:", h.Trusted)
	fmt.Println("servers:", len(h.Servers), "channels:", len(h.Channels))
	for _, s := range h.Servers {
		if !s.Serving {
			fmt.Println("out of service:", s.Addr, s.Reason)
		}
	}
	// Output:
	// api-7 trusted: true
	// servers: 0 channels: 0
}

// Two replicas in one process, joined over gossip on loopback (in
// production each replica lists the others' addresses in Gossip.Join). A
// Set on one drops the copy the other holds; WithAck makes the Set return
// only once the other has done so.
func ExampleClient_GossipAddr() {
	ctx := context.Background()
	gossip := cluster.Config{BindAddr: "127.0.0.1:0", Profile: cluster.ProfileLocal}
	a, err := tiered.NewClient(ctx, tiered.Config{NodeID: "replica-a", Gossip: &gossip})
	if err != nil {
		log.Fatal(err)
	}
	defer a.Close()
	joinA := gossip
	joinA.Join = []string{a.GossipAddr()}
	b, err := tiered.NewClient(ctx, tiered.Config{NodeID: "replica-b", Gossip: &joinA})
	if err != nil {
		log.Fatal(err)
	}
	defer b.Close()

	price := 100 // the source of truth
	load := func(ctx context.Context, sku string) (int, error) { return price, nil }
	onA, err := tiered.NewCache(a, "prices", tiered.Options[int]{})
	if err != nil {
		log.Fatal(err)
	}
	onB, err := tiered.NewCache(b, "prices", tiered.Options[int]{})
	if err != nil {
		log.Fatal(err)
	}
	v, _ := onB.Get(ctx, "sku-1", load)
	fmt.Println("b reads", v)

	price = 120
	if err := onA.Set(tiered.WithAck(ctx, 5*time.Second), "sku-1", price); err != nil {
		log.Fatal(err)
	}
	v, _ = onB.Get(ctx, "sku-1", load) // b's copy was dropped: loaded again
	fmt.Println("b reads", v)
	fmt.Println("applied on b:", b.BusStats().Applied > 0)
	// Output:
	// b reads 100
	// b reads 120
	// applied on b: true
}

// BusStats counts the invalidation traffic: what this replica published,
// received and applied, per channel, and the L1 drops for lost messages.
// This example needs Redis: it compiles but does not run here.
func ExampleClient_BusStats() {
	ctx := context.Background()
	client, err := tiered.NewClient(ctx, tiered.Config{Redis: l2.Config{Addrs: []string{"localhost:6379"}}})
	if err != nil {
		log.Fatal(err)
	}
	defer client.Close()

	s := client.BusStats()
	fmt.Printf("published=%d applied=%d pubsub received=%d gossip received=%d\n",
		s.Published, s.Applied, s.PubSub.Received.Keys, s.Gossip.Received.Keys)
	if s.Gaps > 0 {
		fmt.Println("messages lost on both channels:", s.Gaps, "L1 drops:", s.Resets)
	}
}

// L2Health reports each Redis server: whether it takes cache traffic, why
// not, and its circuit breaker. This example needs Redis: it compiles but
// does not run here.
func ExampleClient_L2Health() {
	ctx := context.Background()
	client, err := tiered.NewClient(ctx, tiered.Config{
		Redis: l2.Config{Addrs: []string{"redis-1:6379", "redis-2:6379"}},
	})
	if err != nil {
		log.Fatal(err)
	}
	defer client.Close()

	for _, s := range client.L2Health() {
		fmt.Printf("%s serving=%t breaker=%s %s\n", s.Addr, s.Serving, s.Breaker, s.Reason)
	}
}

// Redis gives the go-redis client L2 runs on, for instrumentation (package
// otelcache uses it with redisotel) and diagnostics. Writing cache keys
// through it would skip the leases and invalidations. This example needs
// Redis: it compiles but does not run here.
func ExampleClient_Redis() {
	ctx := context.Background()
	client, err := tiered.NewClient(ctx, tiered.Config{Redis: l2.Config{Addrs: []string{"localhost:6379"}}})
	if err != nil {
		log.Fatal(err)
	}
	defer client.Close()

	rdb := client.Redis()
	if err := rdb.Ping(ctx).Err(); err != nil {
		log.Print("redis: ", err)
	}
	fmt.Println("open connections:", rdb.PoolStats().TotalConns)
}

// RetryStats counts the failed L2 writes the client tries again in the
// background (on a Redis Cluster or a caller's own client). Without L2
// there is nothing to retry.
func ExampleClient_RetryStats() {
	ctx := context.Background()
	client, err := tiered.NewClient(ctx, tiered.Config{})
	if err != nil {
		log.Fatal(err)
	}
	defer client.Close()

	r := client.RetryStats()
	fmt.Printf("pending=%d applied=%d expired=%d dropped=%d\n", r.Pending, r.Applied, r.Expired, r.Dropped)
	// Output:
	// pending=0 applied=0 expired=0 dropped=0
}

// DeadLetters lists the write-behind writes given up after
// WriteBehind.MaxAttempts failed flushes; Redrive sends them back once the
// cause is fixed. Write-behind needs Redis: this example compiles but does
// not run here.
func ExampleCache_DeadLetters() {
	ctx := context.Background()
	client, err := tiered.NewClient(ctx, tiered.Config{Redis: l2.Config{Addrs: []string{"localhost:6379"}}})
	if err != nil {
		log.Fatal(err)
	}
	defer client.Close()
	users, err := tiered.NewCache(client, "users", tiered.Options[string]{
		WriteBehind: &tiered.WriteBehind[string]{
			Flush: func(ctx context.Context, batch []tiered.Write[string]) error {
				return errors.New("database read-only") // every attempt fails
			},
			MaxAttempts: 3,
		},
	})
	if err != nil {
		log.Fatal(err)
	}

	dead, err := users.DeadLetters(ctx)
	if err != nil {
		log.Fatal(err)
	}
	for _, d := range dead {
		if d.Err != nil {
			fmt.Println(d.ID, "undecodable:", d.Err)
			continue
		}
		fmt.Println(d.ID, d.Write.Key, d.Write.Version, "given up:", d.Reason)
	}
}

// Redrive puts the dead-letter writes back in the stream, keeping their
// versions, once the cause of the failures is fixed. Write-behind needs
// Redis: this example compiles but does not run here.
func ExampleCache_Redrive() {
	ctx := context.Background()
	client, err := tiered.NewClient(ctx, tiered.Config{Redis: l2.Config{Addrs: []string{"localhost:6379"}}})
	if err != nil {
		log.Fatal(err)
	}
	defer client.Close()
	users, err := tiered.NewCache(client, "users", tiered.Options[string]{
		WriteBehind: &tiered.WriteBehind[string]{
			Flush: func(ctx context.Context, batch []tiered.Write[string]) error { return nil },
		},
	})
	if err != nil {
		log.Fatal(err)
	}

	n, err := users.Redrive(ctx)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("sent back to be flushed:", n)
}

// JSONCodec is the default codec for every type but []byte and string:
// this is the payload an entry carries in L2.
func ExampleJSONCodec() {
	type User struct {
		ID   int    `json:"id"`
		Name string `json:"name"`
	}
	var codec tiered.JSONCodec[User]
	b, err := codec.Marshal(User{ID: 42, Name: "Ada"})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(string(b))
	u, err := codec.Unmarshal(b)
	fmt.Println(u.Name, err)
	// Output:
	// {"id":42,"name":"Ada"}
	// Ada <nil>
}

// counterCodec stores a uint64 in 8 bytes instead of its JSON digits.
type counterCodec struct{}

func (counterCodec) Marshal(n uint64) ([]byte, error) {
	return binary.BigEndian.AppendUint64(nil, n), nil
}

func (counterCodec) Unmarshal(b []byte) (uint64, error) {
	if len(b) != 8 {
		return 0, fmt.Errorf("counter of %d bytes", len(b))
	}
	return binary.BigEndian.Uint64(b), nil
}

// A Codec of your own sets how values are stored in L2 (and sized in L1):
// a compact binary form, protobuf, compression. Every cache of a namespace,
// on every replica, must use the same one.
func ExampleCodec() {
	ctx := context.Background()
	client, err := tiered.NewClient(ctx, tiered.Config{})
	if err != nil {
		log.Fatal(err)
	}
	defer client.Close()
	views, err := tiered.NewCache(client, "views", tiered.Options[uint64]{Codec: counterCodec{}})
	if err != nil {
		log.Fatal(err)
	}
	if err := views.Set(ctx, "/home", 1_000_000); err != nil {
		log.Fatal(err)
	}
	n, err := views.Get(ctx, "/home", nil)
	fmt.Println(n, err)
	// Output:
	// 1000000 <nil>
}

// A loader that panics does not crash the process: Get returns a
// *PanicError with the panic value and the stack, and its message is one
// line without the stack.
func ExamplePanicError() {
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

	_, err = users.Get(ctx, "42", func(ctx context.Context, id string) (string, error) {
		var m map[string]string
		m[id] = "Ada" // a bug: assignment to a nil map
		return m[id], nil
	})
	fmt.Println(err)
	var pe *tiered.PanicError
	if errors.As(err, &pe) {
		fmt.Println(pe.Callback, len(pe.Stack) > 0)
	}
	// Output:
	// tiered: loader panicked: assignment to entry in nil map
	// loader true
}

// loadTimer is an Observer that sums the time spent in loaders. As an
// EventFilter it asks for load events only, so the L1 hit path does not
// call it at all.
type loadTimer struct {
	loads atomic.Int64
	total atomic.Int64 // nanoseconds
}

func (t *loadTimer) Observe(ctx context.Context, e tiered.Event) {
	t.loads.Add(1)
	t.total.Add(int64(e.Duration))
}

func (t *loadTimer) Wants(k tiered.EventKind) bool { return k == tiered.EventLoad }

// An Observer hears events as they happen, on the caller's goroutine: it
// must be fast and must not block. For OpenTelemetry use package otelcache.
func ExampleObserver() {
	ctx := context.Background()
	timer := &loadTimer{}
	client, err := tiered.NewClient(ctx, tiered.Config{Observer: timer})
	if err != nil {
		log.Fatal(err)
	}
	defer client.Close()
	users, err := tiered.NewCache(client, "users", tiered.Options[string]{})
	if err != nil {
		log.Fatal(err)
	}
	load := func(ctx context.Context, id string) (string, error) {
		time.Sleep(time.Millisecond) // the database
		return "Ada", nil
	}
	for range 3 {
		if _, err := users.Get(ctx, "42", load); err != nil {
			log.Fatal(err)
		}
	}
	fmt.Println("loads:", timer.loads.Load(), "took time:", timer.total.Load() > 0)
	// Output:
	// loads: 1 took time: true
}

// Config.Audit checks a share of L1 hits against L2 in the background; the
// share found inconsistent, as nines, is the cache's measured consistency.
func ExampleConfig_audit() {
	ctx := context.Background()
	client, err := tiered.NewClient(ctx, tiered.Config{
		Redis: l2.Config{Addrs: []string{"127.0.0.1:6379"}},
		Audit: tiered.AuditConfig{SampleRate: 0.01}, // 1% of L1 hits, at most 100 checks a second
	})
	if err != nil {
		log.Fatal(err)
	}
	defer client.Close()
	users, err := tiered.NewCache(client, "users", tiered.Options[string]{})
	if err != nil {
		log.Fatal(err)
	}
	// … serve traffic, then, say once a minute:
	a := users.Stats().Audit
	log.Printf("%d hits checked, %d inconsistent: %.1f nines", a.Samples, a.Inconsistent, a.Nines())
}

func ExampleAuditStats_Nines() {
	fmt.Printf("%.0f\n", tiered.AuditStats{Samples: 100_000, Inconsistent: 10}.Nines())
	fmt.Printf("%.0f\n", tiered.AuditStats{Samples: 1_000}.Nines()) // none inconsistent: the most 1,000 samples show
	// Output:
	// 4
	// 3
}

// Options.Schema names the encoding of the values in L2. Here two services
// with their own User types, which encode alike, share one namespace's
// entries; without it each would load around the other's (the
// fingerprint would differ with the type names).
func ExampleOptions_schema() {
	ctx := context.Background()
	client, err := tiered.NewClient(ctx, tiered.Config{Redis: l2.Config{Addrs: []string{"127.0.0.1:6379"}}})
	if err != nil {
		log.Fatal(err)
	}
	defer client.Close()
	type User struct {
		ID   int    `json:"id"`
		Name string `json:"name"`
	}
	users, err := tiered.NewCache(client, "users", tiered.Options[User]{
		Schema: "user/v1", // change to user/v2 when the JSON changes incompatibly
	})
	if err != nil {
		log.Fatal(err)
	}
	_ = users
}
