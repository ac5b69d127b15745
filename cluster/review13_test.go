package cluster

import (
	"errors"
	"net"
	"testing"

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

// TestReview13FailedStartReleasesTransport: when memberlist.Create fails
// after the transport was made (its advertise address cannot be found:
// memberlist's newMemberlist returns without shutting a given transport
// down), Start must shut the transport down itself. It did not: its two
// listener goroutines ran on and its port stayed bound, so a retry of Start
// on a fixed port failed with "address already in use" for the life of
// the process. Since this package always makes the transport (not only when
// Config.Transport wraps it), every failed Create leaks one.
func TestReview13FailedStartReleasesTransport(t *testing.T) {
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
