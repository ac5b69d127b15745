package l2

import (
	"context"
	"strings"
	"testing"

	"github.com/redis/go-redis/v9"
)

// Open decides the topology once, from the Config and the dynamic type of a
// caller's client, and what the store does follows from it.
func TestTopologyDecidedAtOpen(t *testing.T) {
	const nowhere = "127.0.0.1:1" // nothing listens; Open does not wait for it
	node := redis.NewClient(&redis.Options{Addr: nowhere})
	ring := redis.NewRing(&redis.RingOptions{Addrs: map[string]string{"a": nowhere}})
	cluster := redis.NewClusterClient(&redis.ClusterOptions{Addrs: []string{nowhere}})
	t.Cleanup(func() { _, _, _ = node.Close(), ring.Close(), cluster.Close() })
	for _, tc := range []struct {
		name                        string
		cfg                         Config
		want                        topology
		heals, oneServer, getPerKey bool
		server                      string // Server's answer for any key
	}{
		{"one address", Config{Addrs: []string{nowhere}}, singleNode, true, true, false, nowhere},
		{"several addresses", Config{Addrs: []string{nowhere, "127.0.0.1:2"}}, shardRing, true, false, false, "127.0.0.1:"},
		{"cluster addresses", Config{ClusterAddrs: []string{nowhere}}, redisCluster, false, false, true, ""},
		{"a caller's Client", Config{Client: node}, callerNode, false, true, false, ""},
		{"a caller's Ring", Config{Client: ring}, callerRing, false, false, true, ""},
		{"a caller's ClusterClient", Config{Client: cluster}, redisCluster, false, false, true, ""},
		{"a caller's other client", Config{Client: struct{ redis.UniversalClient }{node}}, callerOther, false, false, true, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, err := Open(tc.cfg)
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			if s.topo != tc.want || s.Heals() != tc.heals || s.topo.oneServer() != tc.oneServer || s.topo.getPerKey() != tc.getPerKey {
				t.Errorf("topology %d, heals %v, one server %v, GET per key %v; want %d, %v, %v, %v",
					s.topo, s.Heals(), s.topo.oneServer(), s.topo.getPerKey(), tc.want, tc.heals, tc.oneServer, tc.getPerKey)
			}
			if got := s.Server("k"); !strings.HasPrefix(got, tc.server) || (got == "") != (tc.server == "") {
				t.Errorf("Server = %q, want %q", got, tc.server)
			}
			// Every topology lists its servers; only a healing one watches them.
			hs := s.Health()
			if len(hs) == 0 || hs[0].Watched != tc.heals || (s.set != nil) != (tc.want == shardRing) {
				t.Errorf("Health %v, shard set %v", hs, s.set != nil)
			}
		})
	}
	s, err := Open(Config{Client: struct{ redis.UniversalClient }{node}})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if _, err := s.DeleteMatching(context.Background(), "ns", "*"); err == nil || !strings.Contains(err.Error(), "pattern deletion needs") {
		t.Errorf("DeleteMatching on another client = %v, want the pattern deletion error", err)
	}
}
