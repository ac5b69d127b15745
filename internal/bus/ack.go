package bus

import (
	"github.com/strata-cache/strata/coherence"

	"context"
	"fmt"
	"maps"
	"slices"
	"sync"
	"time"
)

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
// invalidation, every part of it when it is split, or fails after timeout
// with an error naming those that did not.
func (b *Bus) PublishAcked(ctx context.Context, kind coherence.Kind, namespace string, items []string, version uint64, timeout time.Duration) error {
	members := b.livePeers()
	var seqs []uint64
	var waits []*ackWait
	defer func() { b.acks.forget(seqs) }()
	// Sent whatever becomes of ctx, which ends only the wait: a message not
	// sent is a gap, which costs every receiver its L1.
	err := b.publish(context.WithoutCancel(ctx), b.invalidation(ctx, kind, namespace, version, true), items, func(seq uint64) {
		seqs = append(seqs, seq)
		waits = append(waits, b.acks.expect(seq, members))
	})
	if err != nil {
		return err
	}
	return b.acks.wait(ctx, waits, timeout)
}

// expect starts waiting for every one of members to acknowledge seq.
func (a *acks) expect(seq uint64, members []string) *ackWait {
	w := &ackWait{pending: map[string]bool{}, done: make(chan struct{})}
	for _, name := range members {
		w.pending[name] = true
	}
	if len(w.pending) == 0 {
		close(w.done)
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.waiting == nil {
		a.waiting = map[uint64]*ackWait{}
	}
	a.waiting[seq] = w
	return w
}

// forget stops waiting for acknowledgements of seqs.
func (a *acks) forget(seqs []uint64) {
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, seq := range seqs {
		delete(a.waiting, seq)
	}
}

// wait returns once every wait is done, or fails when ctx ends or timeout
// passes first, naming the members still pending in any of them.
func (a *acks) wait(ctx context.Context, waits []*ackWait, timeout time.Duration) error {
	t := time.NewTimer(timeout)
	defer t.Stop()
	awaitAll(ctx, waits, t.C)
	a.mu.Lock()
	set := map[string]bool{}
	for _, w := range waits {
		for name := range w.pending {
			set[name] = true
		}
	}
	a.mu.Unlock()
	if len(set) == 0 {
		return nil
	}
	return fmt.Errorf("%w by %v", coherence.ErrNotAcknowledged, slices.Sorted(maps.Keys(set)))
}

// awaitAll returns once every wait is done, ctx ends or expired fires.
func awaitAll(ctx context.Context, waits []*ackWait, expired <-chan time.Time) {
	for _, w := range waits {
		select {
		case <-w.done:
		case <-ctx.Done():
			return
		case <-expired:
			return
		}
	}
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
func (b *Bus) ack(m *coherence.Message) {
	a := &coherence.Message{Origin: b.cfg.NodeID, Epoch: b.epoch, Kind: coherence.KindAck, Items: []string{m.Origin}, Version: m.Seq, SentAt: b.cfg.Now().UnixNano()}
	ctx, cancel := context.WithTimeout(context.Background(), b.cfg.HeartbeatInterval)
	defer cancel()
	_ = b.send(ctx, a.Kind, coherence.Encode(a, b.cfg.Key))
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
