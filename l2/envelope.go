package l2

import (
	"encoding/binary"
	"errors"
	"hash/crc32"
	"math"

	"github.com/strata-cache/strata/internal/wire"
	"time"
)

// The envelope is the binary form of an entry in Redis:
//
//	magic     2 bytes  0x53 0xA7
//	format    1 byte   FormatVersion
//	flags     1 byte   FlagNegative | FlagTags | FlagType; other bits must be zero (FlagCompressed is reserved: read as corrupt)
//	type      8 bytes  only with FlagType: the writer's value type fingerprint, little endian
//	version   uvarint  the writer's version of the value
//	created   varint   Unix milliseconds
//	fresh     varint   fresh-until, Unix milliseconds
//	stale     uvarint  stale-until minus fresh-until, milliseconds
//	load      uvarint  last load duration, microseconds
//	tags      only with FlagTags: uvarint count, then each: uvarint length + bytes
//	payload   bytes    the encoded value (empty when negative)
//	checksum  4 bytes  CRC-32C (Castagnoli) of everything before it, little endian
//
// Times are kept to the millisecond; that is the precision Redis expiry has too.
//
// A reader rejects unknown flags, so a flag is added only with a reader
// that knows it deployed first. FlagType came before Strata's first
// release: builds from before it read every entry written since as corrupt
// (and delete it), and must not run beside later ones.
const (
	magic0 = 0x53
	magic1 = 0xA7
	// FormatVersion is the envelope format this package writes and reads.
	FormatVersion = 1
	headerLen     = 4
	checksumLen   = 4
)

// Envelope flags.
const (
	// FlagNegative marks a cached "not found"; the payload is empty.
	FlagNegative byte = 1 << 0
	// FlagCompressed marks a compressed payload. This version never writes it
	// and reads it as corrupt, so a newer writer's data is a miss, not garbage.
	FlagCompressed byte = 1 << 1
	// FlagTags marks an entry carrying invalidation tags.
	FlagTags byte = 1 << 2
	// FlagType marks an entry carrying its writer's type fingerprint
	// (Envelope.Type).
	FlagType   byte = 1 << 3
	knownFlags      = FlagNegative | FlagTags | FlagType
	typeLen         = 8
)

// Limits on an entry's tags.
const (
	MaxTags      = 256
	MaxTagLength = 1024
)

// ErrCorrupt is returned by Decode for bytes that are not a valid envelope:
// wrong magic, unknown format or flags, truncated fields or a bad checksum.
var ErrCorrupt = errors.New("l2: corrupt entry")

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// Envelope is an entry as stored in L2.
type Envelope struct {
	Negative bool
	// Type fingerprints the writer's value type and codec, so that a reader
	// of another type can tell the entry is not its own rather than corrupt
	// (tiered leaves such an entry alone). Zero means none: the entry
	// carries no fingerprint.
	Type         uint64
	Version      uint64
	Created      int64 // Unix nanoseconds
	FreshUntil   int64 // Unix nanoseconds
	StaleUntil   int64 // Unix nanoseconds, not before FreshUntil
	LoadDuration time.Duration
	Tags         []string
	Payload      []byte
}

// AppendTo appends the binary form of e to dst and returns it.
func (e *Envelope) AppendTo(dst []byte) []byte {
	start := len(dst)
	var flags byte
	if e.Negative {
		flags |= FlagNegative
	}
	if len(e.Tags) > 0 {
		flags |= FlagTags
	}
	if e.Type != 0 {
		flags |= FlagType
	}
	dst = append(dst, magic0, magic1, FormatVersion, flags)
	if e.Type != 0 {
		dst = binary.LittleEndian.AppendUint64(dst, e.Type)
	}
	dst = binary.AppendUvarint(dst, e.Version)
	dst = binary.AppendVarint(dst, e.Created/int64(time.Millisecond))
	fresh := e.FreshUntil / int64(time.Millisecond)
	dst = binary.AppendVarint(dst, fresh)
	dst = binary.AppendUvarint(dst, uint64(max(e.StaleUntil/int64(time.Millisecond)-fresh, 0)))
	dst = binary.AppendUvarint(dst, uint64(max(e.LoadDuration/time.Microsecond, 0)))
	if len(e.Tags) > 0 {
		dst = binary.AppendUvarint(dst, uint64(len(e.Tags)))
		for _, t := range e.Tags {
			dst = binary.AppendUvarint(dst, uint64(len(t)))
			dst = append(dst, t...)
		}
	}
	if !e.Negative {
		dst = append(dst, e.Payload...)
	}
	return binary.LittleEndian.AppendUint32(dst, crc32.Checksum(dst[start:], castagnoli))
}

// Encode returns the binary form of e.
func (e *Envelope) Encode() []byte {
	return e.AppendTo(make([]byte, 0, len(e.Payload)+headerLen+typeLen+5*binary.MaxVarintLen64+checksumLen))
}

// Decode parses b. The returned Payload aliases b. Any malformation yields
// ErrCorrupt; Decode never panics.
func Decode(b []byte) (Envelope, error) {
	var e Envelope
	if len(b) < headerLen+5+checksumLen || b[0] != magic0 || b[1] != magic1 || b[2] != FormatVersion {
		return e, ErrCorrupt
	}
	body, sum := b[:len(b)-checksumLen], b[len(b)-checksumLen:]
	if crc32.Checksum(body, castagnoli) != binary.LittleEndian.Uint32(sum) {
		return e, ErrCorrupt
	}
	flags := b[3]
	if flags&^knownFlags != 0 {
		return e, ErrCorrupt
	}
	e.Negative = flags&FlagNegative != 0
	r := reader{wire.Reader{B: body[headerLen:]}}
	if flags&FlagType != 0 {
		if len(r.B) < typeLen {
			return Envelope{}, ErrCorrupt
		}
		// Zero is never written: it would read back as no fingerprint.
		if e.Type = binary.LittleEndian.Uint64(r.B); e.Type == 0 {
			return Envelope{}, ErrCorrupt
		}
		r.B = r.B[typeLen:]
	}
	e.Version = r.Uvarint()
	created, fresh := r.millis(), r.millis()
	stale, load := r.Uvarint(), r.Uvarint()
	if flags&FlagTags != 0 {
		e.Tags = r.tags()
	}
	// A writer of int64 nanoseconds never produces times or durations that
	// overflow them; decoding such fields would wrap around silently.
	if r.Bad || stale > uint64(maxMillis-fresh) || load > maxMicros || (e.Negative && len(r.B) > 0) {
		return Envelope{}, ErrCorrupt
	}
	e.Created = created * int64(time.Millisecond)
	e.FreshUntil = fresh * int64(time.Millisecond)
	e.StaleUntil = (fresh + int64(stale)) * int64(time.Millisecond)
	e.LoadDuration = time.Duration(load) * time.Microsecond
	e.Payload = r.B
	return e, nil
}

// The largest times and durations, in the envelope's units, that fit in
// int64 nanoseconds.
const (
	maxMillis = math.MaxInt64 / int64(time.Millisecond)
	maxMicros = math.MaxInt64 / uint64(time.Microsecond)
)

// reader adds the envelope's own fields to wire.Reader.
type reader struct{ wire.Reader }

// tags reads a non-empty tag list within the limits.
func (r *reader) tags() []string {
	n := r.Uvarint()
	if r.Bad || n == 0 || n > MaxTags || n > uint64(len(r.B)) {
		r.Bad = true
		return nil
	}
	tags := make([]string, n)
	for i := range tags {
		if tags[i] = r.String(MaxTagLength); r.Bad {
			return nil
		}
	}
	return tags
}

// millis reads a time in Unix milliseconds that fits in int64 nanoseconds.
func (r *reader) millis() int64 {
	v := r.Varint()
	if v < -maxMillis || v > maxMillis {
		r.Bad = true
		return 0
	}
	return v
}
