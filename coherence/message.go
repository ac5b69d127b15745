package coherence

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/strata-cache/strata/internal/wire"
)

// Kind says what a message invalidates.
type Kind uint8

// Message kinds.
const (
	KindKeys      Kind = 1 // Items are keys of Namespace
	KindTags      Kind = 2 // Items are tags of Namespace
	KindPattern   Kind = 3 // Items[0] is a Redis glob over the keys of Namespace
	KindClear     Kind = 4 // every key of Namespace; Version is its new version
	KindHeartbeat Kind = 5 // no invalidation: Seq is the origin's latest sequence
	KindAck       Kind = 6 // Items[0] applied Version, the sequence it asked an ack for; Seq is 0
)

// String implements fmt.Stringer.
func (k Kind) String() string {
	switch k {
	case KindKeys:
		return "keys"
	case KindTags:
		return "tags"
	case KindPattern:
		return "pattern"
	case KindClear:
		return "clear"
	case KindHeartbeat:
		return "heartbeat"
	case KindAck:
		return "ack"
	}
	return fmt.Sprintf("kind(%d)", uint8(k))
}

// Message is one invalidation, or a heartbeat.
type Message struct {
	Origin    string // NodeID of the sender
	Epoch     uint64 // per sender process start, larger at each restart; see Epochs in the package doc
	Seq       uint64 // per (Origin, Epoch), from 1, no holes
	Kind      Kind
	Namespace string
	Items     []string
	Version   uint64 // the write's version; for KindClear the namespace's new version
	SentAt    int64  // Unix nanoseconds, for measuring invalidation lag
	// AckWanted asks every receiver to send a KindAck once it has applied
	// the message.
	AckWanted bool
	// L2Missed says the sender's L2 write or delete for Items failed: the
	// Redis server that holds them may still have the old values, and
	// receivers must not read them from it before it is cleaned.
	L2Missed bool
	// L2Server names, with L2Missed, the server whose write failed (its
	// address as configured): a receiver takes that server out of service
	// only if it still routes the items there. Empty means unknown: the
	// server a receiver routes them to is taken out.
	L2Server string
}

// The wire format and the rules for epochs are in the package doc
// (doc.go).
const (
	magic0        = 0x53
	magic1        = 0x49
	formatVersion = 1
	flagMAC       = 1 << 0
	flagAck       = 1 << 1
	flagL2Missed  = 1 << 2
	flagL2Server  = 1 << 3
	macLen        = 16
	headerLen     = 5
)

// Limits that bound what a decoder allocates for one message.
const (
	MaxMessageSize = 1 << 20 // bytes
	MaxItems       = 100_000
	MaxOriginLen   = 256
)

// Errors returned by Decode.
var (
	ErrMalformed       = errors.New("coherence: malformed message")
	ErrUnauthenticated = errors.New("coherence: message not authenticated")
)

// ErrTooLarge is wrapped by the error of a write or invalidation one of
// whose items (or its namespace) alone does not fit in a message of
// MaxMessageSize: the other replicas learn of it as a lost message.
var ErrTooLarge = errors.New("coherence: invalidation too large for a message")

// Encode returns the wire form of m, with a MAC when key is non-nil.
func Encode(m *Message, key []byte) []byte {
	b := make([]byte, 0, 64+len(m.Origin)+len(m.Namespace)+itemsLen(m.Items))
	var flags byte
	if key != nil {
		flags = flagMAC
	}
	if m.AckWanted {
		flags |= flagAck
	}
	if m.L2Missed {
		flags |= flagL2Missed
		if m.L2Server != "" {
			flags |= flagL2Server
		}
	}
	b = append(b, magic0, magic1, formatVersion, byte(m.Kind), flags)
	b = binary.AppendUvarint(b, m.Epoch)
	b = binary.AppendUvarint(b, m.Seq)
	b = binary.AppendUvarint(b, m.Version)
	b = binary.AppendVarint(b, m.SentAt)
	b = wire.AppendString(b, m.Origin)
	b = wire.AppendString(b, m.Namespace)
	b = binary.AppendUvarint(b, uint64(len(m.Items)))
	for _, it := range m.Items {
		b = wire.AppendString(b, it)
	}
	if flags&flagL2Server != 0 {
		b = wire.AppendString(b, m.L2Server)
	}
	if key != nil {
		b = append(b, mac(key, b)...)
	}
	return b
}

// Decode parses b. With a non-nil key it accepts only messages whose MAC
// verifies under key. It never panics and allocates in proportion to len(b).
func Decode(b []byte, key []byte) (Message, error) {
	var m Message
	if len(b) < headerLen || len(b) > MaxMessageSize || b[0] != magic0 || b[1] != magic1 || b[2] != formatVersion {
		return m, ErrMalformed
	}
	flags := b[4]
	if flags&^(flagMAC|flagAck|flagL2Missed|flagL2Server) != 0 || flags&flagL2Server != 0 && flags&flagL2Missed == 0 {
		return m, ErrMalformed
	}
	body := b
	if flags&flagMAC != 0 {
		if len(b) < headerLen+macLen {
			return m, ErrMalformed
		}
		body = b[:len(b)-macLen]
		if key != nil && !hmac.Equal(b[len(b)-macLen:], mac(key, body)) {
			return m, ErrUnauthenticated
		}
	} else if key != nil {
		return m, ErrUnauthenticated
	}
	m.Kind, m.AckWanted, m.L2Missed = Kind(b[3]), flags&flagAck != 0, flags&flagL2Missed != 0
	if m.Kind < KindKeys || m.Kind > KindAck {
		return Message{}, ErrMalformed
	}
	r := wire.Reader{B: body[headerLen:]}
	m.Epoch, m.Seq, m.Version, m.SentAt = r.Uvarint(), r.Uvarint(), r.Uvarint(), r.Varint()
	m.Origin, m.Namespace = r.String(MaxOriginLen), r.String(MaxMessageSize)
	n := r.Uvarint()
	if r.Bad || n > MaxItems || n > uint64(len(r.B)) {
		return Message{}, ErrMalformed
	}
	if n > 0 {
		m.Items = make([]string, n)
		for i := range m.Items {
			m.Items[i] = r.String(MaxMessageSize)
		}
	}
	if flags&flagL2Server != 0 {
		if m.L2Server = r.String(MaxOriginLen); m.L2Server == "" {
			return Message{}, ErrMalformed
		}
	}
	if r.Bad || len(r.B) != 0 || m.Origin == "" || (m.Seq == 0 && m.Kind != KindHeartbeat && m.Kind != KindAck) {
		return Message{}, ErrMalformed
	}
	return m, nil
}

func mac(key, body []byte) []byte {
	h := hmac.New(sha256.New, key)
	h.Write(body)
	return h.Sum(nil)[:macLen]
}

func itemsLen(items []string) int {
	n := 0
	for _, it := range items {
		n += len(it) + binary.MaxVarintLen32
	}
	return n
}
