package main

import (
	"bytes"
	"io"
	"net"
	"sync"
)

// proxy forwards one replica's Redis connections to the server, so the demo
// can cut them as a network would: only the pub/sub subscriptions (a
// connection that sent SUBSCRIBE), or everything.
type proxy struct {
	ln     net.Listener
	target string

	mu        sync.Mutex
	conns     map[net.Conn]bool // client side -> is a subscription
	noPubSub  bool              // subscriptions are cut and refused
	down      bool              // every connection is cut and refused
	closeOnce sync.Once
}

func newProxy(target string) (*proxy, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	p := &proxy{ln: ln, target: target, conns: map[net.Conn]bool{}}
	go p.accept()
	return p, nil
}

func (p *proxy) Addr() string { return p.ln.Addr().String() }

func (p *proxy) accept() {
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		p.mu.Lock()
		if p.down {
			p.mu.Unlock()
			_ = c.Close()
			continue
		}
		p.conns[c] = false
		p.mu.Unlock()
		go p.serve(c)
	}
}

func (p *proxy) serve(c net.Conn) {
	defer p.drop(c)
	s, err := net.Dial("tcp", p.target)
	if err != nil {
		return
	}
	defer s.Close()
	go func() {
		_, _ = io.Copy(c, s)
		_ = c.Close()
	}()
	buf := make([]byte, 32<<10)
	for {
		n, err := c.Read(buf)
		if n > 0 {
			if bytes.Contains(bytes.ToUpper(buf[:n]), []byte("SUBSCRIBE")) {
				p.mu.Lock()
				p.conns[c] = true
				refused := p.noPubSub
				p.mu.Unlock()
				if refused {
					return
				}
			}
			if _, err := s.Write(buf[:n]); err != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

func (p *proxy) drop(c net.Conn) {
	_ = c.Close()
	p.mu.Lock()
	delete(p.conns, c)
	p.mu.Unlock()
}

// cutPubSub closes the subscriptions and refuses new ones (on), or lets
// them through again.
func (p *proxy) cutPubSub(on bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.noPubSub = on
	if on {
		for c, sub := range p.conns {
			if sub {
				_ = c.Close()
			}
		}
	}
}

// setDown cuts every connection and refuses new ones (on), or lets them
// through again.
func (p *proxy) setDown(on bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.down = on
	if on {
		for c := range p.conns {
			_ = c.Close()
		}
	}
}

func (p *proxy) close() {
	p.closeOnce.Do(func() {
		_ = p.ln.Close()
		p.setDown(true)
	})
}
