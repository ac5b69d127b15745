package clustertest_test

import (
	"net"
	"sync"
	"testing"
	"time"

	"github.com/strata-cache/strata/cluster"
	"github.com/strata-cache/strata/cluster/clustertest"
)

// Found by the chaos soak (a replica's Close hung for good): Shutdown
// stopped the forwarding first and shut the inner transport down after,
// so a packet that arrived in between left memberlist's UDP listener
// blocked on its unbuffered packet channel, and the inner Shutdown waited
// for that listener forever. Packets arrive all along here.
func TestShutdownWhilePacketsArrive(t *testing.T) {
	faults := &clustertest.Faults{}
	cfg := cluster.Config{BindAddr: "127.0.0.1:0", Profile: cluster.ProfileLocal, Transport: faults.Wrap}
	n, err := cluster.Start(cfg, "r", func([]byte) {}, nil)
	if err != nil {
		t.Fatal(err)
	}
	conn, err := net.Dial("udp", n.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			select {
			case <-stop:
				return
			default:
			}
			_, _ = conn.Write([]byte("not a memberlist packet"))
			time.Sleep(100 * time.Microsecond) // the sender's pacing
		}
	})
	defer func() {
		close(stop)
		wg.Wait()
	}()
	closed := make(chan error, 1)
	go func() { closed <- n.Close() }()
	select {
	case err := <-closed:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Close did not return within 10 s while packets arrived")
	}
}
