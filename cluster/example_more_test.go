package cluster_test

import (
	"errors"
	"fmt"
	"log"
	"log/slog"
	"os"
	"time"

	"github.com/strata-cache/strata/cluster"
)

// A production Config: listen on every interface at memberlist's port,
// advertise the pod's address, join through a headless service's names,
// encrypt the gossip, and start alone if no seed answers yet. Starting it
// needs the network: this example compiles but does not run here.
func ExampleConfig() {
	cfg := cluster.Config{
		BindAddr:      "0.0.0.0:7946",
		AdvertiseAddr: os.Getenv("POD_IP") + ":7946",
		Join:          []string{"api-0.api:7946", "api-1.api:7946", "api-2.api:7946"},
		SecretKey:     []byte(os.Getenv("GOSSIP_KEY")), // 16, 24 or 32 bytes, shared by every replica
		KeepJoining:   true,                            // the first replica of a rollout finds no seed
		Logger:        slog.Default(),
	}
	node, err := cluster.Start(cfg, os.Getenv("POD_NAME"), func(msg []byte) {}, nil)
	if err != nil {
		log.Fatal(err)
	}
	defer node.Close()
}

// SendTo reaches one member by name, without the gossip copy a Broadcast
// also sends.
func ExampleNode_SendTo() {
	cfg := cluster.Config{BindAddr: "127.0.0.1:0", Profile: cluster.ProfileLocal}
	got := make(chan string, 1)
	a, err := cluster.Start(cfg, "replica-a", func(msg []byte) { got <- string(msg) }, nil)
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

	if err := b.SendTo("replica-a", []byte("ack 17")); err != nil {
		log.Fatal(err)
	}
	fmt.Println(<-got)
	err = b.SendTo("replica-z", []byte("ack 17"))
	fmt.Println(errors.Is(err, cluster.ErrUnknownMember))
	// Output:
	// ack 17
	// true
}

// OnMembership hears joins and departures as they happen. Register it
// before reading Members: earlier events are not replayed.
func ExampleNode_OnMembership() {
	cfg := cluster.Config{BindAddr: "127.0.0.1:0", Profile: cluster.ProfileLocal}
	a, err := cluster.Start(cfg, "replica-a", func([]byte) {}, nil)
	if err != nil {
		log.Fatal(err)
	}
	defer a.Close()
	events := make(chan string, 4)
	a.OnMembership(func(name string, joined bool) {
		if joined {
			events <- name + " joined"
		} else {
			events <- name + " left"
		}
	})

	cfg.Join = []string{a.Addr()}
	b, err := cluster.Start(cfg, "replica-b", func([]byte) {}, nil)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(<-events)
	_ = b.Close()
	fmt.Println(<-events)
	// Output:
	// replica-b joined
	// replica-b left
}

// Stats counts messages: a broadcast is sent directly to each other member
// (Sent counts one per recipient) and arrives again through gossip, so
// Received may exceed what was sent.
func ExampleNode_Stats() {
	cfg := cluster.Config{BindAddr: "127.0.0.1:0", Profile: cluster.ProfileLocal}
	got := make(chan struct{}, 8)
	a, err := cluster.Start(cfg, "replica-a", func([]byte) { got <- struct{}{} }, nil)
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

	if err := b.Broadcast([]byte("invalidate users/42")); err != nil {
		log.Fatal(err)
	}
	<-got
	sent, recv := b.Stats(), a.Stats()
	fmt.Println("b sent:", sent.Sent, "errors:", sent.SendErrors)
	fmt.Println("a received:", recv.Received >= 1, "dropped:", recv.Dropped)
	// Output:
	// b sent: 1 errors: 0
	// a received: true dropped: 0
}

// Close leaves the cluster, announcing it so the others show the node as
// left rather than dead. It is idempotent; sends after it fail.
func ExampleNode_Close() {
	cfg := cluster.Config{BindAddr: "127.0.0.1:0", Profile: cluster.ProfileLocal, JoinTimeout: time.Second}
	a, err := cluster.Start(cfg, "replica-a", func([]byte) {}, nil)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(a.Close())
	fmt.Println(errors.Is(a.Broadcast([]byte("late")), cluster.ErrClosed))
	fmt.Println(a.Close())
	// Output:
	// <nil>
	// true
	// <nil>
}
