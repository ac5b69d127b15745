package l2_test

import (
	"bytes"
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/strata-cache/strata/internal/redistest"
	"github.com/strata-cache/strata/l2"
	"go.uber.org/goleak"
)

// TestMain fails the package if a test leaves a goroutine behind, such as a
// Ring heartbeat of a store that Close did not stop.
func TestMain(m *testing.M) {
	// go-redis redials a dead server from a goroutine that sleeps a second
	// after each failure, past Close.
	goleak.VerifyTestMain(m, goleak.IgnoreAnyFunction("github.com/redis/go-redis/v9/internal/pool.(*ConnPool).tryDial"))
}

// testTimeout replaces l2.DefaultTimeout in tests: 100 ms is too tight for a
// loaded 2-core machine running with -race.
const testTimeout = 2 * time.Second

const ns = "users"

// openStore returns a store closed at the end of the test.
func openStore(t testing.TB, cfg l2.Config) *l2.Store {
	t.Helper()
	s, err := l2.Open(cfg)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

// unusedAddr is an address where nothing listens; Open does not dial.
const unusedAddr = "127.0.0.1:1"

func TestKey(t *testing.T) {
	tests := []struct {
		prefix, ns, key string
		want            string
	}{
		{"", "users", "42", "strata:users:{42}"},
		{"app", "users", "42", "app:users:{42}"},
		{"", "users", "}abc", "strata:users:{~}abc}"},
		{"", "users", "~}abc", "strata:users:{~~}abc}"},
		{"", "users", "~abc", "strata:users:{~~abc}"},
		{"", "users", "}", "strata:users:{~}}"},
		{"", "users", "~", "strata:users:{~~}"},
		{"", "users", "a}b", "strata:users:{a}b}"},
		{"", "users", "a~", "strata:users:{a~}"},
		{"", "users", "{x}", "strata:users:{{x}}"},
		{"", "orders", "a:b", "strata:orders:{a:b}"},
	}
	for _, tt := range tests {
		t.Run(tt.prefix+"/"+tt.ns+"/"+tt.key, func(t *testing.T) {
			s := openStore(t, l2.Config{Addrs: []string{unusedAddr}, Prefix: tt.prefix})
			if got := s.Key(tt.ns, tt.key); got != tt.want {
				t.Fatalf("Key(%q, %q) = %q, want %q", tt.ns, tt.key, got, tt.want)
			}
		})
	}
}

// trickyKeys are keys whose escaped forms could collide or break hash tags.
var trickyKeys = []string{
	"}abc", "~}abc", "~abc", "~~abc", "abc", "}", "~", "~}", "}~", "}}", "~~",
	"a}b", "a{b", "{a}", "{", "a:b", "with space", "ключ", "\x00",
}

func TestKeyIsOneToOne(t *testing.T) {
	s := openStore(t, l2.Config{Addrs: []string{unusedAddr}})
	seen := map[string]string{}
	for _, k := range trickyKeys {
		full := s.Key(ns, k)
		if other, ok := seen[full]; ok {
			t.Errorf("Key(%q) = Key(%q) = %q", k, other, full)
		}
		seen[full] = k
	}
}

func TestOpenValidation(t *testing.T) {
	client := redis.NewClient(&redis.Options{Addr: unusedAddr})
	t.Cleanup(func() { _ = client.Close() })
	addrs := []string{unusedAddr}
	tests := []struct {
		name    string
		cfg     l2.Config
		wantErr string // "" for success
	}{
		{"nothing set", l2.Config{}, "no Addrs"},
		{"Addrs and ClusterAddrs", l2.Config{Addrs: addrs, ClusterAddrs: addrs}, "only one"},
		{"Addrs and Client", l2.Config{Addrs: addrs, Client: client}, "only one"},
		{"ClusterAddrs and Client", l2.Config{ClusterAddrs: addrs, Client: client}, "only one"},
		{"all three", l2.Config{Addrs: addrs, ClusterAddrs: addrs, Client: client}, "only one"},
		{"prefix with {", l2.Config{Addrs: addrs, Prefix: "app{1"}, "prefix"},
		{"prefix with }", l2.Config{Addrs: addrs, Prefix: "app}"}, "prefix"},
		{"negative Timeout", l2.Config{Addrs: addrs, Timeout: -time.Second}, "negative"},
		{"negative DialTimeout", l2.Config{Addrs: addrs, DialTimeout: -time.Second}, "negative"},
		{"negative PoolSize", l2.Config{Addrs: addrs, PoolSize: -1}, "negative"},
		{"address without a port", l2.Config{Addrs: []string{"localhost"}}, "host:port"},
		{"cluster address without a port", l2.Config{ClusterAddrs: []string{unusedAddr, "[::1"}}, "host:port"},
		{"IPv6 address", l2.Config{Addrs: []string{"[::1]:1"}}, ""},
		{"one address", l2.Config{Addrs: addrs}, ""},
		{"several addresses", l2.Config{Addrs: []string{unusedAddr, "127.0.0.1:2"}}, ""},
		{"cluster", l2.Config{ClusterAddrs: addrs}, ""},
		{"client", l2.Config{Client: client}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := l2.Open(tt.cfg)
			if s != nil {
				defer s.Close()
			}
			switch {
			case tt.wantErr == "" && err != nil:
				t.Fatalf("Open: %v", err)
			case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)):
				t.Fatalf("Open error = %v, want one mentioning %q", err, tt.wantErr)
			case tt.wantErr != "" && s != nil:
				t.Fatal("Open returned a store along with an error")
			}
		})
	}
}

// deployment is one way to run Redis behind the store.
type deployment struct {
	name string
	// start returns the store's config, the nodes that hold keys and a
	// function returning the PTTL of a full Redis key, wherever it lives.
	start func(t *testing.T) (cfg l2.Config, nodes []*redistest.Server, pttl func(key string) time.Duration)
	// cluster enables the hash-slot checks.
	cluster bool
}

var deployments = []deployment{
	{name: "single node", start: func(t *testing.T) (l2.Config, []*redistest.Server, func(string) time.Duration) {
		srv := redistest.Start(t)
		nodes := []*redistest.Server{srv}
		return l2.Config{Addrs: addrsOf(nodes), Timeout: testTimeout}, nodes, func(k string) time.Duration {
			return pttlOnNodes(t, nodes, k)
		}
	}},
	{name: "ring of 3 shards", start: func(t *testing.T) (l2.Config, []*redistest.Server, func(string) time.Duration) {
		nodes := redistest.StartShards(t, 3)
		return l2.Config{Addrs: addrsOf(nodes), Timeout: testTimeout}, nodes, func(k string) time.Duration {
			return pttlOnNodes(t, nodes, k)
		}
	}},
	{name: "cluster of 3 masters", cluster: true, start: func(t *testing.T) (l2.Config, []*redistest.Server, func(string) time.Duration) {
		c := redistest.StartCluster(t, 3)
		cc := c.Client(t)
		return l2.Config{ClusterAddrs: c.Addrs(), Timeout: testTimeout}, c.Masters, func(k string) time.Duration {
			d, err := cc.PTTL(context.Background(), k).Result()
			if err != nil {
				t.Fatalf("PTTL %s: %v", k, err)
			}
			return d
		}
	}},
}

func addrsOf(nodes []*redistest.Server) []string {
	addrs := make([]string, len(nodes))
	for i, n := range nodes {
		addrs[i] = n.Addr()
	}
	return addrs
}

// pttlOnNodes returns the PTTL of key on the one independent node that holds
// it, or -2 ms (Redis's "no such key") if none does.
func pttlOnNodes(t *testing.T, nodes []*redistest.Server, key string) time.Duration {
	t.Helper()
	found, pttl := 0, int64(-2)
	for _, n := range nodes {
		if v := n.Do(t, "PTTL", key).(int64); v != -2 {
			found, pttl = found+1, v
		}
	}
	if found > 1 {
		t.Fatalf("key %s is on %d nodes", key, found)
	}
	return time.Duration(pttl) * time.Millisecond
}

// dbSizes returns the number of keys on each node.
func dbSizes(t *testing.T, nodes []*redistest.Server) []int64 {
	t.Helper()
	sizes := make([]int64, len(nodes))
	for i, n := range nodes {
		sizes[i] = n.Do(t, "DBSIZE").(int64)
	}
	return sizes
}

// manyKeys are spread over shards and slots, tricky ones included.
func manyKeys() []string {
	keys := append([]string(nil), trickyKeys...)
	for i := range 60 {
		keys = append(keys, fmt.Sprintf("user-%d", i))
	}
	return keys
}

func valueOf(key string) []byte { return []byte("value of " + key + "\x00\xff") }

func TestStore(t *testing.T) {
	for _, d := range deployments {
		t.Run(d.name, func(t *testing.T) {
			t.Parallel()
			cfg, nodes, pttl := d.start(t)
			s := openStore(t, cfg)
			testStore(t, s, nodes, pttl)
			if d.cluster {
				testClusterSlots(t, s, nodes[0])
			}
		})
	}
}

func testStore(t *testing.T, s *l2.Store, nodes []*redistest.Server, pttl func(string) time.Duration) {
	ctx := context.Background()
	t.Run("delete if", func(t *testing.T) {
		if err := s.Set(ctx, ns, "di", []byte("new"), time.Minute); err != nil {
			t.Fatal(err)
		}
		if ok, err := s.TryLease(ctx, ns, "di", "holder", time.Minute); !ok || err != nil {
			t.Fatalf("TryLease = %v, %v", ok, err)
		}
		if ok, err := s.DeleteIf(ctx, ns, "di", []byte("old")); ok || err != nil {
			t.Fatalf("DeleteIf(other bytes) = %v, %v; want false, nil", ok, err)
		}
		if b, err := s.Get(ctx, ns, "di"); string(b) != "new" || err != nil {
			t.Fatalf("after DeleteIf(other bytes): %q, %v; want the value kept", b, err)
		}
		if ok, err := s.DeleteIf(ctx, ns, "di", []byte("new")); !ok || err != nil {
			t.Fatalf("DeleteIf(its bytes) = %v, %v; want true, nil", ok, err)
		}
		if b, err := s.Get(ctx, ns, "di"); b != nil || err != nil {
			t.Fatalf("after DeleteIf(its bytes): %q, %v; want nothing", b, err)
		}
		if ok, err := s.TryLease(ctx, ns, "di", "other", time.Minute); ok || err != nil {
			t.Fatalf("TryLease after DeleteIf = %v, %v; want the holder's lease kept", ok, err)
		}
	})
	t.Run("get miss", func(t *testing.T) {
		b, err := s.Get(ctx, ns, "missing")
		if b != nil || err != nil {
			t.Fatalf("Get(missing) = %q, %v; want nil, nil", b, err)
		}
	})
	t.Run("set get round trip", func(t *testing.T) {
		for _, k := range trickyKeys {
			if err := s.Set(ctx, ns, k, valueOf(k), time.Minute); err != nil {
				t.Fatalf("Set(%q): %v", k, err)
			}
		}
		// Read back only after all are written: "}abc" and "~}abc" (and
		// the other escaped pairs) must not overwrite each other.
		for _, k := range trickyKeys {
			b, err := s.Get(ctx, ns, k)
			if err != nil || !bytes.Equal(b, valueOf(k)) {
				t.Errorf("Get(%q) = %q, %v; want %q", k, b, err, valueOf(k))
			}
		}
		b, err := s.Get(ctx, "other-ns", trickyKeys[0])
		if b != nil || err != nil {
			t.Errorf("Get in another namespace = %q, %v; want nil, nil", b, err)
		}
		if err := s.Delete(ctx, ns, trickyKeys...); err != nil {
			t.Fatalf("Delete: %v", err)
		}
	})
	t.Run("ttl", func(t *testing.T) {
		tests := []struct {
			ttl  time.Duration
			want time.Duration // as stored: rounded to the millisecond
		}{
			{10 * time.Second, 10 * time.Second},
			{2500 * time.Millisecond, 2500 * time.Millisecond},
			{1234600 * time.Microsecond, 1235 * time.Millisecond},
		}
		var items []l2.Item
		for i, tt := range tests {
			key := fmt.Sprintf("ttl-set-%d", i)
			if err := s.Set(ctx, ns, key, []byte("v"), tt.ttl); err != nil {
				t.Fatal(err)
			}
			items = append(items, l2.Item{Key: fmt.Sprintf("ttl-setmany-%d", i), Data: []byte("v"), TTL: tt.ttl})
		}
		if err := s.SetMany(ctx, ns, items); err != nil {
			t.Fatal(err)
		}
		for i, tt := range tests {
			for _, key := range []string{fmt.Sprintf("ttl-set-%d", i), items[i].Key} {
				// The slack covers the time since the write on a slow machine.
				if got := pttl(s.Key(ns, key)); got > tt.want || got < tt.want-time.Second {
					t.Errorf("%s: PTTL = %v, want at most %v and not much less", key, got, tt.want)
				}
			}
		}
	})
	t.Run("set many get many", func(t *testing.T) {
		keys := manyKeys()
		before := dbSizes(t, nodes)
		items := make([]l2.Item, len(keys))
		for i, k := range keys {
			items[i] = l2.Item{Key: k, Data: valueOf(k), TTL: time.Minute}
		}
		if err := s.SetMany(ctx, ns, items); err != nil {
			t.Fatalf("SetMany: %v", err)
		}
		// Interleave misses to check that results stay in key order.
		var query []string
		for _, k := range keys {
			query = append(query, k, "missing-"+k)
		}
		got, err := s.GetMany(ctx, ns, query)
		if err != nil || len(got) != len(query) {
			t.Fatalf("GetMany = %d results, %v; want %d, nil", len(got), err, len(query))
		}
		for i, k := range keys {
			if !bytes.Equal(got[2*i], valueOf(k)) || got[2*i+1] != nil {
				t.Errorf("GetMany: %q = %q, its miss = %q", k, got[2*i], got[2*i+1])
			}
		}
		// Every node got a share of the keys.
		after := dbSizes(t, nodes)
		var total int64
		for i := range nodes {
			added := after[i] - before[i]
			if added == 0 {
				t.Errorf("node %d got none of the keys (keys per node: %v)", i, after)
			}
			total += added
		}
		if total != int64(len(keys)) {
			t.Errorf("nodes hold %d new keys, want %d", total, len(keys))
		}

		// Deleting across shards and slots, in one call.
		if err := s.Delete(ctx, ns, keys...); err != nil {
			t.Fatalf("Delete: %v", err)
		}
		got, err = s.GetMany(ctx, ns, keys)
		if err != nil {
			t.Fatalf("GetMany after Delete: %v", err)
		}
		for i, b := range got {
			if b != nil {
				t.Errorf("%q = %q after Delete", keys[i], b)
			}
		}
		if after := dbSizes(t, nodes); fmt.Sprint(after) != fmt.Sprint(before) {
			t.Errorf("keys per node after Delete = %v, want %v", after, before)
		}
	})
	t.Run("delete one key", func(t *testing.T) {
		if err := s.Set(ctx, ns, "one", []byte("v"), time.Minute); err != nil {
			t.Fatal(err)
		}
		if err := s.Delete(ctx, ns, "one"); err != nil {
			t.Fatal(err)
		}
		if b, err := s.Get(ctx, ns, "one"); b != nil || err != nil {
			t.Fatalf("Get after Delete = %q, %v", b, err)
		}
	})
	t.Run("empty batches", func(t *testing.T) {
		got, err := s.GetMany(ctx, ns, nil)
		if len(got) != 0 || err != nil {
			t.Errorf("GetMany(nil) = %q, %v", got, err)
		}
		if err := s.SetMany(ctx, ns, nil); err != nil {
			t.Errorf("SetMany(nil) = %v", err)
		}
		if err := s.Delete(ctx, ns); err != nil {
			t.Errorf("Delete() = %v", err)
		}
	})
}

// testClusterSlots checks, with the cluster's own CLUSTER KEYSLOT, that a
// key's helper keys share its slot and that keys still spread over slots.
func testClusterSlots(t *testing.T, s *l2.Store, node *redistest.Server) {
	slot := func(key string) int64 { return node.Do(t, "CLUSTER", "KEYSLOT", key).(int64) }
	t.Run("helper keys share the slot", func(t *testing.T) {
		for _, k := range trickyKeys {
			full := s.Key(ns, k)
			if a, b := slot(full), slot(full+":lease"); a != b {
				t.Errorf("key %q: %s in slot %d, %s:lease in slot %d", k, full, a, full, b)
			}
		}
	})
	t.Run("keys spread over slots", func(t *testing.T) {
		slots := map[int64]bool{}
		for i := range 20 {
			slots[slot(s.Key(ns, fmt.Sprintf("user-%d", i)))] = true
		}
		if len(slots) < 10 {
			t.Errorf("20 keys use only %d slots", len(slots))
		}
	})
}

func TestRingGetManyWithShardDown(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	shards := redistest.StartShards(t, 3)
	s := openStore(t, l2.Config{Addrs: addrsOf(shards), Timeout: testTimeout})
	keys := manyKeys()
	items := make([]l2.Item, len(keys))
	for i, k := range keys {
		items[i] = l2.Item{Key: k, Data: valueOf(k), TTL: time.Minute}
	}
	if err := s.SetMany(ctx, ns, items); err != nil {
		t.Fatal(err)
	}
	owner := map[string]int{}
	for _, k := range keys {
		for i, sh := range shards {
			if sh.Do(t, "EXISTS", s.Key(ns, k)).(int64) == 1 {
				owner[k] = i
			}
		}
	}
	const dead = 0
	if sizes := dbSizes(t, shards); sizes[dead] == 0 {
		t.Fatalf("shard %d holds no key (keys per shard: %v)", dead, sizes)
	}

	// The Ring's heartbeat takes over a second to take the shard out, so
	// the reads below still route keys to it.
	shards[dead].Kill()
	got, err := s.GetMany(ctx, ns, keys)
	if err == nil {
		t.Error("GetMany with a shard down returned no error")
	}
	if len(got) != len(keys) {
		t.Fatalf("GetMany returned %d results for %d keys", len(got), len(keys))
	}
	for i, k := range keys {
		switch {
		case owner[k] == dead && got[i] != nil:
			t.Errorf("%q on the dead shard = %q, want nil", k, got[i])
		case owner[k] != dead && !bytes.Equal(got[i], valueOf(k)):
			t.Errorf("%q on live shard %d = %q, want %q", k, owner[k], got[i], valueOf(k))
		}
	}
}

func TestClose(t *testing.T) {
	ctx := context.Background()
	srv := redistest.Start(t)
	tests := []struct {
		name       string
		cfg        func(t *testing.T) (l2.Config, redis.UniversalClient)
		clientOpen bool // whether the client works after Store.Close
	}{
		{"user client stays open", func(t *testing.T) (l2.Config, redis.UniversalClient) {
			c := srv.Client(t)
			return l2.Config{Client: c}, c
		}, true},
		{"own client is closed", func(t *testing.T) (l2.Config, redis.UniversalClient) {
			return l2.Config{Addrs: []string{srv.Addr()}, Timeout: testTimeout}, nil
		}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, client := tt.cfg(t)
			s, err := l2.Open(cfg)
			if err != nil {
				t.Fatal(err)
			}
			if client == nil {
				client = s.Client()
			}
			if err := s.Set(ctx, ns, "k", []byte("v"), time.Minute); err != nil {
				t.Fatal(err)
			}
			if err := s.Close(); err != nil {
				t.Fatalf("Close: %v", err)
			}
			got, err := client.Get(ctx, s.Key(ns, "k")).Result()
			if tt.clientOpen && (err != nil || got != "v") {
				t.Fatalf("client after Close: GET = %q, %v; want it still usable", got, err)
			}
			if !tt.clientOpen && err == nil {
				t.Fatal("client still works after Close, want it closed")
			}
		})
	}
}
