package l1_test

import (
	"fmt"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/strata-cache/strata/l1"
	"go.uber.org/goleak"
)

// TestMain fails the package if any test leaves a goroutine behind: every
// cache is closed through t.Cleanup, so a leak means Close missed one.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// newCache returns a cache closed at the end of the test.
func newCache(t testing.TB, cfg l1.Config) *l1.Cache[string] {
	t.Helper()
	c, err := l1.New[string](cfg)
	if err != nil {
		t.Fatalf("New(%+v): %v", cfg, err)
	}
	t.Cleanup(c.Close)
	return c
}

// entry returns an entry for key that stays fresh for 10 s after now.
func entry(key, value string, now int64) *l1.Entry[string] {
	return &l1.Entry[string]{
		Key:        key,
		Value:      value,
		FreshUntil: now + int64(10*time.Second),
		StaleUntil: now + int64(20*time.Second),
		Size:       len(value),
	}
}

func now() int64 { return time.Now().UnixNano() }

// wantHit fails unless key is cached with value.
func wantHit(t testing.TB, c *l1.Cache[string], key, value string) {
	t.Helper()
	e, ok := c.Get(key)
	switch {
	case !ok:
		t.Fatalf("Get(%q) missed, want %q", key, value)
	case e.Key != key || e.Value != value:
		t.Fatalf("Get(%q) = {Key: %q, Value: %q}, want value %q", key, e.Key, e.Value, value)
	}
}

// wantMiss fails if key is cached.
func wantMiss(t testing.TB, c *l1.Cache[string], key string) {
	t.Helper()
	if e, ok := c.Get(key); ok {
		t.Fatalf("Get(%q) = {Key: %q, Value: %q}, want a miss", key, e.Key, e.Value)
	}
}

func TestSetIsVisibleImmediately(t *testing.T) {
	forEachEngine(t, func(t *testing.T, engine l1.Engine) {
		const keysPerWriter = 5000
		tests := []struct {
			name    string
			writers int
		}{
			{"one writer", 1},
			{"concurrent writers", 4},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				c := newCache(t, l1.Config{Engine: engine})
				var wg sync.WaitGroup
				for w := range tt.writers {
					wg.Go(func() {
						for i := range keysPerWriter {
							key := fmt.Sprintf("w%d-k%d", w, i)
							c.Set(entry(key, "v"+key, now()), now())
							if e, ok := c.Get(key); !ok || e.Value != "v"+key {
								t.Errorf("Get(%q) right after Set = %v, %v; want the entry", key, e, ok)
								return
							}
						}
					})
				}
				wg.Wait()
				// Nothing was evicted behind our back either: the cache is far
				// from full.
				for w := range tt.writers {
					for i := range keysPerWriter {
						key := fmt.Sprintf("w%d-k%d", w, i)
						wantHit(t, c, key, "v"+key)
					}
				}
			})
		}
	})
}

func TestDeleteIsImmediate(t *testing.T) {
	forEachEngine(t, func(t *testing.T, engine l1.Engine) {
		const n = 3000
		tests := []struct {
			name string
			run  func(t *testing.T, c *l1.Cache[string]) (deleted []string)
		}{
			{"interleaved set and delete of fresh keys", func(t *testing.T, c *l1.Cache[string]) []string {
				var deleted []string
				for i := range n {
					key := "k" + strconv.Itoa(i)
					c.Set(entry(key, "v", now()), now())
					wantHit(t, c, key, "v")
					c.Delete(key)
					wantMiss(t, c, key)
					deleted = append(deleted, key)
				}
				return deleted
			}},
			{"delete right after set without reading", func(t *testing.T, c *l1.Cache[string]) []string {
				var deleted []string
				for i := range n {
					key := "k" + strconv.Itoa(i)
					c.Set(entry(key, "v", now()), now())
					c.Delete(key)
					wantMiss(t, c, key)
					deleted = append(deleted, key)
				}
				return deleted
			}},
			{"delete several keys in one call", func(t *testing.T, c *l1.Cache[string]) []string {
				keys := make([]string, 100)
				for i := range keys {
					keys[i] = "k" + strconv.Itoa(i)
					c.Set(entry(keys[i], "v", now()), now())
				}
				c.Delete(keys[:50]...)
				for _, k := range keys[:50] {
					wantMiss(t, c, k)
				}
				for _, k := range keys[50:] {
					wantHit(t, c, k, "v")
				}
				return keys[:50]
			}},
			{"delete of a missing key is harmless", func(t *testing.T, c *l1.Cache[string]) []string {
				c.Delete("never-set")
				wantMiss(t, c, "never-set")
				c.Set(entry("never-set", "v", now()), now())
				wantHit(t, c, "never-set", "v")
				c.Delete("never-set")
				return []string{"never-set"}
			}},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				c := newCache(t, l1.Config{Engine: engine})
				deleted := tt.run(t, c)
				// A deleted key never comes back, e.g. from a Set still queued
				// inside ristretto.
				for _, k := range deleted {
					wantMiss(t, c, k)
				}
			})
		}
	})
}

func TestOverwriteIsImmediate(t *testing.T) {
	forEachEngine(t, func(t *testing.T, engine l1.Engine) {
		tests := []struct {
			name   string
			values []string
		}{
			{"two versions", []string{"v1", "v2"}},
			{"many versions", []string{"v1", "v2", "v3", "v4", "v5"}},
			{"same value again", []string{"v1", "v1"}},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				c := newCache(t, l1.Config{Engine: engine})
				for i := range 2000 {
					key := "k" + strconv.Itoa(i)
					for _, v := range tt.values {
						c.Set(entry(key, v, now()), now())
						wantHit(t, c, key, v)
					}
				}
			})
		}
	})
}

// TestOversizedEntryNeverShowsOlderCopy: ristretto rejects an entry costlier
// than the whole cache; a Get must then show the new entry or nothing, never
// the copy the rejected Set replaced.
func TestOversizedEntryNeverShowsOlderCopy(t *testing.T) {
	forEachEngine(t, func(t *testing.T, engine l1.Engine) {
		c := newCache(t, l1.Config{Engine: engine, MaxCost: 1 << 10})
		big := entry("k", "new", now())
		big.Size = 1 << 20

		c.Set(big, now())
		wantMiss(t, c, "k")

		c.Set(entry("k", "old", now()), now())
		wantHit(t, c, "k", "old")
		big = entry("k", "new", now())
		big.Size = 1 << 20
		c.Set(big, now())
		if e, ok := c.Get("k"); ok && e.Value != "new" {
			t.Fatalf("Get after oversized Set = %q, want %q or a miss", e.Value, "new")
		}
	})
}

func TestHashCollisionIsAMiss(t *testing.T) {
	forEachEngine(t, func(t *testing.T, engine l1.Engine) {
		type op struct {
			set  string // key to Set (its value is "v"+key), or ""
			get  string // key to Get
			want string // expected value, "" for a miss
		}
		tests := []struct {
			name string
			ops  []op
		}{
			{"other key after set", []op{
				{set: "a", get: "b"},
				{get: "a", want: "va"},
			}},
			{"first key after second set", []op{
				{set: "a", get: "a", want: "va"},
				{set: "b", get: "a"},
				{get: "b", want: "vb"},
			}},
			{"first key set again", []op{
				{set: "a"},
				{set: "b"},
				{set: "a", get: "a", want: "va"},
				{get: "b"},
			}},
			{"many colliding keys", func() []op {
				var ops []op
				for i := range 50 {
					k, prev := "k"+strconv.Itoa(i), "k"+strconv.Itoa(i-1)
					ops = append(ops, op{set: k, get: k, want: "v" + k}, op{get: prev})
				}
				return ops
			}()},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				// Every key hashes alike, so ristretto cannot tell them apart
				// (otter ignores the hash: the test shows it never mixes keys).
				c := newCache(t, l1.WithKeyToHash(l1.Config{Engine: engine}, func(string) (uint64, uint64) { return 1, 1 }))
				for i, o := range tt.ops {
					if o.set != "" {
						c.Set(entry(o.set, "v"+o.set, now()), now())
					}
					e, ok := c.Get(o.get)
					switch {
					case ok && (e.Key != o.get || e.Value != "v"+o.get):
						t.Fatalf("op %d: Get(%q) = entry of %q (%q), another key's", i, o.get, e.Key, e.Value)
					case engine == l1.Otter:
						// Otter compares whole keys: no collision to show.
					case o.want == "" && ok:
						t.Fatalf("op %d: Get(%q) = entry of %q (%q), want a miss", i, o.get, e.Key, e.Value)
					case o.want != "" && (!ok || e.Value != o.want || e.Key != o.get):
						t.Fatalf("op %d: Get(%q) = %v, %v; want %q", i, o.get, e, ok, o.want)
					}
				}
			})
		}
	})
}

func TestSetCapsFreshnessAtMaxTTL(t *testing.T) {
	forEachEngine(t, func(t *testing.T, engine l1.Engine) {
		const maxTTL = time.Minute
		sec := int64(time.Second)
		tests := []struct {
			name                 string
			fresh, stale         int64 // offsets from now
			wantFresh, wantStale int64 // offsets from now
		}{
			{"both beyond MaxTTL", 3600 * sec, 7200 * sec, int64(maxTTL), int64(maxTTL)},
			{"stale beyond MaxTTL", 10 * sec, 3600 * sec, 10 * sec, int64(maxTTL)},
			{"both within MaxTTL", 10 * sec, 30 * sec, 10 * sec, 30 * sec},
			{"exactly MaxTTL", int64(maxTTL), int64(maxTTL), int64(maxTTL), int64(maxTTL)},
			{"stale before fresh is raised to fresh", 10 * sec, 5 * sec, 10 * sec, 10 * sec},
			{"stale only", -sec, 30 * sec, -sec, 30 * sec},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				c := newCache(t, l1.Config{Engine: engine, MaxTTL: maxTTL})
				n := now()
				in := &l1.Entry[string]{Key: "k", Value: "v", FreshUntil: n + tt.fresh, StaleUntil: n + tt.stale}
				c.Set(in, n)
				e, ok := c.Get("k")
				if !ok {
					t.Fatal("Get missed")
				}
				if got, want := e.LocalFreshUntil-n, tt.wantFresh; got != want {
					t.Errorf("FreshUntil = now%+v, want now%+v", time.Duration(got), time.Duration(want))
				}
				if got, want := e.LocalStaleUntil-n, tt.wantStale; got != want {
					t.Errorf("StaleUntil = now%+v, want now%+v", time.Duration(got), time.Duration(want))
				}
			})
		}
	})
}

func TestExpiredEntryIsNotStored(t *testing.T) {
	forEachEngine(t, func(t *testing.T, engine l1.Engine) {
		sec := int64(time.Second)
		tests := []struct {
			name         string
			fresh, stale int64 // offsets from now, or absolute times if absolute
			absolute     bool
		}{
			{"stale until now", -sec, 0, false},
			{"stale until the past", -2 * sec, -sec, false},
			{"fresh and stale at now", 0, 0, false},
			{"zero times", 0, 0, true},
		}
		for _, tt := range tests {
			for _, older := range []bool{false, true} {
				t.Run(fmt.Sprintf("%s/older copy %v", tt.name, older), func(t *testing.T) {
					c := newCache(t, l1.Config{Engine: engine})
					if older {
						c.Set(entry("k", "old", now()), now())
						wantHit(t, c, "k", "old")
					}
					n := now()
					base := n
					if tt.absolute {
						base = 0
					}
					c.Set(&l1.Entry[string]{Key: "k", Value: "new", FreshUntil: base + tt.fresh, StaleUntil: base + tt.stale}, n)
					wantMiss(t, c, "k")
				})
			}
		}
	})
}

func TestClear(t *testing.T) {
	forEachEngine(t, func(t *testing.T, engine l1.Engine) {
		c := newCache(t, l1.Config{Engine: engine})
		for i := range 100 {
			c.Set(entry("k"+strconv.Itoa(i), "v", now()), now())
		}
		c.Clear()
		for i := range 100 {
			wantMiss(t, c, "k"+strconv.Itoa(i))
		}
		c.Set(entry("k0", "again", now()), now())
		wantHit(t, c, "k0", "again")
	})
}

func TestNewValidatesConfig(t *testing.T) {
	forEachEngine(t, func(t *testing.T, engine l1.Engine) {
		tests := []struct {
			name    string
			cfg     l1.Config
			wantErr bool
		}{
			{"zero config", l1.Config{Engine: engine}, false},
			{"explicit values", l1.Config{Engine: engine, MaxCost: 1 << 20, MaxTTL: time.Second, NumCounters: 10_000}, false},
			{"negative MaxCost", l1.Config{Engine: engine, MaxCost: -1}, true},
			{"negative MaxTTL", l1.Config{Engine: engine, MaxTTL: -time.Second}, true},
			{"negative NumCounters", l1.Config{Engine: engine, NumCounters: -1}, true},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				c, err := l1.New[string](tt.cfg)
				if c != nil {
					defer c.Close()
				}
				if (err != nil) != tt.wantErr {
					t.Fatalf("New(%+v) error = %v, want error: %v", tt.cfg, err, tt.wantErr)
				}
				if tt.wantErr && c != nil {
					t.Fatal("New returned a cache along with an error")
				}
			})
		}
	})
}

func TestMaxTTL(t *testing.T) {
	forEachEngine(t, func(t *testing.T, engine l1.Engine) {
		tests := []struct {
			name string
			cfg  l1.Config
			want time.Duration
		}{
			{"default", l1.Config{Engine: engine}, l1.DefaultMaxTTL},
			{"set", l1.Config{Engine: engine, MaxTTL: 5 * time.Second}, 5 * time.Second},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				if got := newCache(t, tt.cfg).MaxTTL(); got != tt.want {
					t.Fatalf("MaxTTL() = %v, want %v", got, tt.want)
				}
			})
		}
	})
}

func TestCloseStopsGoroutines(t *testing.T) {
	forEachEngine(t, func(t *testing.T, engine l1.Engine) {
		// Runs alone (no t.Parallel in this package), so any goroutine left
		// besides the test's own is the cache's.
		c, err := l1.New[string](l1.Config{Engine: engine})
		if err != nil {
			t.Fatal(err)
		}
		c.Set(entry("k", "v", now()), now())
		c.Delete("k")
		c.Clear() // restarts ristretto's worker; Close must stop the new one
		c.Close()
		c.Close() // idempotent
		goleak.VerifyNone(t)
	})
}

func TestTagIndexFollowsTheCache(t *testing.T) {
	forEachEngine(t, func(t *testing.T, engine l1.Engine) {
		c := newCache(t, l1.Config{Engine: engine})
		n := now()
		fresh := n + int64(time.Minute)
		set := func(key string, tags ...string) {
			c.Set(&l1.Entry[string]{Key: key, Value: "v", FreshUntil: fresh, StaleUntil: fresh, Tags: tags}, n)
		}
		set("a", "t1", "t2")
		set("b", "t1")
		if got := sortedKeys(c.KeysWithTag("t1")); len(got) != 2 {
			t.Fatalf("t1 = %v, want a and b", got)
		}
		set("a", "t3") // overwritten with other tags
		if got := c.KeysWithTag("t2"); len(got) != 0 {
			t.Errorf("t2 = %v after a lost the tag", got)
		}
		if got := c.KeysWithTag("t3"); len(got) != 1 {
			t.Errorf("t3 = %v, want a", got)
		}
		c.Delete("b")
		if got := c.KeysWithTag("t1"); len(got) != 0 {
			t.Errorf("t1 = %v after b was deleted", got)
		}
		c.Clear()
		if got := c.KeysWithTag("t3"); len(got) != 0 {
			t.Errorf("t3 = %v after Clear", got)
		}
	})
}

func sortedKeys(keys []string) []string {
	slices.Sort(keys)
	return keys
}

// engines are the engines every test runs on: the l1 suite is theirs.
var engines = []l1.Engine{l1.Ristretto, l1.Otter}

// forEachEngine runs test once per engine, as a subtest named after it.
func forEachEngine(t *testing.T, test func(t *testing.T, engine l1.Engine)) {
	t.Helper()
	for _, e := range engines {
		t.Run(e.String(), func(t *testing.T) { test(t, e) })
	}
}
