package cluster_test

import (
	"fmt"
	"log"
	"slices"
	"time"

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

func ExampleNode_MemberStates() {
	cfg := cluster.Config{BindAddr: "127.0.0.1:0", Profile: cluster.ProfileLocal}
	a, err := cluster.Start(cfg, "replica-a", func([]byte) {}, nil)
	if err != nil {
		log.Fatal(err)
	}
	defer a.Close()
	cfg.Join = []string{a.Addr()}
	b, err := cluster.Start(cfg, "replica-b", func([]byte) {}, nil)
	if err != nil {
		log.Fatal(err)
	}
	_ = b.Close() // announces that it leaves

	// Wait (with a deadline) until a has heard of the departure.
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		if ms := a.MemberStates(); len(ms) == 2 && ms[1].State == cluster.MemberLeft {
			break
		}
	}
	for _, m := range a.MemberStates() {
		fmt.Println(m.Name, m.State)
	}
	fmt.Println(a.Conflicts().Count, "name conflicts")
	// Output:
	// replica-a alive
	// replica-b left
	// 0 name conflicts
}
