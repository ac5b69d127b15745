package cluster

import (
	"sync"
	"sync/atomic"
)

// deliverer owns the bounded receive queue and the one goroutine that hands
// its messages to the application, so memberlist never waits for the
// application.
type deliverer struct {
	queue      chan []byte
	overflow   chan struct{} // capacity 1: pending drops coalesce into one call
	handle     func([]byte)
	onOverflow func()
	protect    func(what string, f func())

	quit     chan struct{}
	done     chan struct{}
	stopOnce sync.Once
}

func newDeliverer(size int, handle func([]byte), onOverflow func(), protect func(string, func())) *deliverer {
	d := &deliverer{
		queue:      make(chan []byte, size),
		overflow:   make(chan struct{}, 1),
		handle:     handle,
		onOverflow: onOverflow,
		protect:    protect,
		quit:       make(chan struct{}),
		done:       make(chan struct{}),
	}
	go d.run()
	return d
}

// offer queues msg without blocking and reports whether it was queued. On a
// full queue it signals the overflow callback instead. The queue is never
// closed, so offer is safe even after stop, when memberlist may still be
// finishing a packet.
func (d *deliverer) offer(msg []byte) bool {
	select {
	case d.queue <- msg:
		return true
	default:
	}
	if d.onOverflow != nil {
		select {
		case d.overflow <- struct{}{}:
		default:
		}
	}
	return false
}

func (d *deliverer) run() {
	defer close(d.done)
	for {
		select {
		case <-d.quit:
			return
		case <-d.overflow:
			d.protect("onOverflow", d.onOverflow)
		case msg := <-d.queue:
			d.protect("handle", func() { d.handle(msg) })
		}
	}
}

// stop ends the goroutine, waiting for a callback in progress; messages
// still queued are discarded. It is idempotent.
func (d *deliverer) stop() {
	d.stopOnce.Do(func() { close(d.quit) })
	<-d.done
}

// memberEvent is one membership change.
type memberEvent struct {
	name   string
	joined bool
}

// eventDispatcher counts alive members and relays membership changes to the
// OnMembership callback on its own goroutine: memberlist reports them while
// holding its node lock, so calling back directly could deadlock a callback
// that asks for Members, and would block memberlist on the callback.
// Pending events are an unbounded list because they are few (one per
// membership change) and must not be lost.
type eventDispatcher struct {
	alive atomic.Int64 // members alive, self included

	mu      sync.Mutex
	fn      func(name string, joined bool)
	pending []memberEvent

	wake     chan struct{} // capacity 1
	protect  func(what string, f func())
	quit     chan struct{}
	done     chan struct{}
	stopOnce sync.Once
}

func newEventDispatcher(protect func(string, func())) *eventDispatcher {
	e := &eventDispatcher{
		wake:    make(chan struct{}, 1),
		protect: protect,
		quit:    make(chan struct{}),
		done:    make(chan struct{}),
	}
	go e.run()
	return e
}

func (e *eventDispatcher) setFunc(fn func(string, bool)) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.fn = fn
	if fn == nil {
		e.pending = nil
	}
}

// notify records an event without blocking; events are kept only while a
// callback is registered.
func (e *eventDispatcher) notify(name string, joined bool) {
	if joined {
		e.alive.Add(1)
	} else {
		e.alive.Add(-1)
	}
	e.mu.Lock()
	if e.fn != nil {
		e.pending = append(e.pending, memberEvent{name, joined})
	}
	e.mu.Unlock()
	select {
	case e.wake <- struct{}{}:
	default:
	}
}

func (e *eventDispatcher) run() {
	defer close(e.done)
	for {
		select {
		case <-e.quit:
			return
		case <-e.wake:
			e.dispatch()
		}
	}
}

// dispatch delivers the pending events, outside the lock.
func (e *eventDispatcher) dispatch() {
	e.mu.Lock()
	batch, fn := e.pending, e.fn
	e.pending = nil
	e.mu.Unlock()
	for _, ev := range batch {
		if fn != nil {
			e.protect("OnMembership", func() { fn(ev.name, ev.joined) })
		}
	}
}

// stop ends the goroutine, waiting for a callback in progress. It is
// idempotent.
func (e *eventDispatcher) stop() {
	e.stopOnce.Do(func() { close(e.quit) })
	<-e.done
}
