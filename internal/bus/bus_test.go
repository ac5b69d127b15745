package bus

import (
	"github.com/strata-cache/strata/coherence"

	"context"
	"errors"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/strata-cache/strata/internal/redistest"
	"go.uber.org/goleak"
)

// memberlist's Shutdown does not wait for a probe in flight (the real
// gossip nodes of order_review_test.go): it ends on its own at the probe
// timeout (ProfileLocal: 200 ms), as tiered's TestMain says.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m, goleak.IgnoreTopFunction("github.com/hashicorp/memberlist.(*Memberlist).probeNode"))
}

// recorder is a Handler that records what it is told.
type recorder struct {
	mu      sync.Mutex
	applied []uint64 // sequences
	resets  []string
	trusted bool
}

func (r *recorder) Apply(m *coherence.Message) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.applied = append(r.applied, m.Seq)
}

func (r *recorder) Reset(reason string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.resets = append(r.resets, reason)
}

func (r *recorder) Trust(v bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.trusted = v
}

func (r *recorder) snapshot() (applied []uint64, resets []string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.applied), slices.Clone(r.resets)
}

// quietGossip is a Gossiper with no peers and no sends.
type quietGossip struct{}

func (quietGossip) Name() string             { return "self" }
func (quietGossip) Members() []string        { return []string{"self"} }
func (quietGossip) Broadcast(_ []byte) error { return nil }
func (quietGossip) MaxPacket() int           { return 1336 }

func TestDuplicatesAndReorderingApplyOnce(t *testing.T) {
	for trial := range 200 {
		rng := rand.New(rand.NewPCG(uint64(trial), 7))
		rec := &recorder{}
		b, err := New(Config{NodeID: "self", Gossip: quietGossip{}, Handler: rec, GapGrace: time.Hour})
		if err != nil {
			t.Fatal(err)
		}
		n := 1 + rng.IntN(30)
		var deliveries []coherence.Message
		for _, origin := range []string{"a", "b"} {
			for seq := uint64(1); seq <= uint64(n); seq++ {
				m := coherence.Message{Origin: origin, Epoch: 1, Seq: seq, Kind: coherence.KindKeys, Namespace: "ns", Items: []string{"k"}}
				for range 1 + rng.IntN(3) { // each sent on up to three paths
					deliveries = append(deliveries, m)
				}
			}
		}
		// The first message of each origin arrives first (it fixes the start
		// of the sequence); everything after comes in any order.
		first := []coherence.Message{deliveries[0], deliveries[slices.IndexFunc(deliveries, func(m coherence.Message) bool { return m.Origin == "b" })]}
		rng.Shuffle(len(deliveries), func(i, j int) { deliveries[i], deliveries[j] = deliveries[j], deliveries[i] })
		for _, m := range append(first, deliveries...) {
			b.Deliver(coherence.Encode(&m, nil), Channel(rng.IntN(2)))
		}
		_ = b.Close()
		applied, resets := rec.snapshot()
		slices.Sort(applied)
		want := make([]uint64, 0, 2*n)
		for seq := uint64(1); seq <= uint64(n); seq++ {
			want = append(want, seq, seq)
		}
		if !slices.Equal(applied, want) || len(resets) > 1 {
			t.Fatalf("trial %d: applied %v (resets %v), want each of 1..%d once per origin", trial, applied, resets, n)
		}
	}
}

// pair is two buses over one Redis, pub/sub only.
func pair(t *testing.T) (a, b *Bus, ra, rb *recorder) {
	t.Helper()
	srv := redistest.Start(t)
	ra, rb = &recorder{}, &recorder{}
	for i, rec := range []*recorder{ra, rb} {
		client := redis.NewClient(&redis.Options{Addr: srv.Addr()})
		bus, err := New(Config{NodeID: []string{"a", "b"}[i], Redis: client, Channel: "inv", Handler: rec, HeartbeatInterval: 200 * time.Millisecond})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			_ = bus.Close()
			_ = client.Close()
		})
		redistest.WaitFor(t, 5*time.Second, func() bool { return bus.Trusted() }, "bus trusted")
		if i == 0 {
			a = bus
		} else {
			b = bus
		}
	}
	return a, b, ra, rb
}

func TestLostMessageIsDetectedAsGap(t *testing.T) {
	a, b, _, rb := pair(t)
	ctx := context.Background()
	if err := a.Publish(ctx, coherence.KindKeys, "ns", []string{"k1"}, 1); err != nil {
		t.Fatal(err)
	}
	redistest.WaitFor(t, 5*time.Second, func() bool { applied, _ := rb.snapshot(); return len(applied) == 1 }, "first message applied")
	_, before := rb.snapshot()
	a.seq.Add(1) // a message lost on every channel
	start := time.Now()
	redistest.WaitFor(t, 5*time.Second, func() bool { _, resets := rb.snapshot(); return len(resets) > len(before) }, "gap detected")
	t.Logf("gap detected after %v", time.Since(start))
	if s := b.Stats(); s.Gaps != 1 {
		t.Errorf("stats %+v, want one gap", s)
	}
	if err := a.Publish(ctx, coherence.KindKeys, "ns", []string{"k3"}, 3); err != nil {
		t.Fatal(err)
	}
	redistest.WaitFor(t, 5*time.Second, func() bool { applied, _ := rb.snapshot(); return slices.Contains(applied, 3) }, "later messages still applied")
}

func TestOwnMessagesAreIgnoredAndNewEpochResets(t *testing.T) {
	a, b, ra, rb := pair(t)
	ctx := context.Background()
	if err := a.Publish(ctx, coherence.KindKeys, "ns", []string{"k"}, 1); err != nil {
		t.Fatal(err)
	}
	redistest.WaitFor(t, 5*time.Second, func() bool { applied, _ := rb.snapshot(); return len(applied) == 1 }, "applied on b")
	if applied, _ := ra.snapshot(); len(applied) != 0 {
		t.Errorf("a applied its own message: %v", applied)
	}
	// The same node restarted: a new epoch starting again at 1 is applied.
	restarted := coherence.Message{Origin: "a", Epoch: a.epoch + 2, Seq: 1, Kind: coherence.KindKeys, Namespace: "ns", Items: []string{"k"}}
	b.Deliver(coherence.Encode(&restarted, nil), PubSub)
	if applied, _ := rb.snapshot(); len(applied) != 2 {
		t.Errorf("new epoch not applied: %v", applied)
	}
}

// blocker is a Handler whose Apply waits until released.
type blocker struct {
	recorder
	release chan struct{}
}

func (b *blocker) Apply(m *coherence.Message) {
	<-b.release
	b.recorder.Apply(m)
}

func TestPublishAcked(t *testing.T) {
	ctx := context.Background()
	stuck := &blocker{release: make(chan struct{})}
	// Every bus hears every other's heartbeat: all are live members.
	buses := redisBuses(t, &recorder{}, &recorder{}, stuck)
	err := buses[0].PublishAcked(ctx, coherence.KindKeys, "ns", []string{"k"}, 1, 300*time.Millisecond)
	if !errors.Is(err, coherence.ErrNotAcknowledged) || !strings.Contains(err.Error(), "[c]") {
		t.Fatalf("with c stuck: %v, want ErrNotAcknowledged naming c only", err)
	}
	close(stuck.release)
	if err := buses[0].PublishAcked(ctx, coherence.KindKeys, "ns", []string{"k2"}, 2, 5*time.Second); err != nil {
		t.Fatalf("with every member applying: %v", err)
	}
}

func TestBadGossipPayloadsAreDroppedAndCounted(t *testing.T) {
	rec := &recorder{}
	key := []byte("0123456789abcdef")
	b, err := New(Config{NodeID: "self", Gossip: quietGossip{}, Handler: rec, Key: key})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	valid := coherence.Message{Origin: "peer", Epoch: 1, Seq: 1, Kind: coherence.KindKeys, Namespace: "ns", Items: []string{"k"}}
	for _, payload := range [][]byte{nil, {1, 2, 3}, coherence.Encode(&valid, nil), coherence.Encode(&valid, []byte("wrong-key-000000"))} {
		b.Deliver(payload, Gossip)
	}
	if s := b.Stats(); s.Malformed != 2 || s.Unauthenticated != 2 || s.Applied != 0 {
		t.Fatalf("stats %+v, want 2 malformed, 2 unauthenticated, nothing applied", s)
	}
	b.Deliver(coherence.Encode(&valid, key), Gossip)
	if applied, _ := rec.snapshot(); len(applied) != 1 {
		t.Fatalf("the authenticated message was not applied: %v", applied)
	}
}

// orderLog records the order in which a message reached each channel.
type orderLog struct {
	mu        sync.Mutex
	sends     []string
	once      sync.Once
	published chan struct{} // closed at the first "publish"
}

func newOrderLog() *orderLog { return &orderLog{published: make(chan struct{})} }

func (l *orderLog) add(s string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.sends = append(l.sends, s)
	if s == "publish" {
		l.once.Do(func() { close(l.published) })
	}
}

func (l *orderLog) snapshot() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.sends)
}

// started returns a channel closed once a PUBLISH was logged.
func (l *orderLog) started() <-chan struct{} { return l.published }

// heartbeat reports whether data is a heartbeat, which the ticker may send
// at any time, in the middle of a test's Publish (its first one goes out
// at the ticker's first tick, GapGrace/2 after New).
func heartbeat(data []byte) bool {
	m, err := coherence.Decode(data, nil)
	return err == nil && m.Kind == coherence.KindHeartbeat
}

// orderGossip is a Gossiper that logs its broadcasts of invalidations;
// messages up to maxPacket bytes are datagrams. A larger one is a stream:
// its Broadcast first waits (for at most 5 s) for the PUBLISH of the same
// message to start, which it can only do if PUBLISH does not wait for it.
type orderGossip struct {
	log       *orderLog
	maxPacket int
}

func (orderGossip) Name() string      { return "self" }
func (orderGossip) Members() []string { return []string{"self"} }
func (g orderGossip) MaxPacket() int  { return g.maxPacket }
func (g orderGossip) Broadcast(msg []byte) error {
	if heartbeat(msg) {
		return nil
	}
	if len(msg) > g.maxPacket {
		timeout := time.NewTimer(5 * time.Second)
		defer timeout.Stop()
		select {
		case <-g.log.started():
		case <-timeout.C:
		}
	}
	g.log.add("gossip")
	return nil
}

// orderHook logs the PUBLISH commands of invalidations a client starts.
type orderHook struct{ log *orderLog }

func (orderHook) DialHook(next redis.DialHook) redis.DialHook { return next }
func (h orderHook) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		if args := cmd.Args(); cmd.Name() == "publish" && len(args) == 3 {
			if data, ok := args[2].([]byte); !ok || !heartbeat(data) {
				h.log.add("publish")
			}
		}
		return next(ctx, cmd)
	}
}
func (orderHook) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return next
}

// TestGossipDatagramsAreSentBeforePublish: an invalidation's datagrams
// leave before PUBLISH waits for Redis's reply, so they travel during the
// round trip (with PUBLISH first, they left only after it: send-to-apply
// p50 about 110 µs instead of about 50 in BenchmarkPropagation). A message
// too large for a datagram goes over TCP streams, which may wait for an
// unreachable member: PUBLISH does not wait for them (orderGossip holds
// such a Broadcast until PUBLISH started). Heartbeats are not logged: the
// ticker's first one could fall in the middle of the test's Publish.
func TestGossipDatagramsAreSentBeforePublish(t *testing.T) {
	srv := redistest.Start(t)
	for _, c := range []struct {
		name      string
		items     []string
		maxPacket int
		want      []string
	}{
		{"datagram", []string{"k"}, 1336, []string{"gossip", "publish"}},
		{"stream", []string{strings.Repeat("k", 2000)}, 1336, []string{"publish", "gossip"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			log := newOrderLog()
			client := redis.NewClient(&redis.Options{Addr: srv.Addr()})
			client.AddHook(orderHook{log})
			b, err := New(Config{NodeID: "self", Redis: client, Channel: "inv", Gossip: orderGossip{log, c.maxPacket}, Handler: &recorder{}, HeartbeatInterval: time.Hour})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() {
				_ = b.Close()
				_ = client.Close()
			})
			if err := b.Publish(context.Background(), coherence.KindKeys, "ns", c.items, 1); err != nil {
				t.Fatal(err)
			}
			if got := log.snapshot(); !slices.Equal(got, c.want) {
				t.Errorf("sends in order %v, want %v", got, c.want)
			}
		})
	}
}
