package bus

import (
	"github.com/strata-cache/strata/coherence"

	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/strata-cache/strata/internal/redistest"
)

// fakeClock is a Config.Now that moves only when told.
type fakeClock struct{ ns atomic.Int64 }

func newFakeClock() *fakeClock {
	c := &fakeClock{}
	c.ns.Store(time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC).UnixNano())
	return c
}

func (c *fakeClock) Now() time.Time          { return time.Unix(0, c.ns.Load()) }
func (c *fakeClock) Advance(d time.Duration) { c.ns.Add(int64(d)) }

// clockedBus is a gossip-only bus with no peers on a fake clock, for feeding
// messages through Deliver and running checkGaps by hand.
func clockedBus(t *testing.T, rec Handler) (*Bus, *fakeClock) {
	t.Helper()
	clock := newFakeClock()
	b, err := New(Config{NodeID: "self", Gossip: quietGossip{}, Handler: rec, GapGrace: 100 * time.Millisecond, Now: clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b.Close() })
	return b, clock
}

func deliver(b *Bus, epoch, seq uint64, kind coherence.Kind) {
	m := coherence.Message{Origin: "a", Epoch: epoch, Seq: seq, Kind: kind, Namespace: "ns"}
	if kind != coherence.KindHeartbeat {
		m.Items = []string{fmt.Sprint("k", seq)}
	}
	b.Deliver(coherence.Encode(&m, nil), PubSub)
}

// expireGaps moves the clock past the grace and checks for gaps.
func expireGaps(b *Bus, clock *fakeClock) {
	clock.Advance(b.cfg.GapGrace + time.Millisecond)
	b.checkGaps()
}

// Regression: the first message heard from a sender fixed the start of its
// sequence, so an earlier one arriving second (the other channel was
// faster) was dropped as a duplicate, with no gap reported.
func TestFirstContactAppliesEarlierSequences(t *testing.T) {
	type delivery struct {
		seq  uint64
		kind coherence.Kind
	}
	hb := func(seq uint64) delivery { return delivery{seq, coherence.KindHeartbeat} }
	msg := func(seq uint64) delivery { return delivery{seq, coherence.KindKeys} }
	cases := []struct {
		name       string
		deliveries []delivery
		applied    []uint64
		late       uint64 // a sequence below the first never delivered, or 0
	}{
		{"message then an earlier one", []delivery{msg(6), msg(5)}, []uint64{5, 6}, 3},
		{"heartbeat then the message it names", []delivery{hb(6), msg(6)}, []uint64{6}, 3},
		{"earlier ones out of order, duplicated", []delivery{msg(6), msg(4), msg(6), msg(5), msg(4)}, []uint64{4, 5, 6}, 3},
		{"from the first sequence", []delivery{msg(1), msg(2), hb(2)}, []uint64{1, 2}, 0},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			rec := &recorder{}
			b, clock := clockedBus(t, rec)
			for _, d := range tc.deliveries {
				deliver(b, 1, d.seq, d.kind)
			}
			expireGaps(b, clock)
			applied, _ := rec.snapshot()
			slices.Sort(applied)
			if !slices.Equal(applied, tc.applied) || b.Stats().Gaps != 0 {
				t.Fatalf("applied %v with %d gaps, want %v and none", applied, b.Stats().Gaps, tc.applied)
			}
			// Once the window closed, what arrives below it is old, and a
			// hole above it is a gap.
			if tc.late != 0 {
				deliver(b, 1, tc.late, coherence.KindKeys)
			}
			next := slices.Max(tc.applied) + 2
			deliver(b, 1, next, coherence.KindKeys)
			expireGaps(b, clock)
			applied, _ = rec.snapshot()
			if !slices.Contains(applied, next) || (tc.late != 0 && slices.Contains(applied, tc.late)) || b.Stats().Gaps != 1 {
				t.Fatalf("after the window: applied %v with %d gaps, want %d applied, not %d, and the hole below it a gap", applied, b.Stats().Gaps, next, tc.late)
			}
			b.mu.Lock()
			defer b.mu.Unlock()
			if o := b.origins["a"]; len(o.seen) != 0 || len(o.missing) != 0 {
				t.Fatalf("origin still tracks %d seen, %d missing", len(o.seen), len(o.missing))
			}
		})
	}
}

// Regression: any epoch other than the tracked one replaced the sender's
// state, so a delayed message of its previous process wiped the gap
// tracking of the current one.
func TestOlderEpochDoesNotReplaceNewer(t *testing.T) {
	rec := &recorder{}
	b, clock := clockedBus(t, rec)
	const older, newer = 10, 20
	deliver(b, newer, 1, coherence.KindKeys)
	deliver(b, newer, 2, coherence.KindKeys)
	deliver(b, older, 5, coherence.KindKeys)      // a late message of the previous process
	deliver(b, older, 9, coherence.KindHeartbeat) // and its last heartbeat
	deliver(b, newer, 4, coherence.KindKeys)      // 3 is lost
	expireGaps(b, clock)
	if applied, _ := rec.snapshot(); !slices.Equal(applied, []uint64{1, 2, 5, 4}) {
		t.Errorf("applied %v, want 1, 2, the older epoch's 5, then 4", applied)
	}
	if s := b.Stats(); s.Gaps != 1 {
		t.Errorf("%d gaps, want 1: the newer epoch's lost 3, nothing of the older", s.Gaps)
	}
	b.mu.Lock()
	epoch := b.origins["a"].epoch
	b.mu.Unlock()
	if epoch != newer {
		t.Errorf("tracked epoch %d, want %d", epoch, newer)
	}

	// The tracked epoch silent for LinkTimeout: a smaller one takes over (a
	// clock stepped back across a restart, or a producer with random epochs).
	clock.Advance(b.cfg.LinkTimeout)
	deliver(b, older, 6, coherence.KindKeys)
	b.mu.Lock()
	epoch = b.origins["a"].epoch
	b.mu.Unlock()
	if epoch != older {
		t.Errorf("after silence: tracked epoch %d, want %d", epoch, older)
	}
}

func TestEpochsIncreaseWithStartTime(t *testing.T) {
	clock := newFakeClock()
	var last uint64
	for i := range 20 {
		b, err := New(Config{NodeID: "a", Handler: &recorder{}, Now: clock.Now})
		if err != nil {
			t.Fatal(err)
		}
		_ = b.Close()
		if b.Epoch() <= last || b.Epoch()%2 == 0 {
			t.Fatalf("start %d: epoch %d after %d, want larger and odd", i, b.Epoch(), last)
		}
		last = b.Epoch()
		clock.Advance(time.Millisecond)
	}
}

// captureGossip is a Gossiper that records what it is given to broadcast.
type captureGossip struct {
	mu   sync.Mutex
	sent [][]byte
}

func (*captureGossip) Name() string      { return "a" }
func (*captureGossip) Members() []string { return []string{"a"} }
func (*captureGossip) MaxPacket() int    { return 1336 }
func (g *captureGossip) Broadcast(msg []byte) error {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.sent = append(g.sent, msg)
	return nil
}

// Regression: Encode had no limit while Decode rejects messages over
// MaxMessageSize or MaxItems, so a large invalidation was dropped by every
// receiver.
func TestLargeInvalidationIsSplitWithinTheLimits(t *testing.T) {
	key := []byte("0123456789abcdef")
	cases := []struct {
		name  string
		items []string
	}{
		{"many small items", makeKeys(coherence.MaxItems+coherence.MaxItems/2, 1)},
		{"large items", makeKeys(3000, 1024)},
		{"one item", makeKeys(1, 1024)},
		{"no items", nil},
	}
	for _, tc := range cases {
		items := tc.items
		t.Run(tc.name, func(t *testing.T) {
			g := &captureGossip{}
			origin := strings.Repeat("o", coherence.MaxOriginLen)
			b, err := New(Config{NodeID: origin, Gossip: g, Handler: &recorder{}, Key: key, HeartbeatInterval: time.Hour, GapGrace: time.Hour})
			if err != nil {
				t.Fatal(err)
			}
			defer b.Close()
			ctx := WithL2Missed(context.Background())
			if err := b.Publish(ctx, coherence.KindKeys, strings.Repeat("n", 1000), items, 42); err != nil {
				t.Fatal(err)
			}
			var got []string
			for i, data := range g.sent {
				m, err := coherence.Decode(data, key)
				if err != nil || len(data) > coherence.MaxMessageSize {
					t.Fatalf("part %d: %d bytes: %v", i, len(data), err)
				}
				if m.Seq != uint64(i+1) || m.Kind != coherence.KindKeys || m.Version != 42 || !m.L2Missed || m.Origin != origin {
					t.Fatalf("part %d: %+v", i, m)
				}
				got = append(got, m.Items...)
			}
			if !slices.Equal(got, items) || len(g.sent) != int(b.Stats().Published) {
				t.Fatalf("%d parts carry %d of %d items; %d published", len(g.sent), len(got), len(items), b.Stats().Published)
			}
			t.Logf("%d parts", len(g.sent))
		})
	}
}

func makeKeys(n, size int) []string {
	keys := make([]string, n)
	for i := range keys {
		k := fmt.Sprint(i)
		keys[i] = k + strings.Repeat("x", max(0, size-len(k)))
	}
	return keys
}

func TestOversizedItemIsAnErrorAndAGap(t *testing.T) {
	g := &captureGossip{}
	b, err := New(Config{NodeID: "a", Gossip: g, Handler: &recorder{}, HeartbeatInterval: time.Hour, GapGrace: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	items := []string{"k1", strings.Repeat("x", coherence.MaxMessageSize), "k2"}
	if err := b.Publish(context.Background(), coherence.KindKeys, "ns", items, 1); !errors.Is(err, coherence.ErrTooLarge) {
		t.Fatalf("err = %v, want ErrTooLarge", err)
	}
	var seqs []uint64
	for _, data := range g.sent {
		m, err := coherence.Decode(data, nil)
		if err != nil {
			t.Fatal(err)
		}
		seqs = append(seqs, m.Seq)
	}
	// The oversized item's sequence is never sent: receivers see a gap.
	if !slices.Equal(seqs, []uint64{1, 3}) || b.seq.Load() != 3 {
		t.Fatalf("sent sequences %v, latest %d; want 1 and 3 of 3", seqs, b.seq.Load())
	}
}

// lazy is a message for WaitFor, formatted only if the wait fails.
type lazy func() string

func (f lazy) String() string { return f() }

// keyRecorder is a Handler that records the keys applied.
type keyRecorder struct {
	mu     sync.Mutex
	keys   map[string]int
	resets []string
}

func (r *keyRecorder) Apply(m *coherence.Message) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.keys == nil {
		r.keys = map[string]int{}
	}
	for _, k := range m.Items {
		r.keys[k]++
	}
}

func (r *keyRecorder) Reset(reason string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.resets = append(r.resets, reason)
}

func (r *keyRecorder) Trust(bool) {}

func (r *keyRecorder) count() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.keys)
}

// redisBuses starts one pub/sub-only bus per handler over one Redis, named
// a, b, ..., each trusted and hearing the others.
func redisBuses(t *testing.T, handlers ...Handler) []*Bus {
	t.Helper()
	srv := redistest.Start(t)
	var buses []*Bus
	for i, h := range handlers {
		client := redis.NewClient(&redis.Options{Addr: srv.Addr()})
		bus, err := New(Config{NodeID: string(rune('a' + i)), Redis: client, Channel: "inv", Handler: h, HeartbeatInterval: 100 * time.Millisecond})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			_ = bus.Close()
			_ = client.Close()
		})
		buses = append(buses, bus)
	}
	for _, bus := range buses {
		redistest.WaitFor(t, 5*time.Second, func() bool { return bus.Trusted() && len(bus.livePeers()) == len(buses)-1 }, "bus trusted, peers heard")
	}
	return buses
}

// Regression for the size limit over a real channel: 5,000 keys of 1,000
// bytes (5 MB) reach the receiver whole.
func TestLargeDeleteOverPubSub(t *testing.T) {
	rec := &keyRecorder{}
	buses := redisBuses(t, &recorder{}, rec)
	keys := makeKeys(5000, 1000)
	if err := buses[0].Publish(context.Background(), coherence.KindKeys, "ns", keys, 1); err != nil {
		t.Fatal(err)
	}
	// The bus counts a message applied after its handler returns: wait for
	// the count too, not only for the keys.
	redistest.WaitFor(t, 30*time.Second, func() bool {
		return rec.count() == len(keys) && buses[1].Stats().Applied == buses[0].Stats().Published
	}, "every key applied: %v", lazy(func() string {
		return fmt.Sprintf("%d of %d; sender %+v, receiver %+v", rec.count(), len(keys), buses[0].Stats(), buses[1].Stats())
	}))
	if s := buses[1].Stats(); s.Gaps != 0 || s.Malformed != 0 || s.Applied != buses[0].Stats().Published {
		t.Fatalf("receiver stats %+v, want every part applied, no gap, nothing malformed", s)
	}
	if n := buses[0].Stats().Published; n < 5 {
		t.Fatalf("%d parts, want at least 5 for 5 MB", n)
	}
}

func TestLargePublishAckedWaitsForEveryPart(t *testing.T) {
	rec := &keyRecorder{}
	buses := redisBuses(t, &recorder{}, rec)
	keys := makeKeys(3000, 1000)
	if err := buses[0].PublishAcked(context.Background(), coherence.KindKeys, "ns", keys, 1, 30*time.Second); err != nil {
		t.Fatal(err)
	}
	if n := rec.count(); n != len(keys) {
		t.Fatalf("acknowledged with %d of %d keys applied", n, len(keys))
	}
}

// linkGossip is a Gossiper that hands broadcasts straight to another bus,
// or loses them.
type linkGossip struct {
	mu   sync.Mutex
	to   *Bus
	lose bool
}

func (*linkGossip) Name() string      { return "a" }
func (*linkGossip) Members() []string { return []string{"a"} }
func (*linkGossip) MaxPacket() int    { return 1336 }
func (g *linkGossip) Broadcast(msg []byte) error {
	g.mu.Lock()
	to, lose := g.to, g.lose
	g.mu.Unlock()
	if to != nil && !lose {
		to.Deliver(msg, Gossip)
	}
	return nil
}

func (g *linkGossip) setLose(v bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.lose = v
}

// Regression: a sender's last message lost on every channel went unnoticed
// when the sender closed before its next heartbeat.
func TestCloseSendsLastHeartbeat(t *testing.T) {
	rec := &recorder{}
	receiver, err := New(Config{NodeID: "b", Gossip: quietGossip{}, Handler: rec, GapGrace: 20 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer receiver.Close()
	link := &linkGossip{to: receiver}
	// No periodic heartbeat within the test: only Close's can name seq 2.
	sender, err := New(Config{NodeID: "a", Gossip: link, Handler: &recorder{}, HeartbeatInterval: time.Hour, GapGrace: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	defer sender.Close()
	ctx := context.Background()
	if err := sender.Publish(ctx, coherence.KindKeys, "ns", []string{"k1"}, 1); err != nil {
		t.Fatal(err)
	}
	link.setLose(true)
	if err := sender.Publish(ctx, coherence.KindKeys, "ns", []string{"k2"}, 2); err != nil {
		t.Fatal(err)
	}
	link.setLose(false)
	_ = sender.Close()
	redistest.WaitFor(t, 5*time.Second, func() bool { return receiver.Stats().Gaps == 1 }, "the lost message seen as a gap")
	if applied, resets := rec.snapshot(); !slices.Equal(applied, []uint64{1}) || !slices.Contains(resets, "sequence gap") {
		t.Fatalf("applied %v, resets %v; want 1 applied and a gap reset", applied, resets)
	}
}

// The receive loop no longer times out (see subscribe): a subscription that
// is refused, and then allowed, must still be replaced once silent.
func TestRefusedSubscriptionIsRetried(t *testing.T) {
	srv := redistest.Start(t)
	srv.Do(t, "ACL", "SETUSER", "bus", "on", ">pw", "~*", "+@all", "resetchannels")
	client := redis.NewClient(&redis.Options{Addr: srv.Addr(), Username: "bus", Password: "pw"})
	defer client.Close()
	b, err := New(Config{NodeID: "a", Redis: client, Channel: "inv", Handler: &recorder{}, HeartbeatInterval: 100 * time.Millisecond, LinkTimeout: 300 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	redistest.WaitFor(t, 5*time.Second, func() bool {
		log, _ := srv.Do(t, "ACL", "LOG").([]any)
		return len(log) > 0
	}, "SUBSCRIBE refused")
	srv.Do(t, "ACL", "SETUSER", "bus", "allchannels")
	redistest.WaitFor(t, 10*time.Second, b.Trusted, "trusted once SUBSCRIBE is allowed")
}

// Durations under a millisecond are refused: the tickers run at half of
// them, and zero panics.
func TestTinyIntervalsAreRefused(t *testing.T) {
	for _, cfg := range []Config{{HeartbeatInterval: time.Nanosecond}, {GapGrace: time.Nanosecond}, {LinkTimeout: time.Microsecond}} {
		cfg.NodeID, cfg.Gossip, cfg.Handler = "self", quietGossip{}, &recorder{}
		if b, err := New(cfg); err == nil {
			_ = b.Close()
			t.Errorf("New(%+v) succeeded", cfg)
		}
	}
}
