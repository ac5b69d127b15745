// Package bus is a replica's invalidation bus: it sends each invalidation
// (a coherence.Message) over Redis pub/sub and memberlist gossip, applies
// what it receives exactly once, detects lost messages by their sequence
// and dead links by their heartbeats, and tells its Handler when L1 can no
// longer be trusted.
package bus

import (
	"github.com/strata-cache/strata/coherence"

	"context"
	"errors"
	"fmt"
	"log/slog"
	mathrand "math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
)

// Defaults used when a Config field is zero.
const (
	// DefaultHeartbeatInterval: a lost message or a dead link is noticed
	// within about two intervals, inside guarantee 5's and 6's 2 s.
	DefaultHeartbeatInterval = 500 * time.Millisecond
	// DefaultGapGrace is how long a missing sequence may stay missing before
	// it counts as lost on both channels: far above the measured p99 of either
	// channel (0.3 ms pub/sub, 3 ms gossip), well below a heartbeat.
	DefaultGapGrace = 250 * time.Millisecond
	// DefaultLinkTimeout is how long a channel may stay silent (no message,
	// heartbeat or pong) before it no longer vouches for L1.
	DefaultLinkTimeout = 1500 * time.Millisecond
)

// maxCloseHeartbeat bounds the last heartbeat Close sends: long enough for
// a loopback or LAN round trip to Redis, short enough not to hold up a
// shutdown.
const maxCloseHeartbeat = 250 * time.Millisecond

// Channel names a transport.
type Channel uint8

// Channels.
const (
	PubSub Channel = iota
	Gossip
)

// Gossiper is the gossip transport: a cluster.Node satisfies it.
type Gossiper interface {
	Name() string
	Members() []string
	Broadcast(msg []byte) error
	// MaxPacket is the size of the largest message Broadcast sends as
	// datagrams, without waiting for the receivers. Such a Broadcast must
	// not block: the bus makes it before PUBLISH. A larger one may (TCP
	// streams): the bus makes it on another goroutine while PUBLISH runs.
	MaxPacket() int
}

// Handler applies what the bus receives. Its methods are called on the bus's
// goroutines, one at a time, and must not block for long.
type Handler interface {
	// Apply applies an invalidation from another node. It must be
	// idempotent: a message is applied once, but a gap reset may replay
	// its effect.
	Apply(m *coherence.Message)
	// Reset drops every L1 entry: a message may have been lost (a gap, a
	// receive queue overflow, or both channels down for a while).
	Reset(reason string)
	// Trust reports whether L1 may be served: false while no channel can
	// vouch that invalidations are arriving.
	Trust(trusted bool)
}

// Config configures a Bus.
type Config struct {
	// NodeID names this node; messages from it are ignored. Required.
	NodeID string
	// Redis carries the pub/sub channel. Nil means no pub/sub.
	Redis redis.UniversalClient
	// Channel is the pub/sub channel name. Required with Redis.
	Channel string
	// Gossip is the gossip transport. Nil means no gossip.
	Gossip Gossiper
	// Key authenticates messages with HMAC-SHA-256: sent messages carry a
	// MAC, received ones without a valid MAC are dropped. Nil means none.
	Key []byte
	// HeartbeatInterval is how often the node's latest sequence is sent on
	// both channels. Zero means DefaultHeartbeatInterval.
	HeartbeatInterval time.Duration
	// GapGrace: zero means DefaultGapGrace.
	GapGrace time.Duration
	// LinkTimeout: zero means DefaultLinkTimeout.
	LinkTimeout time.Duration
	// Handler applies invalidations. Required.
	Handler Handler
	// Logger receives warnings. Nil means slog.Default().
	Logger *slog.Logger
	// Now is the clock for send times and timeouts. Nil means time.Now.
	Now func() time.Time
}

func (c *Config) setDefaults() error {
	if c.NodeID == "" || c.Handler == nil || (c.Redis != nil && c.Channel == "") {
		return errors.New("coherence: NodeID, Handler and (with Redis) Channel are required")
	}
	if len(c.NodeID) > coherence.MaxOriginLen {
		// Receivers would drop every message as malformed.
		return fmt.Errorf("coherence: NodeID of %d bytes is longer than %d", len(c.NodeID), coherence.MaxOriginLen)
	}
	for _, d := range []time.Duration{c.HeartbeatInterval, c.GapGrace, c.LinkTimeout} {
		if d != 0 && d < time.Millisecond {
			// Tickers run at half these: zero would panic, a nanosecond spin.
			return fmt.Errorf("coherence: HeartbeatInterval, GapGrace and LinkTimeout must be zero or at least 1ms, not %v", d)
		}
	}
	if c.HeartbeatInterval == 0 {
		c.HeartbeatInterval = DefaultHeartbeatInterval
	}
	if c.GapGrace == 0 {
		c.GapGrace = DefaultGapGrace
	}
	if c.LinkTimeout == 0 {
		c.LinkTimeout = DefaultLinkTimeout
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	return nil
}

type stats struct {
	published, publishErrors, received, applied, duplicates atomic.Uint64
	malformed, unauthenticated, gaps, resets, linkLosses    atomic.Uint64
	appliedKinds                                            kindCounts
	resetReasons                                            [reasons]atomic.Uint64
	channels                                                [2]channelCounts // by Channel
}

// kindCounts count invalidations by coherence.Kind (heartbeats and acks
// are not counted).
type kindCounts [coherence.KindClear + 1]atomic.Uint64

func (k *kindCounts) add(kind coherence.Kind) {
	if kind >= coherence.KindKeys && kind <= coherence.KindClear {
		k[kind].Add(1)
	}
}

func (k *kindCounts) load() coherence.Kinds {
	return coherence.Kinds{Keys: k[coherence.KindKeys].Load(), Tags: k[coherence.KindTags].Load(),
		Pattern: k[coherence.KindPattern].Load(), Clear: k[coherence.KindClear].Load()}
}

type channelCounts struct {
	sent, received      kindCounts
	sendErrors, dropped atomic.Uint64
}

func (c *channelCounts) load() coherence.ChannelStats {
	return coherence.ChannelStats{Sent: c.sent.load(), SendErrors: c.sendErrors.Load(), Received: c.received.load(), Dropped: c.dropped.Load()}
}

// Reason is why the bus drops L1.
type Reason uint8

// Reasons.
const (
	ReasonGap           Reason = iota // a sequence lost on both channels
	ReasonOverflow                    // the gossip receive queue overflowed
	ReasonLinkRecovered               // a channel vouches again after none did
	reasons
)

// String describes r for logs and Health.
func (r Reason) String() string {
	switch r {
	case ReasonGap:
		return "sequence gap"
	case ReasonOverflow:
		return "gossip receive queue overflow"
	case ReasonLinkRecovered:
		return "link recovered"
	}
	return "unknown"
}

// Bus sends invalidations on every configured channel and applies received
// ones once. Create it with New; Close stops it.
type Bus struct {
	cfg   Config
	epoch uint64
	seq   atomic.Uint64

	mu      sync.Mutex
	origins map[string]*origin

	acks acks

	pubsubSeen atomic.Int64 // Unix ns of the last pub/sub activity
	lastReset  atomic.Pointer[Reset]
	twin       twin
	trusted    atomic.Bool
	stats      stats

	cancel context.CancelFunc
	wg     sync.WaitGroup
	once   sync.Once
}

// New starts a bus: its pub/sub receiver and its heartbeat and health loop.
func New(cfg Config) (*Bus, error) {
	if err := cfg.setDefaults(); err != nil {
		return nil, err
	}
	b := &Bus{cfg: cfg, epoch: newEpoch(cfg.Now()), origins: map[string]*origin{}}
	ctx, cancel := context.WithCancel(context.Background())
	b.cancel = cancel
	if !b.hasChannels() {
		// A lone process with no channel has no peer to miss.
		b.setTrusted(true)
	}
	if cfg.Redis != nil {
		b.wg.Go(func() { b.runPubSub(ctx) })
	}
	if b.hasChannels() {
		b.wg.Go(func() { b.runTicker(ctx) })
	}
	return b, nil
}

// newEpoch numbers a process start so that a later start of the same NodeID
// has a larger epoch (see Message.Epoch): the start time in Unix nanoseconds
// with its low 16 bits random, so that two starts within 65 µs still differ
// (in no particular order), and odd, so that it is never zero.
func newEpoch(start time.Time) uint64 {
	return uint64(start.UnixNano())&^0xffff | mathrand.Uint64()&0xffff | 1
}

func (b *Bus) hasChannels() bool { return b.cfg.Redis != nil || b.cfg.Gossip != nil }

// Trusted reports whether some channel currently vouches for L1.
func (b *Bus) Trusted() bool { return b.trusted.Load() }

// WaitTrusted waits until some channel vouches for L1 or ctx ends, and
// reports whether one does.
func (b *Bus) WaitTrusted(ctx context.Context) bool {
	for delay := time.Millisecond; !b.trusted.Load(); delay = min(2*delay, 50*time.Millisecond) {
		if ctx.Err() != nil {
			return false
		}
		pause(ctx, delay)
	}
	return true
}

// Epoch returns this bus's epoch.
func (b *Bus) Epoch() uint64 { return b.epoch }

// Stats returns the bus's counters.
func (b *Bus) Stats() coherence.Stats {
	s := &b.stats
	return coherence.Stats{
		Published: s.published.Load(), PublishErrors: s.publishErrors.Load(), Received: s.received.Load(),
		Applied: s.applied.Load(), Duplicates: s.duplicates.Load(), Malformed: s.malformed.Load(),
		Unauthenticated: s.unauthenticated.Load(), Gaps: s.gaps.Load(), Resets: s.resets.Load(), LinkLosses: s.linkLosses.Load(),
		AppliedByKind: s.appliedKinds.load(),
		ResetsByReason: coherence.Resets{Gap: s.resetReasons[ReasonGap].Load(), Overflow: s.resetReasons[ReasonOverflow].Load(),
			LinkRecovered: s.resetReasons[ReasonLinkRecovered].Load()},
		PubSub: s.channels[PubSub].load(), Gossip: s.channels[Gossip].load(),
	}
}

// Publish sends an invalidation on every channel. It fails only when every
// channel failed; a message lost everywhere is still noticed by receivers as
// a gap at the next heartbeat.
//
// Items that do not fit in one message (MaxMessageSize, MaxItems) are split
// over several, each with its own sequence. An item too large for any
// message is not sent: Publish returns an error wrapping ErrTooLarge, and
// receivers see the sequence it would have had as a gap and drop L1.
func (b *Bus) Publish(ctx context.Context, kind coherence.Kind, namespace string, items []string, version uint64) error {
	return b.publish(ctx, b.invalidation(ctx, kind, namespace, version, false), items, nil)
}

// invalidation is the template of the messages that carry one invalidation.
func (b *Bus) invalidation(ctx context.Context, kind coherence.Kind, namespace string, version uint64, ackWanted bool) coherence.Message {
	return coherence.Message{
		Origin: b.cfg.NodeID, Epoch: b.epoch, Kind: kind, Namespace: namespace,
		Version: version, AckWanted: ackWanted, L2Missed: l2Missed(ctx), L2Server: l2Server(ctx),
	}
}

// publish sends template with items, in as many parts as the size limits
// require, each with the next sequence. sending, if not nil, is told each
// part's sequence just before the part goes out. The error joins the parts'.
func (b *Bus) publish(ctx context.Context, template coherence.Message, items []string, sending func(seq uint64)) error {
	var errs []error
	for _, p := range splitItems(items, itemBudget(&template, b.cfg.Key)) {
		m := template
		m.Seq, m.Items, m.SentAt = b.seq.Add(1), p.items, b.cfg.Now().UnixNano()
		if p.tooLarge {
			// The sequence stays unsent: receivers see a gap and drop L1,
			// which covers this invalidation.
			errs = append(errs, fmt.Errorf("%w: namespace of %d bytes, item of %d", coherence.ErrTooLarge, len(m.Namespace), longest(p.items)))
			continue
		}
		if sending != nil {
			sending(m.Seq)
		}
		b.stats.published.Add(1)
		if err := b.send(ctx, m.Kind, coherence.Encode(&m, b.cfg.Key)); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// send writes data, a message of kind, on every channel and joins the
// errors if all failed.
//
// Neither channel waits for the other. A message that fits one datagram
// (Gossiper.MaxPacket) is broadcast first: its datagrams do not wait for
// an answer, so they travel while PUBLISH waits for Redis's reply, and
// the receivers mostly have the message before the writer's Set returns.
// Sent after PUBLISH, they left only once its round trip was over, and
// not before a stalled Redis's read timeout.
// BenchmarkPropagation (benchmarks module, 3 replicas, 3,000 rounds, in
// alternated runs): send-to-apply p50 103-113 µs with pub/sub first, 47-65
// µs with gossip first; apply after Set returned, p99 131 µs, then 88-113
// (rueidis tracking in the same runs: 72-112). BenchmarkScaling's p99 at
// 3, 10 and 30 replicas went from 138, 259 and 828 µs to 24, 91 and 478.
// A larger message goes over a TCP stream to each member in turn, which
// can wait up to the gossip profile's TCP timeout for one that is
// unreachable: it is broadcast on its own goroutine while PUBLISH runs, so
// that pub/sub does not wait for the streams, nor the streams for a
// stalled PUBLISH (TestGossipDoesNotWaitForAStalledPublish).
func (b *Bus) send(ctx context.Context, kind coherence.Kind, data []byte) error {
	var errs []error
	sent := 0
	count := func(ch Channel, err error) {
		if err != nil {
			errs = append(errs, err)
			b.stats.channels[ch].sendErrors.Add(1)
			return
		}
		sent++
		b.stats.channels[ch].sent.add(kind)
	}
	var streamed chan error // a streamed broadcast's result
	switch {
	case b.cfg.Gossip == nil:
	case len(data) <= b.cfg.Gossip.MaxPacket():
		count(Gossip, b.cfg.Gossip.Broadcast(data))
	default:
		streamed = make(chan error, 1)
		go func() { streamed <- b.cfg.Gossip.Broadcast(data) }()
	}
	if b.cfg.Redis != nil {
		count(PubSub, b.cfg.Redis.Publish(ctx, b.cfg.Channel, data).Err())
	}
	if streamed != nil {
		count(Gossip, <-streamed)
	}
	b.stats.publishErrors.Add(uint64(len(errs)))
	if sent == 0 && len(errs) > 0 {
		return errors.Join(errs...)
	}
	return nil
}

// Deliver hands the bus a message received on channel. The gossip transport
// calls it; the pub/sub receiver calls it too.
func (b *Bus) Deliver(data []byte, channel Channel) {
	b.stats.received.Add(1)
	m, err := coherence.Decode(data, b.cfg.Key)
	switch {
	case errors.Is(err, coherence.ErrUnauthenticated):
		b.stats.unauthenticated.Add(1)
		b.stats.channels[channel].dropped.Add(1)
		return
	case err != nil:
		b.stats.malformed.Add(1)
		b.stats.channels[channel].dropped.Add(1)
		return
	}
	if m.Origin == b.cfg.NodeID {
		if m.Epoch == b.epoch {
			return
		}
		if m.Kind == coherence.KindHeartbeat && b.twin.heard(m.Epoch, m.SentAt) {
			b.cfg.Logger.Error("strata: another running replica uses this NodeID: its invalidations still apply, but gap detection and acknowledgements confuse the two; give every replica its own NodeID",
				"node_id", b.cfg.NodeID)
		}
	}
	b.stats.channels[channel].received.add(m.Kind)
	if m.Kind == coherence.KindAck {
		if len(m.Items) == 1 && m.Items[0] == b.cfg.NodeID {
			b.acked(m.Origin, m.Version)
		}
		return
	}
	if b.apply(&m, channel) && m.AckWanted {
		b.ack(&m)
	}
}

// twin notices another live process publishing under this node's name:
// its heartbeats carry the name with another epoch. One or two heartbeats
// could be the last ones of this name's previous process (a periodic one
// and Close's), overlapping this start; a third, sent at another time
// again, is a live process.
type twin struct {
	mu     sync.Mutex
	epoch  uint64
	sentAt int64
	beats  int
	seen   atomic.Bool
}

// heard counts a heartbeat of epoch sent at sentAt under this node's name,
// and reports whether it is the one that shows a twin (once per epoch).
func (t *twin) heard(epoch uint64, sentAt int64) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	if epoch != t.epoch {
		t.epoch, t.sentAt, t.beats = epoch, sentAt, 1
		return false
	}
	if sentAt == t.sentAt { // the same heartbeat on the other channel
		return false
	}
	t.sentAt = sentAt
	t.beats++
	if t.beats == 3 {
		t.seen.Store(true)
		return true
	}
	return false
}

// TwinSeen reports that another running process sends heartbeats under
// this node's name.
func (b *Bus) TwinSeen() bool { return b.twin.seen.Load() }

// apply records m from channel and applies it if it is new; it reports
// whether m is applied now or was already (an ack is then due either way).
// A message of an older epoch than its sender's tracked one is applied every
// time it arrives: it cannot be de-duplicated, and applying is idempotent.
func (b *Bus) apply(m *coherence.Message, channel Channel) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	now := b.cfg.Now().UnixNano()
	o := b.origin(m, now)
	if o != nil {
		o.heard[channel] = now
	}
	switch {
	case m.Kind == coherence.KindHeartbeat:
		if o != nil {
			o.announce(m.Seq, now)
		}
		return false
	case o != nil && !o.accept(m.Seq, now):
		b.stats.duplicates.Add(1)
		return true
	}
	b.cfg.Handler.Apply(m)
	b.stats.applied.Add(1)
	b.stats.appliedKinds.add(m.Kind)
	return true
}

// origin returns the state of m's sender, or nil when m comes from an older
// epoch than the one tracked: a delayed message of the sender's previous
// process, which must neither replace the newer state nor count toward its
// gaps.
//
// A sender first heard, or heard in a newer epoch, is tracked from m's
// sequence on, with the window below it that newOrigin describes. An older
// epoch does replace a tracked one silent for LinkTimeout (heartbeats come
// far more often): the sender's clock stepped back across a restart, or it
// is a producer whose epochs are not ordered.
func (b *Bus) origin(m *coherence.Message, now int64) *origin {
	o := b.origins[m.Origin]
	switch {
	case o != nil && o.epoch == m.Epoch:
		return o
	case o != nil && m.Epoch < o.epoch && now-o.lastHeard() <= int64(b.cfg.LinkTimeout):
		return nil
	}
	o = newOrigin(m.Epoch, m.Seq, m.Kind != coherence.KindHeartbeat, now)
	b.origins[m.Origin] = o
	return o
}

// Close stops the bus's goroutines, then sends a last heartbeat on every
// channel so that receivers notice a final message lost on every channel
// as a gap: by gossip first, then PUBLISH under a context of 250 ms (or
// HeartbeatInterval if shorter). go-redis honours that deadline only with
// ContextTimeoutEnabled; otherwise the client's ReadTimeout bounds the
// wait for a stalled Redis (Strata's l2 clients: l2.Config.Timeout). It is
// idempotent.
//
// NOTE: a process that exits without Close (a crash, SIGKILL) sends no
// last heartbeat: a message it lost on every channel in its last heartbeat
// interval goes unnoticed, and receivers may serve the stale entry until it
// leaves their L1 (at the latest l1.Config.MaxTTL after it was filled).
func (b *Bus) Close() error {
	b.once.Do(func() {
		b.cancel()
		b.wg.Wait()
		if b.hasChannels() && b.seq.Load() > 0 {
			b.heartbeat(context.Background(), min(b.cfg.HeartbeatInterval, maxCloseHeartbeat))
		}
	})
	return nil
}

// runPubSub keeps a subscription to the pub/sub channel and feeds the bus.
// A subscription silent for LinkTimeout (not even our own heartbeats come
// back) is replaced: go-redis resubscribes after a broken connection, but
// not after a refused SUBSCRIBE (an ACL change, say).
func (b *Bus) runPubSub(ctx context.Context) {
	for ctx.Err() == nil {
		b.subscribe(ctx)
		pause(ctx, 50*time.Millisecond) // the server is gone or refuses: do not spin
	}
}

// subscribe receives on one subscription until it goes silent or ctx ends.
//
// The receive blocks with no timeout: a go-redis receive that times out in
// the middle of a message leaves the rest of it to be parsed as the next
// reply, losing messages (go-redis issue #1702), and a large message takes
// long enough to read for that to happen. watch pings and decides silence
// instead, and closing the subscription unblocks the receive.
func (b *Bus) subscribe(ctx context.Context) {
	ps := b.cfg.Redis.Subscribe(ctx, b.cfg.Channel)
	sctx, cancel := context.WithCancel(ctx)
	var watcher sync.WaitGroup
	watcher.Go(func() {
		b.watch(sctx, ps, b.cfg.Now().UnixNano())
		cancel()
		_ = ps.Close() // unblocks the receive
	})
	defer func() {
		cancel()
		watcher.Wait()
	}()
	for sctx.Err() == nil {
		msg, err := ps.Receive(sctx)
		if err != nil {
			pause(sctx, 50*time.Millisecond) // go-redis reconnects a broken connection
			continue
		}
		// Only a subscription confirmation or a message proves the channel
		// works (our own heartbeats come back on it); a pong does not: a
		// connection whose SUBSCRIBE was refused still answers PING.
		switch m := msg.(type) {
		case *redis.Subscription:
			b.pubsubSeen.Store(b.cfg.Now().UnixNano())
		case *redis.Message:
			b.pubsubSeen.Store(b.cfg.Now().UnixNano())
			b.Deliver([]byte(m.Payload), PubSub)
		}
	}
}

// watch pings the subscription started at started whenever it has been
// quiet for half a heartbeat interval, so that a dead connection fails the
// receive, and returns when it has been silent for LinkTimeout or ctx ends.
func (b *Bus) watch(ctx context.Context, ps *redis.PubSub, started int64) {
	quiet := b.cfg.HeartbeatInterval / 2
	t := time.NewTicker(quiet)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		silent := b.cfg.Now().UnixNano() - max(b.pubsubSeen.Load(), started)
		switch {
		case silent > int64(b.cfg.LinkTimeout):
			return
		case silent >= int64(quiet):
			_ = ps.Ping(ctx)
		}
	}
}

func pause(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}

// runTicker sends heartbeats and checks for gaps and link health.
func (b *Bus) runTicker(ctx context.Context) {
	check := time.NewTicker(min(b.cfg.GapGrace, b.cfg.HeartbeatInterval) / 2)
	defer check.Stop()
	lastBeat := time.Time{}
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-check.C:
			if now.Sub(lastBeat) >= b.cfg.HeartbeatInterval {
				lastBeat = now
				b.heartbeat(ctx, b.cfg.HeartbeatInterval)
			}
			b.checkGaps()
			b.checkHealth()
		}
	}
}

// heartbeat sends the latest sequence on every channel, waiting at most
// timeout.
func (b *Bus) heartbeat(ctx context.Context, timeout time.Duration) {
	m := &coherence.Message{Origin: b.cfg.NodeID, Epoch: b.epoch, Seq: b.seq.Load(), Kind: coherence.KindHeartbeat, SentAt: b.cfg.Now().UnixNano()}
	hctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	_ = b.send(hctx, m.Kind, coherence.Encode(m, b.cfg.Key))
}

// checkGaps resets L1 when a sequence stayed missing past the grace.
func (b *Bus) checkGaps() {
	now := b.cfg.Now().UnixNano()
	b.mu.Lock()
	lost := 0
	for name, o := range b.origins {
		lost += o.expire(now - int64(b.cfg.GapGrace))
		if now-o.lastHeard() > int64(10*b.cfg.LinkTimeout) {
			delete(b.origins, name) // gone for good
		}
	}
	b.mu.Unlock()
	if lost > 0 {
		b.stats.gaps.Add(uint64(lost))
		b.reset(ReasonGap)
	}
}

// ResetL1 tells the handler to drop L1, counting why. The gossip transport
// calls it when its receive queue overflowed.
func (b *Bus) ResetL1(r Reason) { b.reset(r) }

// reset drops L1 first and counts it after, so that a reader who sees the
// count (Stats, Health's last flush) finds L1 already dropped.
func (b *Bus) reset(r Reason) {
	reason := r.String()
	b.cfg.Logger.Warn("strata: dropping L1, an invalidation may have been missed", "reason", reason)
	at := b.cfg.Now()
	b.cfg.Handler.Reset(reason)
	b.lastReset.Store(&Reset{Reason: reason, At: at})
	if r < reasons {
		b.stats.resetReasons[r].Add(1)
	}
	b.stats.resets.Add(1)
}

// checkHealth decides whether some channel vouches for L1. Pub/sub does while
// its subscription showed activity (our own heartbeats come back on it)
// within LinkTimeout; gossip does while every other member was heard within
// LinkTimeout. Coming back from distrust drops L1 first: whatever was sent
// meanwhile may be lost.
func (b *Bus) checkHealth() {
	now := b.cfg.Now().UnixNano()
	limit := now - int64(b.cfg.LinkTimeout)
	ok := b.cfg.Redis != nil && b.pubsubSeen.Load() > limit
	if !ok && b.cfg.Gossip != nil {
		ok = b.gossipVouches(limit)
	}
	switch was := b.trusted.Load(); {
	case ok && !was:
		if b.stats.linkLosses.Load() > 0 {
			b.reset(ReasonLinkRecovered)
		} else {
			// First trust after start: entries filled before the channels
			// were up may have missed an invalidation. L1 is nearly empty
			// then; drop it quietly.
			b.cfg.Handler.Reset("start")
		}
		b.setTrusted(true)
	case !ok && was:
		b.stats.linkLosses.Add(1)
		b.cfg.Logger.Warn("strata: no invalidation channel is healthy; reads bypass L1")
		b.setTrusted(false)
	}
}

func (b *Bus) gossipVouches(limit int64) bool {
	members := b.cfg.Gossip.Members()
	if len(members) < 2 {
		return false
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, name := range members {
		if name == b.cfg.NodeID {
			continue
		}
		if o := b.origins[name]; o == nil || o.heard[Gossip] <= limit {
			return false
		}
	}
	return true
}

// Reset is an L1 drop the bus asked for: why, and when.
type Reset struct {
	Reason string
	At     time.Time
}

// LastReset returns the latest L1 drop for a possibly missed invalidation
// (a gap, an overflow, a link regained), or nil.
func (b *Bus) LastReset() *Reset { return b.lastReset.Load() }

// Link is one channel's state.
type Link struct {
	Channel Channel
	// Vouches reports that the channel vouches for L1 now (see checkHealth).
	Vouches bool
	// LastHeard is its latest activity: on pub/sub any message or pong; on
	// gossip the latest message from a member. Zero before the first.
	LastHeard time.Time
}

// Links returns the state of each configured channel: pub/sub first.
func (b *Bus) Links() []Link {
	limit := b.cfg.Now().UnixNano() - int64(b.cfg.LinkTimeout)
	var out []Link
	if b.cfg.Redis != nil {
		seen := b.pubsubSeen.Load()
		out = append(out, Link{Channel: PubSub, Vouches: seen > limit, LastHeard: unixOrZero(seen)})
	}
	if b.cfg.Gossip != nil {
		vouches := b.gossipVouches(limit)
		b.mu.Lock()
		var heard int64
		for _, o := range b.origins {
			heard = max(heard, o.heard[Gossip])
		}
		b.mu.Unlock()
		out = append(out, Link{Channel: Gossip, Vouches: vouches, LastHeard: unixOrZero(heard)})
	}
	return out
}

// String names the channel: "pubsub" or "gossip".
func (c Channel) String() string {
	if c == Gossip {
		return "gossip"
	}
	return "pubsub"
}

func unixOrZero(ns int64) time.Time {
	if ns == 0 {
		return time.Time{}
	}
	return time.Unix(0, ns)
}

func (b *Bus) setTrusted(v bool) {
	b.trusted.Store(v)
	b.cfg.Handler.Trust(v)
}

type l2MissedKey struct{}

// WithL2Missed returns a context that makes Publish and PublishAcked mark
// their message L2Missed: the sender's write to L2 failed.
func WithL2Missed(ctx context.Context) context.Context {
	return context.WithValue(ctx, l2MissedKey{}, true)
}

func l2Missed(ctx context.Context) bool { return ctx.Value(l2MissedKey{}) != nil }

// WithL2MissedOn is WithL2Missed naming the server whose write failed (see
// Message.L2Server).
func WithL2MissedOn(ctx context.Context, server string) context.Context {
	return context.WithValue(ctx, l2MissedKey{}, server)
}

func l2Server(ctx context.Context) string {
	s, _ := ctx.Value(l2MissedKey{}).(string)
	return s
}
