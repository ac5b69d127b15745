package cluster

import (
	"errors"
	"fmt"
	"log"
	"net"
	"strconv"
	"time"

	"github.com/hashicorp/memberlist"
)

// Defaults used when a Config field is zero.
const (
	// DefaultBindAddr is memberlist's own default, so replicas on different
	// hosts reach each other without further configuration; set SecretKey
	// when binding beyond loopback.
	DefaultBindAddr = "0.0.0.0:7946"
	// DefaultJoinTimeout is enough for several back-off rounds (100ms
	// doubling to 2s) while the seed replicas of a simultaneous rollout come
	// up, and short enough that a wrong seed list fails the start promptly.
	DefaultJoinTimeout = 10 * time.Second
	// DefaultQueueSize holds a burst of invalidations several times
	// memberlist's own 1024-deep handoff queue, at a cost of at most 32 KiB
	// of slice headers plus the messages held.
	DefaultQueueSize = 4096
)

// Join back-off: the first retry comes soon, because the usual failure is a
// seed whose listener is a moment late; doubling up to 2s keeps a cluster of
// replicas retrying against a down seed from hammering it.
const (
	joinBackoffMin = 100 * time.Millisecond
	joinBackoffMax = 2 * time.Second
)

// packetFraming is what memberlist adds around a user message in a UDP
// packet: compound header 2 + entry length 2 + user-message tag 1 + CRC 5 +
// AES-GCM version, nonce and tag 29 = 39 bytes, rounded up to 64 for
// headroom. maxPacketMessage subtracts it from UDPBufferSize.
const packetFraming = 64

// gossipBacklog bounds the broadcasts waiting in the gossip queue. Each is
// retransmitted only RetransmitMult*log10(N+1) times, so in steady state the
// queue holds just the last few gossip rounds; 1024 absorbs a burst of
// about five seconds at 200 broadcasts a second, and beyond it the oldest
// (most retransmitted) are dropped first.
const gossipBacklog = 1024

// settings is a validated Config with defaults filled and addresses parsed.
type settings struct {
	Config
	bindIP        string
	bindPort      int
	advertiseIP   string
	advertisePort int
}

// withDefaults returns a copy of c with zero fields replaced by their
// documented defaults.
func (c Config) withDefaults() Config {
	if c.BindAddr == "" {
		c.BindAddr = DefaultBindAddr
	}
	if c.JoinTimeout == 0 {
		c.JoinTimeout = DefaultJoinTimeout
	}
	if c.QueueSize == 0 {
		c.QueueSize = DefaultQueueSize
	}
	return c
}

// validate fills defaults and checks every field, returning an error that
// wraps ErrInvalidConfig.
func (c Config) validate() (settings, error) {
	s := settings{Config: c.withDefaults()}
	var err error
	if s.bindIP, s.bindPort, err = parseIPPort(s.BindAddr, true); err != nil {
		return s, invalid("BindAddr", err)
	}
	if s.AdvertiseAddr != "" {
		if s.advertiseIP, s.advertisePort, err = parseIPPort(s.AdvertiseAddr, false); err != nil {
			return s, invalid("AdvertiseAddr", err)
		}
	}
	for _, j := range s.Join {
		if j == "" {
			return s, invalid("Join", fmt.Errorf("empty address"))
		}
	}
	switch len(s.SecretKey) {
	case 0, 16, 24, 32:
	default:
		return s, invalid("SecretKey", fmt.Errorf("length %d, want 16, 24 or 32 bytes", len(s.SecretKey)))
	}
	if s.Profile != ProfileLAN && s.Profile != ProfileLocal {
		return s, invalid("Profile", fmt.Errorf("unknown profile %d", s.Profile))
	}
	if s.JoinTimeout < 0 {
		return s, invalid("JoinTimeout", fmt.Errorf("negative: %v", s.JoinTimeout))
	}
	if s.QueueSize < 0 {
		return s, invalid("QueueSize", fmt.Errorf("negative: %d", s.QueueSize))
	}
	return s, nil
}

func invalid(field string, err error) error {
	return fmt.Errorf("%w: %s: %w", ErrInvalidConfig, field, err)
}

// parseIPPort splits "ip:port". An empty host is allowed (meaning 0.0.0.0)
// only for a bind address, which is also the only one that may be an
// unspecified IP.
func parseIPPort(addr string, bind bool) (ip string, port int, err error) {
	host, portStr, err := net.SplitHostPort(addr)
	if err != nil {
		return "", 0, err
	}
	if host == "" && bind {
		host = "0.0.0.0"
	}
	parsed := net.ParseIP(host)
	if parsed == nil {
		return "", 0, fmt.Errorf("host %q is not an IP literal", host)
	}
	if !bind && parsed.IsUnspecified() {
		return "", 0, fmt.Errorf("unspecified IP %q cannot be advertised", host)
	}
	port, err = strconv.Atoi(portStr)
	if err != nil || port < 0 || port > 65535 {
		return "", 0, fmt.Errorf("port %q is not in 0-65535", portStr)
	}
	return host, port, nil
}

// memberlistConfig builds memberlist's configuration from the profile's
// preset plus this package's overrides.
func (s settings) memberlistConfig(name string, logger *log.Logger) *memberlist.Config {
	mc := memberlist.DefaultLANConfig()
	if s.Profile == ProfileLocal {
		mc = memberlist.DefaultLocalConfig()
	}
	mc.Name = name
	mc.BindAddr, mc.BindPort = s.bindIP, s.bindPort
	mc.AdvertiseAddr, mc.AdvertisePort = s.advertiseIP, s.advertisePort
	if s.advertisePort == 0 {
		mc.AdvertisePort = s.bindPort
	}
	mc.SecretKey = s.SecretKey
	mc.Logger = logger
	// A replica that crashed and restarts under its name at a new address
	// (a rescheduled pod) is refused as a conflict while its old incarnation
	// is dead; allow the reclaim once the cluster has stopped gossiping
	// about that death, which is GossipToTheDeadTime (30s LAN, 15s local).
	// A replica that left through Close can rejoin at once regardless.
	mc.DeadNodeReclaimTime = mc.GossipToTheDeadTime
	// memberlist drops incoming messages without telling us (it only logs)
	// when its handoff queue (1024) is full. Our NotifyMsg never blocks, so
	// that queue drains as fast as packets decode, but keeping it at least as
	// deep as ours makes our counted, signalled drop the first to happen.
	mc.HandoffQueueDepth = max(mc.HandoffQueueDepth, s.QueueSize)
	// Strata's messages fit one packet of a few hundred bytes: compressing
	// them saves nothing on the wire and cost about 70 KB of allocation per
	// send (lzw's writer), which drove the GC behind gossip's tail
	// (issue 16). Members that compress are still understood.
	mc.EnableCompression = false
	return mc
}

// maxPacketMessage is the largest message sent best-effort and gossiped:
// memberlist's UDPBufferSize (1400, safe under a 1500-byte Ethernet MTU)
// less its framing. Larger messages take a reliable TCP stream.
func maxPacketMessage(mc *memberlist.Config) int {
	return mc.UDPBufferSize - packetFraming
}

// announceTimeout bounds Close's wait for the announcement that it is
// leaving (see metaLeaving). The wait ends as soon as memberlist has
// gossiped it its full retransmission count (RetransmitMult*log10(N+1)
// sends, to GossipNodes members a round: one or two rounds in a small
// cluster); the bound is leaveTimeout's, five rounds, for a busy gossip
// queue or a loaded host. Ending it earlier would let the leave that
// follows supersede the announcement in the gossip queue before it went
// out, and members would see a death.
func announceTimeout(mc *memberlist.Config) time.Duration {
	return leaveTimeout(mc)
}

// leaveTimeout bounds Close's wait for the leave announcement: it rides the
// next gossip round, so five rounds allow for a busy gossip queue.
func leaveTimeout(mc *memberlist.Config) time.Duration {
	return 5 * mc.GossipInterval
}

// useTransport makes the node's transport (see transport) for mc, wrapped
// by wrap when not nil, and sets mc.Transport to it.
func useTransport(mc *memberlist.Config, wrap func(memberlist.NodeAwareTransport) memberlist.NodeAwareTransport) error {
	nt, err := newTransport(mc.BindAddr, mc.BindPort, mc.Logger)
	if err != nil {
		return err
	}
	if mc.BindPort == 0 {
		mc.BindPort = nt.port()
		mc.AdvertisePort = mc.BindPort
	}
	var t memberlist.NodeAwareTransport = nt
	if wrap != nil {
		if t = wrap(nt); t == nil {
			_ = nt.Shutdown()
			return invalid("Transport", errors.New("returned nil"))
		}
	}
	mc.Transport = t
	return nil
}
