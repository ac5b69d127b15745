package cluster

import (
	"errors"
	"io"
	"log"
	"net"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/memberlist"
	"go.uber.org/goleak"
)

// failingAdvertise is a transport whose advertise address cannot be found,
// as on a host bound to 0.0.0.0 (the default BindAddr) without a private IP.
type failingAdvertise struct {
	memberlist.NodeAwareTransport
	port int
}

func (f *failingAdvertise) FinalAdvertiseAddr(string, int) (net.IP, int, error) {
	return nil, 0, errors.New("no private IP address found, and explicit IP not provided")
}

// TestFailedStartReleasesTransport: when memberlist.Create fails
// after the transport was made (its advertise address cannot be found:
// memberlist's newMemberlist returns without shutting a given transport
// down), Start must shut the transport down itself. It did not: its two
// listener goroutines ran on and its port stayed bound, so a retry of Start
// on a fixed port failed with "address already in use" for the life of
// the process. Since this package always makes the transport (not only when
// Config.Transport wraps it), every failed Create leaks one.
func TestFailedStartReleasesTransport(t *testing.T) {
	before := goleak.IgnoreCurrent()
	var port int
	cfg := Config{BindAddr: "127.0.0.1:0", Profile: ProfileLocal,
		Transport: func(inner memberlist.NodeAwareTransport) memberlist.NodeAwareTransport {
			port = inner.(*transport).port()
			return &failingAdvertise{NodeAwareTransport: inner}
		}}
	if n, err := Start(cfg, "n", func([]byte) {}, nil); err == nil {
		_ = n.Close()
		t.Fatal("Start succeeded with no advertise address")
	}
	l, err := net.ListenTCP("tcp", &net.TCPAddr{IP: net.ParseIP("127.0.0.1"), Port: port})
	if err != nil {
		t.Errorf("the failed Start's port %d is still bound: %v", port, err)
	} else {
		_ = l.Close()
	}
	if err := goleak.Find(before); err != nil {
		t.Errorf("the failed Start left goroutines behind: %v", err)
	}
}

// blockedIn reports whether a goroutine running fn is blocked in one of
// states (as runtime.Stack prints them: "chan send", "select").
func blockedIn(fn string, states ...string) bool {
	buf := make([]byte, 1<<20)
	buf = buf[:runtime.Stack(buf, true)]
	for _, g := range strings.Split(string(buf), "\n\n") {
		header, _, _ := strings.Cut(g, "\n")
		for _, state := range states {
			if strings.Contains(header, "["+state) && strings.Contains(g, fn) {
				return true
			}
		}
	}
	return false
}

// TestShutdownWithUndeliveredHandoff: the transport's Shutdown
// must return when nobody takes what a listener holds. Its listeners hand
// each packet and stream over on an unbuffered channel and Shutdown waits
// for them; memberlist reads those channels until its own shutdown, which
// comes after the transport's, but not at all when memberlist.Create
// failed before starting its listeners (and then the transport is shut
// down by Start, see TestFailedStartReleasesTransport), nor through
// a Config.Transport wrapper that stopped forwarding first. A packet or a
// connection from a peer in that window blocked Shutdown for good.
func TestShutdownWithUndeliveredHandoff(t *testing.T) {
	tests := []struct {
		name, listener string
		send           func(addr string) (func(), error)
	}{
		{"packet", "cluster.(*transport).readPackets", func(addr string) (func(), error) {
			c, err := net.Dial("udp", addr)
			if err != nil {
				return nil, err
			}
			_, err = c.Write([]byte("ping"))
			return func() { _ = c.Close() }, err
		}},
		{"stream", "cluster.(*transport).acceptStreams", func(addr string) (func(), error) {
			c, err := net.Dial("tcp", addr)
			if err != nil {
				return nil, err
			}
			return func() { _ = c.Close() }, nil
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tr, err := newTransport("127.0.0.1", 0, log.New(io.Discard, "", 0))
			if err != nil {
				t.Fatal(err)
			}
			done, err := tt.send(net.JoinHostPort("127.0.0.1", strconv.Itoa(tr.port())))
			if err != nil {
				t.Fatal(err)
			}
			defer done()
			waitFor(t, tt.listener+" holding what it received", func() bool { return blockedIn(tt.listener, "chan send", "select") })
			shut := make(chan struct{})
			go func() { _ = tr.Shutdown(); close(shut) }()
			select {
			case <-shut:
			case <-time.After(5 * time.Second):
				t.Fatalf("Shutdown hangs: %s waits for good to hand over what it received", tt.name)
			}
		})
	}
}
