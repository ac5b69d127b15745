package cluster

import (
	"bytes"
	"errors"
	"fmt"
	"log"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/memberlist"
)

// node is Node's implementation.
type node struct {
	name   string
	addr   string
	ml     *memberlist.Memberlist
	logger logSink

	// gossip is the catch-up queue memberlist drains through
	// delegate.GetBroadcasts.
	gossip    *memberlist.TransmitLimitedQueue
	maxPacket int
	leaveWait time.Duration
	// sendDirect is the direct send to one member; tests replace it to
	// simulate loss.
	sendDirect func(to *memberlist.Node, msg []byte) error

	deliver *deliverer
	events  *eventDispatcher
	roster  *roster

	// leaving is set by Close, which then gossips it (as node metadata) for
	// at most announceWait before memberlist's leave.
	leaving      atomic.Bool
	announceWait time.Duration

	// refused is set when a background join found this node's name held
	// by another member: memberlist is shut down without a leave (which
	// would announce the other's departure), and the node is alone.
	refused atomic.Pointer[error]

	closed    atomic.Bool
	closeOnce sync.Once
	closeErr  error

	// joining, when a background join runs (Config.KeepJoining), is closed
	// by Close to stop it; joined waits for it.
	joining chan struct{}
	joined  sync.WaitGroup

	received, dropped, sent, sendErrors, panics atomic.Uint64
}

// start validates cfg, creates the memberlist node and joins the cluster.
func start(cfg Config, name string, handle func([]byte), onOverflow func()) (*node, error) {
	s, err := cfg.validate()
	if err != nil {
		return nil, err
	}
	if name == "" {
		return nil, invalid("name", errors.New("empty"))
	}
	if handle == nil {
		return nil, invalid("handle", errors.New("nil"))
	}
	n := newNode(s, name, handle, onOverflow)
	mc := s.memberlistConfig(name, log.New(n.logger, "", 0))
	mc.Delegate = (*delegate)(n)
	mc.Events = (*eventDelegate)(n)
	mc.Conflict = (*conflictDelegate)(n)
	n.gossip.RetransmitMult = mc.RetransmitMult
	n.maxPacket = maxPacketMessage(mc)
	n.leaveWait = leaveTimeout(mc)
	n.announceWait = announceTimeout(mc)
	if err := useTransport(mc, s.Transport); err != nil {
		n.stopGoroutines()
		return nil, err
	}
	ml, err := memberlist.Create(mc)
	if err != nil {
		// memberlist shuts a transport it was given down only if Create
		// fails after newMemberlist (setAlive); Shutdown is idempotent.
		_ = mc.Transport.Shutdown()
		n.stopGoroutines()
		return nil, fmt.Errorf("cluster: create memberlist on %s: %w", s.BindAddr, err)
	}
	n.ml = ml
	n.addr = ml.LocalNode().Address()
	joinFor := s.JoinTimeout
	if s.KeepJoining {
		joinFor = 0 // one attempt, then in the background
	}
	err = n.join(s.Join, joinFor, s.KeepJoining)
	if errors.Is(err, ErrJoin) && s.KeepJoining {
		n.logger.warn("cluster: no seed answered; running alone and joining in the background", "seeds", s.Join, "err", err)
		n.joining = make(chan struct{})
		n.joined.Add(1)
		go n.keepJoining(s.Join)
		err = nil
	}
	if err == nil {
		err = n.nameTaken()
	}
	if err != nil {
		_ = ml.Shutdown()
		n.stopGoroutines()
		return nil, err
	}
	return n, nil
}

// newNode builds the node and starts its two goroutines.
func newNode(s settings, name string, handle func([]byte), onOverflow func()) *node {
	n := &node{
		name:   name,
		gossip: &memberlist.TransmitLimitedQueue{},
	}
	n.logger = logSink{logger: s.Logger, closing: &n.closed}
	n.gossip.NumNodes = n.memberCount
	n.sendDirect = n.sendDirectDefault
	n.deliver = newDeliverer(s.QueueSize, handle, onOverflow, n.protect)
	n.events = newEventDispatcher(n.protect)
	n.roster = newRoster()
	return n
}

// memberCount tells the gossip queue how many members there are, to scale
// retransmissions. It counts join and leave events rather than calling
// Memberlist.NumMembers, which takes memberlist's node lock: the queue may be
// asked while memberlist holds it.
func (n *node) memberCount() int {
	return max(1, int(n.events.alive.Load()))
}

// keepJoining retries the seeds, backing off, until one answers or Close.
func (n *node) keepJoining(seeds []string) {
	defer n.joined.Done()
	backoff := joinBackoffMin
	for {
		t := time.NewTimer(backoff)
		select {
		case <-n.joining:
			t.Stop()
			return
		case <-t.C:
		}
		if _, err := n.ml.Join(seeds); err == nil && n.reachedPeer(seeds) {
			if err := n.nameTaken(); err != nil {
				n.refuse(err)
				return
			}
			n.logger.info("cluster: joined", "seeds", seeds)
			return
		}
		backoff = min(2*backoff, joinBackoffMax)
	}
}

// nameTaken returns an error wrapping ErrNameTaken if joining merged the
// members' state, which names this node at another address: memberlist
// refused one of the two, whose gossip would then be lost.
func (n *node) nameTaken() error {
	if c := n.roster.conflictsSeen().Last; c != nil && c.Name == n.name {
		return fmt.Errorf("%w: %q is claimed from %s and %s", ErrNameTaken, n.name, c.Existing, c.Other)
	}
	return nil
}

// refuse takes the node out of a cluster it joined in the background under
// a name another member holds: Start can no longer fail, so it logs an
// error, shuts memberlist down without a leave (a leave under the shared
// name would announce the other member's departure) and runs alone, its
// sends failing with err. Alone, it vouches for nothing, so its replica
// does not serve L1 on gossip's word.
func (n *node) refuse(err error) {
	n.refused.Store(&err)
	n.logger.error("cluster: this node's name is taken in the cluster it joined; leaving it, running without gossip", "err", err)
	_ = n.ml.Shutdown()
}

// refusal is refuse's error, or nil.
func (n *node) refusal() error {
	if p := n.refused.Load(); p != nil {
		return *p
	}
	return nil
}

// reachedPeer reports whether a join that succeeded reached a node other
// than this one: a seed list may name this node itself, which answers, and
// which alone is a join only when it is the whole list (the first replica
// of a cluster that shares one seed list).
func (n *node) reachedPeer(seeds []string) bool {
	return n.ml.NumMembers() > 1 || len(seeds) == 1
}

// join contacts the seeds until one answers, backing off between rounds,
// for at most timeout.
func (n *node) join(seeds []string, timeout time.Duration, keepJoining bool) error {
	if len(seeds) == 0 {
		return nil
	}
	deadline := time.Now().Add(timeout)
	backoff := joinBackoffMin
	for {
		_, err := n.ml.Join(seeds)
		switch {
		case err == nil && n.reachedPeer(seeds):
			return nil
		case err == nil && keepJoining:
			// Only this node answered: start alone, and join the others
			// in the background.
			return fmt.Errorf("%w: %v: only this node answered", ErrJoin, seeds)
		case err == nil:
			err = errors.New("only this node answered")
		}
		wait := min(backoff, time.Until(deadline))
		if wait <= 0 {
			return fmt.Errorf("%w: %v within %v: %w", ErrJoin, seeds, timeout, err)
		}
		n.logger.warn("cluster: join failed, retrying", "seeds", seeds, "retry_in", wait, "err", err)
		t := time.NewTimer(wait)
		<-t.C
		backoff = min(2*backoff, joinBackoffMax)
	}
}

func (n *node) members() []string {
	if n.refusal() != nil {
		return []string{n.name}
	}
	ms := n.ml.Members()
	names := make([]string, len(ms))
	for i, m := range ms {
		names[i] = m.Name
	}
	return names
}

func (n *node) broadcast(msg []byte) error {
	if n.closed.Load() {
		return ErrClosed
	}
	if err := n.refusal(); err != nil {
		return err
	}
	if len(msg) <= n.maxPacket {
		n.gossip.QueueBroadcast(&broadcast{msg: bytes.Clone(msg)})
		n.gossip.Prune(gossipBacklog)
	}
	var errs []error
	for _, m := range n.roster.sendTargets(n.name) {
		if err := n.send(m, msg); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

func (n *node) sendTo(member string, msg []byte) error {
	if n.closed.Load() {
		return ErrClosed
	}
	if err := n.refusal(); err != nil {
		return err
	}
	for _, m := range n.roster.sendTargets(n.name) {
		if m.Name == member {
			return n.send(m, msg)
		}
	}
	return fmt.Errorf("%w: %q", ErrUnknownMember, member)
}

// send is one direct send, counted.
func (n *node) send(to *memberlist.Node, msg []byte) error {
	if err := n.sendDirect(to, msg); err != nil {
		n.sendErrors.Add(1)
		return fmt.Errorf("cluster: send to %s: %w", to.Name, err)
	}
	n.sent.Add(1)
	return nil
}

// directSendReliable chooses the direct-send transport for messages that fit
// one packet. BenchmarkDirectSend measured send→handler latency between two
// nodes on loopback (ProfileLocal, AES-256, 100-byte message, 2 cores shared
// with other test runs, no -race; six runs of 5000 sends):
//
//	best-effort (UDP): p50  85-113µs, p99 0.9-3.6ms, mean 146-268µs
//	reliable (TCP):    p50 262-325µs, p99 1.4-2.2ms, mean 317-414µs
//
// Best-effort is about 3x faster in the typical case and 2x on average,
// because a reliable send dials a new TCP connection per message (and per
// member for Broadcast). Its tail was the noisier of the two under CPU
// contention (the packet crosses two goroutines in memberlist), but what it
// loses the gossip catch-up recovers, so it is the default.
const directSendReliable = false

// maxDatagram is Node.MaxPacket.
func (n *node) maxDatagram() int {
	if directSendReliable {
		return 0
	}
	return n.maxPacket
}

// sendDirectDefault sends best-effort unless msg exceeds one packet.
func (n *node) sendDirectDefault(to *memberlist.Node, msg []byte) error {
	if directSendReliable || len(msg) > n.maxPacket {
		return n.ml.SendReliable(to, msg)
	}
	return n.ml.SendBestEffort(to, msg)
}

func (n *node) memberStates() []Member { return n.roster.members() }

func (n *node) conflicts() Conflicts { return n.roster.conflictsSeen() }

func (n *node) onMembership(fn func(string, bool)) {
	n.events.setFunc(fn)
}

func (n *node) stats() Stats {
	return Stats{
		Received:   n.received.Load(),
		Dropped:    n.dropped.Load(),
		Sent:       n.sent.Load(),
		SendErrors: n.sendErrors.Load(),
		Panics:     n.panics.Load(),
	}
}

func (n *node) close() error {
	n.closeOnce.Do(func() {
		n.closed.Store(true)
		if n.joining != nil {
			close(n.joining)
			n.joined.Wait()
		}
		// The others learn of the departure from this metadata; the wait
		// ends with the broadcast's last retransmission, or at announceWait
		// (a timeout is no error of Close: some may then see a death).
		if n.refusal() == nil { // a refused node has left already
			n.leaving.Store(true)
			_ = n.ml.UpdateNode(n.announceWait)
			if err := n.ml.Leave(n.leaveWait); err != nil {
				// Not an error of Close: the others still find out by probing.
				n.logger.warn("cluster: leave not announced", "err", err)
			}
		}
		n.closeErr = n.ml.Shutdown()
		n.stopGoroutines()
	})
	return n.closeErr
}

// protect runs callback f, turning a panic into a logged error that
// carries the stack, so a faulty callback cannot kill the process from a
// goroutine the caller does not own.
func (n *node) protect(what string, f func()) {
	defer func() {
		if r := recover(); r != nil {
			n.panics.Add(1)
			err := fmt.Errorf("%w: %s: %v\n%s", ErrCallbackPanic, what, r, debug.Stack())
			n.logger.error("cluster: callback panicked", "err", err)
		}
	}()
	f()
}

// stopGoroutines stops the delivery and event goroutines and waits for them.
func (n *node) stopGoroutines() {
	n.deliver.stop()
	n.events.stop()
}
