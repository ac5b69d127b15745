package l2_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/strata-cache/strata/l2"
)

// Most programs hand an l2.Config to tiered.Config.Redis rather than open a
// Store themselves. The examples that talk to Redis compile but do not run
// here; the others (keys, envelopes, errors) run without a server.

// Open connects to the deployment the Config names. A server that is down
// at start is not an error: it serves once it answers. This example needs
// Redis: it compiles but does not run here.
func ExampleOpen() {
	s, err := l2.Open(l2.Config{Addrs: []string{"localhost:6379"}})
	if err != nil {
		log.Fatal(err) // an invalid Config, never an unreachable server
	}
	defer s.Close()
	if err := s.Reachable(context.Background()); err != nil {
		log.Print("not reachable yet: ", err)
	}
}

// A Config names exactly one deployment: one address, several shards, a
// Redis Cluster, or a go-redis client of your own. These need Redis: the
// example compiles but does not run here.
func ExampleConfig() {
	single := l2.Config{Addrs: []string{"redis:6379"}}
	shards := l2.Config{
		Addrs:   []string{"redis-1:6379", "redis-2:6379", "redis-3:6379"}, // rendezvous hashing
		Prefix:  "myapp",                                                  // keys start "myapp:" instead of "strata:"
		Timeout: 50 * time.Millisecond,                                    // fail cache commands faster than the 100 ms default
	}
	cluster := l2.Config{ClusterAddrs: []string{"redis-a:6379", "redis-b:6379"}, Password: "secret"}
	own := l2.Config{Client: redis.NewClient(&redis.Options{Addr: "redis:6379"})} // Strata does not close it

	for _, cfg := range []l2.Config{single, shards, cluster, own} {
		s, err := l2.Open(cfg)
		if err != nil {
			log.Fatal(err)
		}
		_ = s.Close()
	}
}

func ExampleConfig_Enabled() {
	var none l2.Config // the zero Config: no L2, as tiered.Config.Redis
	one := l2.Config{Addrs: []string{"localhost:6379"}}
	fmt.Println(none.Enabled(), one.Enabled())

	_, err := l2.Open(none)
	fmt.Println(err)
	// Output:
	// false true
	// l2: no Addrs, ClusterAddrs or Client configured
}

// The Redis keys of a namespace's entries. A store on a caller's own client
// opens no connection until it sends a command, so this runs without a
// server.
func ExampleStore_Key() {
	rdb := redis.NewClient(&redis.Options{Addr: "localhost:6379"})
	defer rdb.Close()
	s, err := l2.Open(l2.Config{Client: rdb})
	if err != nil {
		log.Fatal(err)
	}
	defer s.Close()

	fmt.Println(s.Key("users", "42"))
	fmt.Println(s.LeaseKey("users", "42"))
	fmt.Println(s.Key(l2.NamespaceAt("users", 3), "42")) // after a Clear
	fmt.Println(s.TagKey("users", "team:7"))
	fmt.Println(s.StreamKey("users"))
	// Output:
	// strata:users:{42}
	// strata:users:{42}:lease
	// strata:users#3:{42}
	// strata:users#tag:{team:7}
	// strata:users#writes
}

// NamespaceAt is the name under which a namespace's keys live at a version:
// a Clear moves the version, so every older key is out of reach at once.
func ExampleNamespaceAt() {
	fmt.Println(l2.NamespaceAt("users", 0))
	fmt.Println(l2.NamespaceAt("users", 3))
	// Output:
	// users
	// users#3
}

// Reading what Strata cached for a key: find the namespace's version, read
// the entry, decode its envelope. The payload is the value as the cache's
// codec encoded it (JSON by default). This example needs Redis: it compiles
// but does not run here.
func ExampleStore_Get() {
	ctx := context.Background()
	s, err := l2.Open(l2.Config{Addrs: []string{"localhost:6379"}})
	if err != nil {
		log.Fatal(err)
	}
	defer s.Close()

	v, err := s.NamespaceVersion(ctx, "users")
	if err != nil {
		log.Fatal(err)
	}
	raw, err := s.Get(ctx, l2.NamespaceAt("users", v), "42")
	switch {
	case err != nil:
		log.Fatal(err)
	case raw == nil:
		fmt.Println("not cached")
		return
	}
	e, err := l2.Decode(raw)
	if err != nil {
		log.Fatal(err) // ErrCorrupt: not written by Strata
	}
	fmt.Printf("%s fresh until %v, not found: %t\n", e.Payload, time.Unix(0, e.FreshUntil), e.Negative)
}

// WriteSeeing stores an entry and ends any load lease on the key, in one
// step, so a loader that read the source before this write cannot fill its
// older data afterwards. This example needs Redis: it compiles but does not
// run here.
func ExampleStore_WriteSeeing() {
	ctx := context.Background()
	s, err := l2.Open(l2.Config{Addrs: []string{"localhost:6379"}})
	if err != nil {
		log.Fatal(err)
	}
	defer s.Close()

	now := time.Now()
	e := l2.Envelope{
		Version:    1,
		Created:    now.UnixNano(),
		FreshUntil: now.Add(5 * time.Minute).UnixNano(),
		StaleUntil: now.Add(5 * time.Minute).UnixNano(),
		Payload:    []byte(`{"name":"Ada"}`),
	}
	// base "users": on a single node the namespace's version is read in the
	// same step; seen reports whether it was.
	version, seen, err := s.WriteSeeing(ctx, "users", "42", e.Encode(), 5*time.Minute, "users")
	if err != nil {
		log.Fatal(err)
	}
	if seen && version != 0 {
		fmt.Println("a Clear moved the namespace to version", version, "meanwhile: write there too")
	}
}

// The load lease makes one caller in the whole cluster load a missing key:
// GetOrLease grants it to the first, Fill stores the result only if the
// lease still holds (no write or delete came in between), and Release gives
// it up when the load failed. This example needs Redis: it compiles but
// does not run here.
func ExampleStore_GetOrLease() {
	ctx := context.Background()
	s, err := l2.Open(l2.Config{Addrs: []string{"localhost:6379"}})
	if err != nil {
		log.Fatal(err)
	}
	defer s.Close()
	const token = "replica-1:0001" // unique per load
	loadFromDB := func() ([]byte, error) { return []byte(`{"name":"Ada"}`), nil }

	raw, granted, err := s.GetOrLease(ctx, "users", "42", token, 5*time.Second)
	switch {
	case err != nil:
		log.Fatal(err)
	case raw != nil:
		fmt.Println("cached")
	case !granted:
		fmt.Println("another caller is loading it: wait and read again")
	default:
		payload, err := loadFromDB()
		if err != nil {
			_ = s.Release(ctx, "users", "42", token)
			log.Fatal(err)
		}
		now := time.Now()
		e := l2.Envelope{Created: now.UnixNano(), FreshUntil: now.Add(time.Minute).UnixNano(),
			StaleUntil: now.Add(time.Minute).UnixNano(), Payload: payload}
		stored, err := s.Fill(ctx, "users", "42", token, e.Encode(), time.Minute)
		if err != nil {
			log.Fatal(err)
		}
		fmt.Println("filled:", stored) // false: a write came first; do not cache
	}
}

// GetMany reads many keys in one round trip per shard. A nil slice is a
// miss; on a partial failure the keys read are returned with the error,
// and KeyFailed tells a failed key from a miss. This example needs Redis:
// it compiles but does not run here.
func ExampleStore_GetMany() {
	ctx := context.Background()
	s, err := l2.Open(l2.Config{Addrs: []string{"redis-1:6379", "redis-2:6379"}})
	if err != nil {
		log.Fatal(err)
	}
	defer s.Close()

	keys := []string{"42", "43", "44"}
	values, err := s.GetMany(ctx, "users", keys)
	failed := l2.KeyFailed(err)
	for i, k := range keys {
		switch {
		case failed(i):
			fmt.Println(k, "unreadable now: ask the source")
		case values[i] == nil:
			fmt.Println(k, "not cached")
		default:
			fmt.Println(k, len(values[i]), "bytes") // a view of the reply: do not write into it
		}
	}
}

// Delete removes keys with their load leases. When only some deletes
// fail, KeyFailed tells which. This example needs Redis: it compiles but
// does not run here.
func ExampleStore_Delete() {
	ctx := context.Background()
	s, err := l2.Open(l2.Config{Addrs: []string{"redis-1:6379", "redis-2:6379"}})
	if err != nil {
		log.Fatal(err)
	}
	defer s.Close()

	keys := []string{"42", "43", "44"}
	if err := s.Delete(ctx, "users", keys...); err != nil {
		failed := l2.KeyFailed(err)
		for i, k := range keys {
			if failed(i) {
				fmt.Println("not deleted:", k)
			}
		}
	}
}

// KeyFailed reads the error of a multi-key command: a *PartialError names
// the keys that failed; any other error fails them all.
func ExampleKeyFailed() {
	partial := &l2.PartialError{Failed: []bool{false, true, false}, Err: l2.ErrUnavailable}
	failed := l2.KeyFailed(partial)
	for i, k := range []string{"42", "43", "44"} {
		fmt.Println(k, failed(i))
	}
	fmt.Println(errors.Is(partial, l2.ErrUnavailable))
	fmt.Println(l2.KeyFailed(nil)(0), l2.KeyFailed(errors.New("timeout"))(0))
	// Output:
	// 42 false
	// 43 true
	// 44 false
	// true
	// false true
}

// DeleteMatching removes a namespace's keys matching a Redis glob, on every
// shard or cluster master. This example needs Redis: it compiles but does
// not run here.
func ExampleStore_DeleteMatching() {
	ctx := context.Background()
	s, err := l2.Open(l2.Config{Addrs: []string{"localhost:6379"}})
	if err != nil {
		log.Fatal(err)
	}
	defer s.Close()

	n, err := s.DeleteMatching(ctx, "carts", "eu:*")
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("deleted", n, "keys")
}

// BumpVersion is how a Clear makes a whole namespace unreachable at once:
// readers key by NamespaceAt(ns, version). This example needs Redis: it
// compiles but does not run here.
func ExampleStore_BumpVersion() {
	ctx := context.Background()
	s, err := l2.Open(l2.Config{Addrs: []string{"localhost:6379"}})
	if err != nil {
		log.Fatal(err)
	}
	defer s.Close()

	before, err := s.NamespaceVersion(ctx, "flags")
	if err != nil {
		log.Fatal(err)
	}
	after, err := s.BumpVersion(ctx, "flags")
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(l2.NamespaceAt("flags", before), "->", l2.NamespaceAt("flags", after))
}

// Health reports each server: serving or not, why, and its breaker. A
// probe endpoint or dashboard reads it; it makes no round trip (except for
// a caller's own client). This example needs Redis: it compiles but does
// not run here.
func ExampleStore_Health() {
	s, err := l2.Open(l2.Config{Addrs: []string{"redis-1:6379", "redis-2:6379"}})
	if err != nil {
		log.Fatal(err)
	}
	defer s.Close()

	for _, h := range s.Health() {
		if !h.Serving {
			fmt.Printf("%s out of service: %s (breaker %s, dirty %t)\n", h.Addr, h.Reason, h.Breaker, h.Dirty)
		}
	}
}

// Reachable PINGs every server: a startup or readiness check that names
// each server that did not answer. This example needs Redis: it compiles
// but does not run here.
func ExampleStore_Reachable() {
	s, err := l2.Open(l2.Config{ClusterAddrs: []string{"redis-a:6379", "redis-b:6379"}})
	if err != nil {
		log.Fatal(err)
	}
	defer s.Close()

	if err := s.Reachable(context.Background()); err != nil {
		log.Fatal(err)
	}
}

// Streams lists a namespace's write-behind streams, one per Ring shard:
// Backlog tells how many writes wait there to be flushed to the database.
// "strata-flushers" is the consumer group of tiered's flushers. This
// example needs Redis: it compiles but does not run here.
func ExampleStore_Streams() {
	ctx := context.Background()
	s, err := l2.Open(l2.Config{Addrs: []string{"redis-1:6379", "redis-2:6379"}})
	if err != nil {
		log.Fatal(err)
	}
	defer s.Close()

	for _, st := range s.Streams("users") {
		pending, inFlight, err := st.Backlog(ctx, "strata-flushers")
		if err != nil {
			log.Fatal(err)
		}
		fmt.Printf("%s: %d writes wait, %d being flushed\n", st.Server, pending, inFlight)
	}
}

// Unguarded marks a context whose commands pass an open breaker and an
// out-of-service fence: for a background repair that must land as soon as
// the server answers again. It waits out each timeout itself, off any
// caller's path. This example needs Redis: it compiles but does not run
// here.
func ExampleUnguarded() {
	s, err := l2.Open(l2.Config{Addrs: []string{"localhost:6379"}})
	if err != nil {
		log.Fatal(err)
	}
	defer s.Close()

	ctx := l2.Unguarded(context.Background())
	for attempt := 0; attempt < 10; attempt++ {
		if err := s.Delete(ctx, "users", "42"); err == nil {
			return
		}
		time.Sleep(time.Second)
	}
	log.Print("delete of users/42 did not land")
}

// logWatcher logs what the health watch changes.
type logWatcher struct{}

func (logWatcher) RouteChanged(reason string) {
	log.Print("L2 routing changed, drop local copies: ", reason)
}

func (logWatcher) Repaired(ns string, keys []string) {
	log.Printf("repaired %d keys of %s on a returning server", len(keys), ns)
}

// OpenWatched tells a Watcher of the routing changes and repairs the health
// watch of a single node or shards makes; a program that keeps its own copy
// of L2 data (as tiered's L1) drops it then. This example needs Redis: it
// compiles but does not run here.
func ExampleOpenWatched() {
	s, err := l2.OpenWatched(l2.Config{Addrs: []string{"redis-1:6379", "redis-2:6379"}}, logWatcher{})
	if err != nil {
		log.Fatal(err)
	}
	defer s.Close()
}

// An Envelope is an entry as Strata stores it in Redis. Times keep
// millisecond precision.
func ExampleEnvelope_Encode() {
	created := time.Date(2025, 1, 1, 12, 0, 0, 0, time.UTC)
	e := l2.Envelope{
		Version:    7,
		Created:    created.UnixNano(),
		FreshUntil: created.Add(5 * time.Minute).UnixNano(),
		StaleUntil: created.Add(6 * time.Minute).UnixNano(), // a minute of stale-while-revalidate
		Tags:       []string{"team:7"},
		Payload:    []byte(`{"name":"Ada"}`),
	}
	b := e.Encode()
	fmt.Printf("% x\n", b[:4]) // magic, format, flags (FlagTags)

	got, err := l2.Decode(b)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(got.Version, string(got.Payload), got.Tags)
	fmt.Println(time.Unix(0, got.FreshUntil).UTC().Format(time.TimeOnly))
	// Output:
	// 53 a7 01 04
	// 7 {"name":"Ada"} [team:7]
	// 12:05:00
}

// Decode rejects anything that is not an intact envelope, a flipped bit
// included (the CRC-32C catches it): a reader treats that as a miss.
func ExampleDecode() {
	b := (&l2.Envelope{Version: 1, Payload: []byte("Ada")}).Encode()
	_, err := l2.Decode(b)
	fmt.Println(err)

	b[len(b)-5] ^= 1 // one bit of the payload
	_, err = l2.Decode(b)
	fmt.Println(errors.Is(err, l2.ErrCorrupt))

	_, err = l2.Decode([]byte("Ada")) // written by someone else
	fmt.Println(errors.Is(err, l2.ErrCorrupt))
	// Output:
	// <nil>
	// true
	// true
}
