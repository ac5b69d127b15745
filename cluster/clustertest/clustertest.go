// Package clustertest injects network faults into Strata's gossip channel,
// as net/http/httptest serves HTTP for tests: a memberlist transport that
// cuts, loses or delays what one replica sends and receives, for tests,
// demos and chaos runs of a service's own replicas.
//
//	faults := &clustertest.Faults{}
//	cfg := cluster.Config{BindAddr: "127.0.0.1:0", Transport: faults.Wrap}
//	// ... start the replica with cfg ...
//	faults.Cut(true)  // this replica hears nothing and is heard by no one
//	faults.Cut(false) // back
//
// A cut replica is not heard from, so a cut that outlasts the profile's
// suspicion timeout (seconds) gets it declared dead by the others; it
// rejoins once the cut ends.
package clustertest

import (
	"errors"
	"math/rand/v2"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/memberlist"
)

// errCut is what a send or dial returns while the transport is cut.
var errCut = errors.New("clustertest: transport cut")

// Faults is a fault-injecting memberlist transport for one replica: set
// Wrap as its cluster.Config.Transport. The zero value passes everything
// through; Cut, SetLoss and SetDelay change that at any time. A replica
// restarted with the same Faults (Wrap called again) keeps its faults.
type Faults struct {
	mu    sync.Mutex
	cut   bool
	loss  float64
	delay time.Duration

	dropped atomic.Uint64
}

// Wrap is a cluster.Config.Transport: it returns inner behind f's faults.
func (f *Faults) Wrap(inner memberlist.NodeAwareTransport) memberlist.NodeAwareTransport {
	t := &transport{f: f, inner: inner, packets: make(chan *memberlist.Packet),
		streams: make(chan net.Conn), done: make(chan struct{})}
	t.wg.Add(2)
	go t.forwardPackets()
	go t.forwardStreams()
	return t
}

// transport is one Wrap: its own forwarding, stopped by its Shutdown.
type transport struct {
	f       *Faults
	inner   memberlist.NodeAwareTransport
	packets chan *memberlist.Packet
	streams chan net.Conn
	done    chan struct{}
	stop    sync.Once
	wg      sync.WaitGroup
}

// Cut stops (on) every packet and stream this replica sends or receives,
// as an unplugged cable would, or lets them through again.
func (f *Faults) Cut(on bool) {
	f.mu.Lock()
	f.cut = on
	f.mu.Unlock()
}

// SetLoss makes each packet, sent or received, lost with probability p (0
// to 1). Streams (joins, state sync, large messages) are not affected.
func (f *Faults) SetLoss(p float64) {
	f.mu.Lock()
	f.loss = p
	f.mu.Unlock()
}

// SetDelay holds each received packet for d before memberlist sees it, so
// packets may arrive out of order, as on a congested network.
func (f *Faults) SetDelay(d time.Duration) {
	f.mu.Lock()
	f.delay = d
	f.mu.Unlock()
}

// Dropped is how many packets and streams were lost to a cut or to loss.
func (f *Faults) Dropped() uint64 { return f.dropped.Load() }

// drop reports whether to lose the next packet (packet) or stream.
func (f *Faults) drop(packet bool) bool {
	f.mu.Lock()
	lost := f.cut || (packet && f.loss > 0 && rand.Float64() < f.loss)
	f.mu.Unlock()
	if lost {
		f.dropped.Add(1)
	}
	return lost
}

func (f *Faults) currentDelay() time.Duration {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.delay
}

func (t *transport) forwardPackets() {
	defer t.wg.Done()
	for {
		select {
		case p := <-t.inner.PacketCh():
			if t.f.drop(true) {
				continue
			}
			if d := t.f.currentDelay(); d > 0 {
				time.AfterFunc(d, func() { t.deliver(p) })
				continue
			}
			t.deliver(p)
		case <-t.done:
			return
		}
	}
}

func (t *transport) deliver(p *memberlist.Packet) {
	select {
	case t.packets <- p:
	case <-t.done:
	}
}

func (t *transport) forwardStreams() {
	defer t.wg.Done()
	for {
		select {
		case c := <-t.inner.StreamCh():
			if t.f.drop(false) {
				_ = c.Close()
				continue
			}
			select {
			case t.streams <- c:
			case <-t.done:
				_ = c.Close()
				return
			}
		case <-t.done:
			return
		}
	}
}

// FinalAdvertiseAddr implements memberlist.Transport.
func (t *transport) FinalAdvertiseAddr(ip string, port int) (net.IP, int, error) {
	return t.inner.FinalAdvertiseAddr(ip, port)
}

// WriteTo implements memberlist.Transport. A lost packet is reported sent,
// as the network would.
func (t *transport) WriteTo(b []byte, addr string) (time.Time, error) {
	if t.f.drop(true) {
		return time.Now(), nil
	}
	return t.inner.WriteTo(b, addr)
}

// WriteToAddress implements memberlist.NodeAwareTransport.
func (t *transport) WriteToAddress(b []byte, addr memberlist.Address) (time.Time, error) {
	if t.f.drop(true) {
		return time.Now(), nil
	}
	return t.inner.WriteToAddress(b, addr)
}

// PacketCh implements memberlist.Transport.
func (t *transport) PacketCh() <-chan *memberlist.Packet { return t.packets }

// DialTimeout implements memberlist.Transport.
func (t *transport) DialTimeout(addr string, timeout time.Duration) (net.Conn, error) {
	if t.f.drop(false) {
		return nil, errCut
	}
	return t.inner.DialTimeout(addr, timeout)
}

// DialAddressTimeout implements memberlist.NodeAwareTransport.
func (t *transport) DialAddressTimeout(addr memberlist.Address, timeout time.Duration) (net.Conn, error) {
	if t.f.drop(false) {
		return nil, errCut
	}
	return t.inner.DialAddressTimeout(addr, timeout)
}

// StreamCh implements memberlist.Transport.
func (t *transport) StreamCh() <-chan net.Conn { return t.streams }

// Shutdown implements memberlist.Transport: it stops the forwarding and
// shuts the inner transport down, dropping what the inner one still hands
// over meanwhile: its channels are unbuffered, so a listener holding a
// packet nobody takes would keep its Shutdown waiting for good.
func (t *transport) Shutdown() error {
	t.stop.Do(func() { close(t.done) })
	t.wg.Wait()
	stop, drained := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(drained)
		for {
			select {
			case <-t.inner.PacketCh():
			case c := <-t.inner.StreamCh():
				_ = c.Close()
			case <-stop:
				return
			}
		}
	}()
	err := t.inner.Shutdown()
	close(stop)
	<-drained
	return err
}
