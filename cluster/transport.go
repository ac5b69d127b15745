package cluster

import (
	"bytes"
	"errors"
	"fmt"
	"log"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	sockaddr "github.com/hashicorp/go-sockaddr"
	"github.com/hashicorp/memberlist"
)

// transport is memberlist's NetTransport (UDP packets and TCP streams on one
// port) with one change: a received packet is read into the listener's one
// buffer and copied out at its size. NetTransport reads every packet into a
// fresh 64 KiB buffer, which for Strata's few-hundred-byte invalidations
// was most of what a replica allocated per invalidation (issue 16: the GC
// it drove was the tail of gossip propagation, and with 30 replicas in one
// process most of their CPU).
type transport struct {
	udp    *net.UDPConn
	tcp    *net.TCPListener
	logger *log.Logger

	packets chan *memberlist.Packet
	streams chan net.Conn

	shutdown atomic.Bool
	done     chan struct{} // closed by Shutdown: a hand-over nobody takes is dropped
	stop     sync.Once
	wg       sync.WaitGroup
}

var _ memberlist.NodeAwareTransport = (*transport)(nil)

// udpPacketMax is the largest UDP datagram; memberlist's own reads use it.
const udpPacketMax = 65536

// udpRecvBuffer is the socket receive buffer asked for (memberlist's).
const udpRecvBuffer = 2 * 1024 * 1024

// newTransport listens on ip:port (UDP and TCP alike; port 0 picks one free
// for both, retried as memberlist does) and starts the listeners.
func newTransport(ip string, port int, logger *log.Logger) (*transport, error) {
	addr := net.ParseIP(ip)
	tries := 1
	if port == 0 {
		tries = 10
	}
	var err error
	for range tries {
		var t *transport
		if t, err = listen(addr, port, logger); err == nil {
			return t, nil
		}
	}
	return nil, fmt.Errorf("cluster: listen on %s:%d: %w", ip, port, err)
}

func listen(ip net.IP, port int, logger *log.Logger) (*transport, error) {
	tcp, err := net.ListenTCP("tcp", &net.TCPAddr{IP: ip, Port: port})
	if err != nil {
		return nil, err
	}
	udp, err := net.ListenUDP("udp", &net.UDPAddr{IP: ip, Port: tcp.Addr().(*net.TCPAddr).Port})
	if err != nil {
		_ = tcp.Close()
		return nil, err
	}
	for size := udpRecvBuffer; size > 0; size /= 2 {
		if udp.SetReadBuffer(size) == nil {
			break
		}
	}
	t := &transport{
		udp: udp, tcp: tcp, logger: logger,
		packets: make(chan *memberlist.Packet),
		streams: make(chan net.Conn),
		done:    make(chan struct{}),
	}
	t.wg.Add(2)
	go t.readPackets()
	go t.acceptStreams()
	return t, nil
}

// port is the port both listeners are bound to.
func (t *transport) port() int { return t.tcp.Addr().(*net.TCPAddr).Port }

// FinalAdvertiseAddr is NetTransport's: the given address, else the bound
// one (a private address of the host when bound to every interface).
func (t *transport) FinalAdvertiseAddr(ip string, port int) (net.IP, int, error) {
	if ip != "" {
		a := net.ParseIP(ip)
		if a == nil {
			return nil, 0, fmt.Errorf("failed to parse advertise address %q", ip)
		}
		if a4 := a.To4(); a4 != nil {
			a = a4
		}
		return a, port, nil
	}
	bound := t.tcp.Addr().(*net.TCPAddr).IP
	if bound.IsUnspecified() {
		private, err := sockaddr.GetPrivateIP()
		if err != nil {
			return nil, 0, fmt.Errorf("failed to get interface addresses: %w", err)
		}
		if private == "" {
			return nil, 0, errors.New("no private IP address found, and explicit IP not provided")
		}
		if bound = net.ParseIP(private); bound == nil {
			return nil, 0, fmt.Errorf("failed to parse advertise address: %q", private)
		}
	}
	return bound, t.port(), nil
}

// WriteTo sends b in one UDP packet to addr.
func (t *transport) WriteTo(b []byte, addr string) (time.Time, error) {
	return t.WriteToAddress(b, memberlist.Address{Addr: addr})
}

// WriteToAddress sends b in one UDP packet to a.Addr; an address of an IP
// and a port is sent to without resolving (and without allocating).
func (t *transport) WriteToAddress(b []byte, a memberlist.Address) (time.Time, error) {
	if ap, err := netip.ParseAddrPort(a.Addr); err == nil {
		_, err = t.udp.WriteToUDPAddrPort(b, ap)
		return time.Now(), err
	}
	ua, err := net.ResolveUDPAddr("udp", a.Addr)
	if err != nil {
		return time.Time{}, err
	}
	_, err = t.udp.WriteTo(b, ua)
	return time.Now(), err
}

// PacketCh delivers the packets received.
func (t *transport) PacketCh() <-chan *memberlist.Packet { return t.packets }

// DialTimeout opens a TCP stream to addr.
func (t *transport) DialTimeout(addr string, timeout time.Duration) (net.Conn, error) {
	return t.DialAddressTimeout(memberlist.Address{Addr: addr}, timeout)
}

// DialAddressTimeout opens a TCP stream to a.Addr.
func (t *transport) DialAddressTimeout(a memberlist.Address, timeout time.Duration) (net.Conn, error) {
	d := net.Dialer{Timeout: timeout}
	return d.Dial("tcp", a.Addr)
}

// StreamCh delivers the TCP streams accepted.
func (t *transport) StreamCh() <-chan net.Conn { return t.streams }

// Shutdown closes both listeners and waits for their goroutines. What a
// listener holds and nobody takes (memberlist reads until its own shutdown,
// which comes after this one, but not at all if memberlist.Create failed)
// is dropped rather than waited for. It is idempotent.
func (t *transport) Shutdown() error {
	t.shutdown.Store(true)
	t.stop.Do(func() { close(t.done) })
	_ = t.tcp.Close()
	_ = t.udp.Close()
	t.wg.Wait()
	return nil
}

// readPackets reads every packet into one buffer and hands memberlist a
// copy of its size.
func (t *transport) readPackets() {
	defer t.wg.Done()
	buf := make([]byte, udpPacketMax)
	for {
		n, from, err := t.udp.ReadFromUDPAddrPort(buf)
		ts := time.Now()
		switch {
		case err != nil && t.shutdown.Load():
			return
		case err != nil:
			t.logger.Printf("[ERR] memberlist: Error reading UDP packet: %v", err)
			continue
		case n < 1:
			t.logger.Printf("[ERR] memberlist: UDP packet too short (%d bytes) %s", n, from)
			continue
		}
		p := &memberlist.Packet{Buf: bytes.Clone(buf[:n]), From: net.UDPAddrFromAddrPort(from), Timestamp: ts}
		select {
		case t.packets <- p:
		case <-t.done:
			return
		}
	}
}

// acceptStreams hands memberlist the TCP connections accepted, backing off
// on errors as NetTransport does.
func (t *transport) acceptStreams() {
	defer t.wg.Done()
	const baseDelay, maxDelay = 5 * time.Millisecond, time.Second
	var delay time.Duration
	for {
		conn, err := t.tcp.AcceptTCP()
		if err != nil {
			if t.shutdown.Load() {
				return
			}
			delay = min(max(2*delay, baseDelay), maxDelay)
			t.logger.Printf("[ERR] memberlist: Error accepting TCP connection: %v", err)
			time.Sleep(delay) // backing off a failing accept, as NetTransport does
			continue
		}
		delay = 0
		select {
		case t.streams <- conn:
		case <-t.done:
			_ = conn.Close()
			return
		}
	}
}
