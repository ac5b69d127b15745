package cluster_test

import (
	"fmt"
	"log"
	"slices"

	"github.com/strata-cache/strata/cluster"
)

func ExampleStart() {
	cfg := cluster.Config{
		BindAddr:  "127.0.0.1:0",
		SecretKey: []byte("0123456789abcdef"), // AES-128; share it among replicas.
		Profile:   cluster.ProfileLocal,
	}
	got := make(chan string, 1)
	a, err := cluster.Start(cfg, "replica-a", func(msg []byte) {
		select {
		case got <- string(msg):
		default: // A duplicate from gossip: already seen.
		}
	}, func() {
		// Messages were dropped: a real receiver would drop its local cache.
	})
	if err != nil {
		log.Fatal(err)
	}
	defer a.Close()

	cfg.Join = []string{a.Addr()}
	b, err := cluster.Start(cfg, "replica-b", func([]byte) {}, nil)
	if err != nil {
		log.Fatal(err)
	}
	defer b.Close()

	members := b.Members() // Start has joined: b knows a.
	slices.Sort(members)
	fmt.Println(members)
	if err := b.Broadcast([]byte("invalidate user:42")); err != nil {
		log.Fatal(err)
	}
	fmt.Println(<-got)
	// Output:
	// [replica-a replica-b]
	// invalidate user:42
}
