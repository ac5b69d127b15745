package clustertest_test

import (
	"testing"
	"time"

	"github.com/strata-cache/strata/cluster"
	"github.com/strata-cache/strata/cluster/clustertest"
)

// A replica restarted in a chaos test with the same Faults (the natural
// thing: the Faults stands for the replica's network) never finishes its
// second Close: Wrap makes a new done channel and starts two new
// forwarders, but Shutdown closes done through a sync.Once already spent
// by the first Shutdown, so f.wg.Wait() waits for forwarders that never
// stop. (Nothing refuses the second Wrap either: the package doc only says
// "use one per replica".)
func TestReview10FaultsReusedForARestartHangsClose(t *testing.T) {
	faults := &clustertest.Faults{}
	cfg := cluster.Config{BindAddr: "127.0.0.1:0", Profile: cluster.ProfileLocal, Transport: faults.Wrap}
	first, err := cluster.Start(cfg, "r", func([]byte) {}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := first.Close(); err != nil {
		t.Fatal(err)
	}
	again, err := cluster.Start(cfg, "r", func([]byte) {}, nil)
	if err != nil {
		t.Fatalf("restart with the same Faults: %v", err)
	}
	closed := make(chan error, 1)
	go func() { closed <- again.Close() }()
	select {
	case err := <-closed:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Close of a replica restarted with the same Faults did not return within 10 s (Faults.Shutdown waits for forwarders its spent Once never stops)")
	}
}
