package bus

import (
	"context"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/strata-cache/strata/coherence"
	"github.com/strata-cache/strata/internal/redistest"
)

// Stats split the traffic by channel and kind, and the L1 drops by reason.
func TestStatsByChannelKindAndReason(t *testing.T) {
	rec := &recorder{}
	b, clock := clockedBus(t, rec)
	ctx := context.Background()
	for _, k := range []coherence.Kind{coherence.KindKeys, coherence.KindTags, coherence.KindTags} {
		if err := b.Publish(ctx, k, "ns", []string{"x"}, 1); err != nil {
			t.Fatal(err)
		}
	}
	m := coherence.Message{Origin: "a", Epoch: 1, Seq: 1, Kind: coherence.KindPattern, Namespace: "ns", Items: []string{"user:*"}}
	b.Deliver(coherence.Encode(&m, nil), Gossip)
	b.Deliver(coherence.Encode(&m, nil), PubSub) // the same message, later, on the other channel
	b.Deliver([]byte("garbage"), PubSub)
	deliver(b, 1, 3, coherence.KindClear) // 2 is missing
	expireGaps(b, clock)
	b.ResetL1(ReasonOverflow)

	s := b.Stats()
	want := coherence.Stats{
		Published: 3, Received: 4, Applied: 2, Duplicates: 1, Malformed: 1, Gaps: 1, Resets: 2,
		AppliedByKind:  coherence.Kinds{Pattern: 1, Clear: 1},
		ResetsByReason: coherence.Resets{Gap: 1, Overflow: 1},
		Gossip:         coherence.ChannelStats{Sent: coherence.Kinds{Keys: 1, Tags: 2}, Received: coherence.Kinds{Pattern: 1}},
		PubSub:         coherence.ChannelStats{Received: coherence.Kinds{Pattern: 1, Clear: 1}, Dropped: 1},
	}
	if s != want {
		t.Errorf("stats\n%+v\nwant\n%+v", s, want)
	}
	if got := s.Gossip.Sent.Of(coherence.KindTags); got != 2 {
		t.Errorf("Kinds.Of(tags) = %d, want 2", got)
	}
	if r := b.LastReset(); r == nil || r.Reason != ReasonOverflow.String() {
		t.Errorf("last reset %+v, want the overflow", r)
	}
}

// resetGate is a Handler whose Reset waits until released.
type resetGate struct {
	recorder
	entered, release chan struct{}
}

func (g *resetGate) Reset(reason string) {
	close(g.entered)
	<-g.release
	g.recorder.Reset(reason)
}

// A reset is counted once L1 is dropped, not before: the cluster demo read
// Resets going up, then Got the old value from an L1 not yet dropped.
func TestResetCountedAfterTheDrop(t *testing.T) {
	g := &resetGate{entered: make(chan struct{}), release: make(chan struct{})}
	b, _ := clockedBus(t, g)
	done := make(chan struct{})
	go func() {
		defer close(done)
		b.ResetL1(ReasonOverflow)
	}()
	<-g.entered
	if s := b.Stats(); s.Resets != 0 || s.ResetsByReason.Overflow != 0 || b.LastReset() != nil {
		t.Errorf("while L1 is being dropped: resets %d, by reason %+v, last %+v; want none yet", s.Resets, s.ResetsByReason, b.LastReset())
	}
	close(g.release)
	<-done
	if s := b.Stats(); s.Resets != 1 || s.ResetsByReason.Overflow != 1 || b.LastReset() == nil {
		t.Errorf("after the drop: resets %d, by reason %+v, last %+v; want one", s.Resets, s.ResetsByReason, b.LastReset())
	}
}

// Two live processes configured with one NodeID find each other through
// their heartbeats (which carry the name with another epoch); one
// heartbeat of another epoch, as a predecessor's last, is not enough.
func TestTwinNodeIDIsNoticed(t *testing.T) {
	srv := redistest.Start(t)
	var buses []*Bus
	for range 2 {
		client := redis.NewClient(&redis.Options{Addr: srv.Addr()})
		b, err := New(Config{NodeID: "same", Redis: client, Channel: "inv", Handler: &recorder{}, HeartbeatInterval: 20 * time.Millisecond})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			_ = b.Close()
			_ = client.Close()
		})
		buses = append(buses, b)
	}
	for _, b := range buses {
		redistest.WaitFor(t, 5*time.Second, b.TwinSeen, "the twin noticed")
	}

	one, _ := clockedBus(t, &recorder{})
	other := coherence.Message{Origin: "self", Epoch: 7, Seq: 1, Kind: coherence.KindHeartbeat, SentAt: 1}
	for range 2 { // one heartbeat, on both channels
		one.Deliver(coherence.Encode(&other, nil), PubSub)
		one.Deliver(coherence.Encode(&other, nil), Gossip)
	}
	if one.TwinSeen() {
		t.Error("one heartbeat of another epoch taken for a twin")
	}
}
