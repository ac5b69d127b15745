package coherence

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"
)

// ErrNotAcknowledged is returned by PublishAcked when some live member did
// not confirm in time; the error names them.
var ErrNotAcknowledged = errors.New("coherence: invalidation not acknowledged")

// acks tracks the acknowledgements awaited by PublishAcked calls.
type acks struct {
	mu      sync.Mutex
	waiting map[uint64]*ackWait // by sequence
}

type ackWait struct {
	pending map[string]bool // members not heard from yet
	done    chan struct{}
}

// PublishAcked is Publish that returns only once every live member (gossip
// members and nodes heard on pub/sub within LinkTimeout) has applied the
// invalidation, or fails after timeout with an error naming those that did
// not.
func (b *Bus) PublishAcked(ctx context.Context, kind Kind, namespace string, items []string, version uint64, timeout time.Duration) error {
	members := b.livePeers()
	m := &Message{
		Origin: b.cfg.NodeID, Epoch: b.epoch, Seq: b.seq.Add(1), Kind: kind, Namespace: namespace,
		Items: items, Version: version, SentAt: b.cfg.Now().UnixNano(), AckWanted: true,
		L2Missed: l2Missed(ctx),
	}
	w := &ackWait{pending: map[string]bool{}, done: make(chan struct{})}
	for _, name := range members {
		w.pending[name] = true
	}
	b.acks.mu.Lock()
	if b.acks.waiting == nil {
		b.acks.waiting = map[uint64]*ackWait{}
	}
	b.acks.waiting[m.Seq] = w
	if len(w.pending) == 0 {
		close(w.done)
	}
	b.acks.mu.Unlock()
	defer func() {
		b.acks.mu.Lock()
		delete(b.acks.waiting, m.Seq)
		b.acks.mu.Unlock()
	}()
	b.stats.published.Add(1)
	if err := b.send(ctx, Encode(m, b.cfg.Key)); err != nil {
		return err
	}
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case <-w.done:
		return nil
	case <-ctx.Done():
	case <-t.C:
	}
	b.acks.mu.Lock()
	missing := make([]string, 0, len(w.pending))
	for name := range w.pending {
		missing = append(missing, name)
	}
	b.acks.mu.Unlock()
	if len(missing) == 0 {
		return nil
	}
	slices.Sort(missing)
	return fmt.Errorf("%w by %v", ErrNotAcknowledged, missing)
}

// acked records that from applied our message seq.
func (b *Bus) acked(from string, seq uint64) {
	b.acks.mu.Lock()
	defer b.acks.mu.Unlock()
	w := b.acks.waiting[seq]
	if w == nil || !w.pending[from] {
		return
	}
	delete(w.pending, from)
	if len(w.pending) == 0 {
		close(w.done)
	}
}

// ack confirms to m's origin that m was applied.
func (b *Bus) ack(m *Message) {
	a := &Message{Origin: b.cfg.NodeID, Epoch: b.epoch, Kind: KindAck, Items: []string{m.Origin}, Version: m.Seq, SentAt: b.cfg.Now().UnixNano()}
	ctx, cancel := context.WithTimeout(context.Background(), b.cfg.HeartbeatInterval)
	defer cancel()
	_ = b.send(ctx, Encode(a, b.cfg.Key))
}

// livePeers lists the other nodes that should acknowledge: gossip members,
// and nodes heard on any channel within LinkTimeout.
func (b *Bus) livePeers() []string {
	set := map[string]bool{}
	if b.cfg.Gossip != nil {
		for _, name := range b.cfg.Gossip.Members() {
			set[name] = true
		}
	}
	limit := b.cfg.Now().UnixNano() - int64(b.cfg.LinkTimeout)
	b.mu.Lock()
	for name, o := range b.origins {
		if o.lastHeard() > limit {
			set[name] = true
		}
	}
	b.mu.Unlock()
	delete(set, b.cfg.NodeID)
	out := make([]string, 0, len(set))
	for name := range set {
		out = append(out, name)
	}
	return out
}
