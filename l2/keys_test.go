package l2

import (
	"fmt"
	"testing"
)

// The key layout (keys.go) in one table: each cache key's value and lease
// keys, their shared hash tag (one Cluster slot, one Ring shard), the value
// key parsed back, and the server Server names routed as route routes it.
func TestKeyLayout(t *testing.T) {
	nodes := []*node{newNode("shard0", "a:1", breakerSettings{disabled: true}, false),
		newNode("shard1", "b:1", breakerSettings{disabled: true}, false),
		newNode("shard2", "c:1", breakerSettings{disabled: true}, false)}
	ring := &Store{prefix: "strata", topo: shardRing, set: newShardSet(nodes)}
	single := &Store{prefix: "strata"}
	for _, tc := range []struct{ key, value, tag string }{
		{"k1", "strata:users:{k1}", "k1"},
		{"a:b", "strata:users:{a:b}", "a:b"},
		{"}x", "strata:users:{~}x}", "~"},   // a leading '}' would end the tag at once
		{"~x", "strata:users:{~~x}", "~~x"}, // so '~' is escaped too: one-to-one
		{"a}b", "strata:users:{a}b}", "a"},  // a '}' inside cuts the tag there, as Redis does
		{"{a}", "strata:users:{{a}}", "{a"}, // the first '{' opens the tag
		{"x{y}z", "strata:users:{x{y}z}", "x{y"},
	} {
		value := single.Key("users", tc.key)
		lease := single.LeaseKey("users", tc.key)
		if value != tc.value || lease != tc.value+leaseSuffix {
			t.Errorf("%q: value %q, lease %q; want %q and its lease", tc.key, value, lease, tc.value)
		}
		if hashTag(value) != tc.tag || hashTag(lease) != tc.tag {
			t.Errorf("%q: hash tags %q and %q, want %q for both", tc.key, hashTag(value), hashTag(lease), tc.tag)
		}
		if ns, key, ok := single.parseKey(value); !ok || ns != "users" || key != tc.key {
			t.Errorf("parseKey(%q) = %q, %q, %v; want users, %q", value, ns, key, ok, tc.key)
		}
		if _, _, ok := single.parseKey(lease); ok {
			t.Errorf("parseKey(%q) took a lease for a value", lease)
		}
		_, at, _ := ring.route("users", tc.key)
		if got, want := ring.Server(tc.key), nodes[at].addr; got != want {
			t.Errorf("%q: Server = %s, route sends it to %s", tc.key, got, want)
		}
	}
	for i := range 100 { // Server agrees with route beyond the table
		k := fmt.Sprint("user:", i)
		if _, at, _ := ring.route("users", k); ring.Server(k) != nodes[at].addr {
			t.Errorf("%q: Server = %s, route sends it to %s", k, ring.Server(k), nodes[at].addr)
		}
	}
	for _, tc := range []struct{ got, want string }{
		{single.TagKey("users", "t"), "strata:users#tag:{t}"},
		{single.versionKey("users"), "strata:users#version"},
		{epochKey("strata"), "strata#epoch"},
		{outKey("strata", "shard1"), "strata#out:shard1"},
		{standInPrefix("strata", 7), "strata@7"},
	} {
		if tc.got != tc.want {
			t.Errorf("key %q, want %q", tc.got, tc.want)
		}
	}
	kept := dataKeys([]string{"strata:users:{k}", "strata:users:{k}:lease", "strata@3:users:{k}", "strata:users#tag:{t}", "strata:users#version"})
	if fmt.Sprint(kept) != "[strata:users:{k} strata:users:{k}:lease strata@3:users:{k}]" {
		t.Errorf("dataKeys kept %v, want the value and lease keys only", kept)
	}
}

func TestParseKey(t *testing.T) {
	s := &Store{prefix: "strata"}
	for _, tc := range []struct{ full, ns, key string }{
		{"strata:users:{k1}", "users", "k1"},
		{"strata:users#3:{k1}", "users", "k1"},
		{"strata@7:users:{~}x}", "users", "}x"},
		{"strata:users:{a:b}", "users", "a:b"},
	} {
		if ns, key, ok := s.parseKey(tc.full); !ok || ns != tc.ns || key != tc.key {
			t.Errorf("parseKey(%q) = %q, %q, %v", tc.full, ns, key, ok)
		}
	}
	for _, full := range []string{"strata:users:{k}:lease", "strata#epoch", "other:users:{k}", "strata:users#tag:{t}", "strata:users#2#tag:{t}"} {
		if _, _, ok := s.parseKey(full); ok {
			t.Errorf("parseKey(%q) accepted a key that is not a value key", full)
		}
	}
}

// A namespace at a version names keys that parse back to the namespace
// itself: a returning server's repairs are reported per namespace.
func TestNamespaceAt(t *testing.T) {
	single := &Store{prefix: "strata"}
	for _, tc := range []struct {
		v    uint64
		want string
	}{{0, "users"}, {1, "users#1"}, {1733100000000, "users#1733100000000"}} {
		at := NamespaceAt("users", tc.v)
		if at != tc.want {
			t.Errorf("NamespaceAt(users, %d) = %q, want %q", tc.v, at, tc.want)
		}
		if ns, key, ok := single.parseKey(single.Key(at, "k")); !ok || ns != "users" || key != "k" {
			t.Errorf("parseKey(Key(%q, k)) = %q, %q, %v; want users, k", at, ns, key, ok)
		}
	}
}
