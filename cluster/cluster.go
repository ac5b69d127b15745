package cluster

import (
	"errors"
	"log/slog"
	"time"

	"github.com/hashicorp/memberlist"
)

// Sentinel errors. Errors returned by this package wrap one of them (or a
// memberlist error) and can be tested with errors.Is.
var (
	// ErrInvalidConfig is wrapped by Start when a Config field or argument is
	// invalid.
	ErrInvalidConfig = errors.New("cluster: invalid config")
	// ErrJoin is wrapped by Start when none of Config.Join could be reached
	// within Config.JoinTimeout.
	ErrJoin = errors.New("cluster: join failed")
	// ErrNameTaken is wrapped by Start when a member of the cluster it
	// joined already has its name, at another address: two replicas started
	// with one NodeID. (A replica restarted at a new address under its old
	// name meets it too until the cluster declares the old address dead.)
	ErrNameTaken = errors.New("cluster: name taken by another member")
	// ErrClosed is returned by Broadcast and SendTo after Close.
	ErrClosed = errors.New("cluster: node closed")
	// ErrUnknownMember is wrapped by SendTo when no alive member has the name.
	ErrUnknownMember = errors.New("cluster: unknown member")
	// ErrCallbackPanic wraps a panic recovered from handle, onOverflow or an
	// OnMembership callback; the error, with the stack, is logged at error
	// level and counted in Stats.Panics.
	ErrCallbackPanic = errors.New("cluster: callback panicked")
)

// Config configures a replica's membership. The zero value is usable: every
// field documents its zero-value default. Start validates it and returns an
// error wrapping ErrInvalidConfig rather than panicking.
type Config struct {
	// BindAddr is the "ip:port" memberlist listens on, over UDP (gossip,
	// probes, best-effort messages) and TCP (joins, state sync, reliable
	// messages). The host must be an IP literal (a host name could silently
	// bind every interface); an empty host means all IPv4 interfaces; port 0
	// picks any free port. Zero means DefaultBindAddr.
	BindAddr string
	// AdvertiseAddr is the "ip:port" other replicas reach this one at (for
	// NAT or containers). Port 0 means the bound port; when BindAddr's port
	// is 0 the bound port is always advertised. Empty means the bound
	// address; for an unspecified bind IP (0.0.0.0) memberlist advertises the
	// host's first private IP.
	AdvertiseAddr string
	// Join lists "host:port" addresses of existing members; host names are
	// resolved. Start retries with back-off until one of them answers or
	// JoinTimeout passes, then returns an error wrapping ErrJoin. Listing this
	// replica's own address is harmless, so every replica can share one seed
	// list: a join counts once another member answered (this replica alone
	// answering counts only when it is the whole list). Empty means start a
	// new cluster alone.
	Join []string
	// SecretKey is an AES key (16, 24 or 32 bytes, AES-128/192/256) that
	// encrypts and authenticates all gossip and messages; members with
	// another key or none are rejected and their messages are not
	// delivered. Nil means unencrypted, unauthenticated gossip.
	SecretKey []byte
	// Profile picks memberlist's timing preset. Zero: ProfileLAN.
	Profile Profile
	// JoinTimeout bounds how long Start keeps retrying Join; at least one
	// attempt is made, and an attempt against a host that does not answer
	// can last the profile's TCP timeout. Zero means DefaultJoinTimeout.
	JoinTimeout time.Duration
	// KeepJoining makes Start, when its first attempt to join reaches none
	// of Join, succeed alone at once, log a warning and keep trying in the
	// background (backing off to 2 s) until a seed answers or Close: a
	// replica starts while its peers are still down. Without it Start
	// retries for JoinTimeout and then fails.
	KeepJoining bool
	// QueueSize bounds the messages received but not yet handled; beyond it
	// messages are dropped and counted (see Start). Zero means
	// DefaultQueueSize.
	QueueSize int
	// Logger receives memberlist's log lines at their own levels ([DEBUG],
	// [INFO], [WARN], [ERR]) and this package's few warnings. Nil: logs are
	// discarded.
	Logger *slog.Logger
	// Transport, if set, wraps the UDP and TCP transport this package makes
	// on BindAddr, and memberlist sends and receives through what it
	// returns: a test or a demo can drop, delay or count packets and
	// streams (a fault-injecting transport). Shutdown reaches the inner
	// transport through the wrapper, which must forward it. Nil, as in
	// production: memberlist's transport as is.
	Transport func(memberlist.NodeAwareTransport) memberlist.NodeAwareTransport
}

// Profile selects a memberlist timing preset. Both presets apply the same
// overrides, each with its reason in memberlistConfig.
type Profile int

const (
	// ProfileLAN is memberlist.DefaultLANConfig: 1s probes, 200ms gossip,
	// 10s TCP timeout. Use it in production, within one data centre.
	ProfileLAN Profile = iota
	// ProfileLocal is memberlist.DefaultLocalConfig: 100ms gossip, 200ms
	// probe timeout, 1s TCP timeout. Use it for replicas on one host and in
	// tests, where its faster convergence matters more than tolerance of
	// slow networks.
	ProfileLocal
)

// Stats are a Node's counters since Start. They are read atomically one by
// one, so a snapshot taken while messages flow is not exactly consistent.
type Stats struct {
	// Received counts messages memberlist handed to this node, dropped or
	// not (a broadcast arrives once directly and again through gossip).
	Received uint64
	// Dropped counts received messages discarded because the queue of
	// QueueSize was full.
	Dropped uint64
	// Sent counts direct sends memberlist accepted, one per recipient.
	Sent uint64
	// SendErrors counts direct sends that failed, one per recipient.
	SendErrors uint64
	// Panics counts panics recovered from the callbacks.
	Panics uint64
}

// Node is this replica's membership in the cluster. Its methods are safe for
// concurrent use.
type Node struct {
	impl *node
}

// Start creates the memberlist node named name, which must be unique among
// the replicas, and joins cfg.Join (see Config.Join).
//
// Every application message received is delivered to handle on one delivery
// goroutine, in arrival order; msg is a private copy that handle may keep.
// Receiving never blocks memberlist: each message is copied onto a queue of
// cfg.QueueSize; when the queue is full the message is dropped, counted in
// Stats.Dropped, and onOverflow (if non-nil) is called on the delivery
// goroutine once that goroutine is free: never concurrently with handle,
// and one call may stand for several drops. The caller should treat it as a
// possible gap in the message stream.
//
// NOTE: messages can also be lost before they reach this node (UDP loss, or
// memberlist's own handoff queue dropping when it is full, which is only
// logged); receivers must tolerate loss and, because a broadcast arrives
// more than once, duplicates.
//
// WARNING: handle, onOverflow and OnMembership callbacks must not call
// Close, which waits for them to return.
func Start(cfg Config, name string, handle func(msg []byte), onOverflow func()) (*Node, error) {
	impl, err := start(cfg, name, handle, onOverflow)
	if err != nil {
		return nil, err
	}
	return &Node{impl: impl}, nil
}

// Name returns the node's name, as given to Start.
func (n *Node) Name() string { return n.impl.name }

// Addr returns the "ip:port" other replicas can list in Config.Join: the
// advertised address, which is the bound address unless
// Config.AdvertiseAddr says otherwise.
func (n *Node) Addr() string { return n.impl.addr }

// Members returns the names of the alive (or suspected, not yet declared
// dead) members, this node included, in no particular order.
func (n *Node) Members() []string { return n.impl.members() }

// MemberStates returns every member this node knows, this one included, by
// name: the alive (and suspected) ones, and those that left or died within
// the last ten minutes (the latest 32 of them). A member that rejoins is
// alive again.
func (n *Node) MemberStates() []Member { return n.impl.memberStates() }

// Conflicts returns the name conflicts seen since Start: a node that claimed
// the name of a member from another address (two replicas started with one
// name). memberlist keeps the member it knew and refuses the claim, so the
// two nodes' views of the cluster are both wrong; each conflict is also
// logged as a warning.
func (n *Node) Conflicts() Conflicts { return n.impl.conflicts() }

// Refused returns the error, wrapping ErrNameTaken, that took this node out
// of a cluster it joined in the background (Config.KeepJoining) under a
// name another member holds; nil otherwise. Start refuses such a name when
// it joins; a background join can only leave: it logs an error, shuts the
// gossip down without a leave and runs alone, Broadcast and SendTo failing
// with this error.
func (n *Node) Refused() error { return n.impl.refusal() }

// Broadcast delivers msg to every other alive member twice over: a direct
// best-effort UDP send to each (measured about 3x faster than a reliable
// TCP send on loopback; see BenchmarkDirectSend), and a copy queued on
// memberlist's gossip, which retransmits it to random members as the
// catch-up path for the ones the direct send missed. Receivers must
// de-duplicate. msg is copied before Broadcast returns.
//
// A message too large for one UDP packet (over 1336 bytes: memberlist's
// UDPBufferSize of 1400 less 64 for its framing) is sent over a reliable
// TCP stream to each member instead, one after the other, and is not
// gossiped: it has no catch-up path, and Broadcast may block up to the
// profile's TCP timeout for each unreachable member.
//
// The error joins the per-member send errors; members reached are reached
// regardless. After Close it returns ErrClosed.
func (n *Node) Broadcast(msg []byte) error { return n.impl.broadcast(msg) }

// MaxPacket returns the size of the largest message Broadcast and SendTo
// send as best-effort UDP datagrams (1336 bytes; see Broadcast), which do
// not wait for the receiver. A larger one takes a reliable TCP stream
// (Broadcast: to each member in turn), which may block up to the
// profile's TCP timeout for a member that does not answer.
func (n *Node) MaxPacket() int { return n.impl.maxDatagram() }

// SendTo sends msg directly to the alive member named member, by the same
// means as Broadcast but without the gossip copy: best-effort UDP, or a
// reliable TCP stream when msg exceeds one packet. The error wraps
// ErrUnknownMember when no alive member has that name, and is ErrClosed after
// Close. msg is not retained.
func (n *Node) SendTo(member string, msg []byte) error { return n.impl.sendTo(member, msg) }

// OnMembership registers fn to be called with a member's name and
// joined=true when it joins (or rejoins), joined=false when it leaves or is
// declared dead. Calls happen in event order on one goroutine of this
// package, without locks held, so fn may call the Node's methods; memberlist
// never waits for fn. Events before registration are not replayed: register
// first, then read Members. A later call replaces fn; nil unregisters.
func (n *Node) OnMembership(fn func(name string, joined bool)) { n.impl.onMembership(fn) }

// Stats returns the node's counters.
func (n *Node) Stats() Stats { return n.impl.stats() }

// Close leaves the cluster gracefully (announcing the departure, waiting at
// most five gossip intervals for it to go out, so others show this node as
// left rather than dead, then at most five for memberlist's leave: each
// usually ends within a round or two), shuts memberlist down and
// stops this package's goroutines, waiting for a callback in progress to
// return. Messages still queued are discarded. Close is idempotent; later
// calls return the first call's result.
func (n *Node) Close() error { return n.impl.close() }
