package l2_test

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"math"
	"slices"
	"testing"
	"time"

	"github.com/strata-cache/strata/l2"
)

const ms = int64(time.Millisecond)

// roundTripCases pair an envelope with what Decode(Encode()) returns: times
// truncated to the millisecond, the load duration to the microsecond.
var roundTripCases = []struct {
	name   string
	in     l2.Envelope
	want   l2.Envelope
	noFuzz bool // too big to be a useful fuzz seed
}{
	{
		name: "positive",
		in: l2.Envelope{Version: 42, Created: 1_700_000_000_000 * ms, FreshUntil: 1_700_000_060_000 * ms,
			StaleUntil: 1_700_000_090_000 * ms, LoadDuration: 1500 * time.Microsecond, Payload: []byte("hello")},
		want: l2.Envelope{Version: 42, Created: 1_700_000_000_000 * ms, FreshUntil: 1_700_000_060_000 * ms,
			StaleUntil: 1_700_000_090_000 * ms, LoadDuration: 1500 * time.Microsecond, Payload: []byte("hello")},
	},
	{
		name: "negative",
		in:   l2.Envelope{Negative: true, Version: 1, Created: 5 * ms, FreshUntil: 10 * ms, StaleUntil: 10 * ms},
		want: l2.Envelope{Negative: true, Version: 1, Created: 5 * ms, FreshUntil: 10 * ms, StaleUntil: 10 * ms},
	},
	{
		name: "empty payload",
		in:   l2.Envelope{Version: 3, FreshUntil: ms, StaleUntil: 2 * ms, Payload: []byte{}},
		want: l2.Envelope{Version: 3, FreshUntil: ms, StaleUntil: 2 * ms},
	},
	{
		name:   "large payload",
		in:     l2.Envelope{Version: 9, FreshUntil: 1000 * ms, StaleUntil: 2000 * ms, Payload: bytes.Repeat([]byte{0, 1, 0xFF, 'x'}, 1<<18)},
		want:   l2.Envelope{Version: 9, FreshUntil: 1000 * ms, StaleUntil: 2000 * ms, Payload: bytes.Repeat([]byte{0, 1, 0xFF, 'x'}, 1<<18)},
		noFuzz: true,
	},
	{
		name: "type fingerprint",
		in:   l2.Envelope{Type: 0x0123456789ABCDEF, Version: 5, FreshUntil: 10 * ms, StaleUntil: 20 * ms, Payload: []byte("v")},
		want: l2.Envelope{Type: 0x0123456789ABCDEF, Version: 5, FreshUntil: 10 * ms, StaleUntil: 20 * ms, Payload: []byte("v")},
	},
	{
		name: "every flag",
		in:   l2.Envelope{Negative: true, Type: math.MaxUint64, Version: 6, Tags: []string{"a", "b"}},
		want: l2.Envelope{Negative: true, Type: math.MaxUint64, Version: 6, Tags: []string{"a", "b"}},
	},
	{
		name: "tags and type",
		in:   l2.Envelope{Type: 1, Tags: []string{"t1", "t2"}, Payload: []byte("p")},
		want: l2.Envelope{Type: 1, Tags: []string{"t1", "t2"}, Payload: []byte("p")},
	},
	{
		name: "zero envelope",
		in:   l2.Envelope{},
		want: l2.Envelope{},
	},
	{
		name: "largest version",
		in:   l2.Envelope{Version: math.MaxUint64, Payload: []byte("v")},
		want: l2.Envelope{Version: math.MaxUint64, Payload: []byte("v")},
	},
	{
		name: "times truncated to milliseconds",
		in: l2.Envelope{Created: 1_700_000_000_123_456_789, FreshUntil: 1_700_000_060_999_999_999,
			StaleUntil: 1_700_000_090_000_000_001, LoadDuration: 1234567 * time.Nanosecond, Payload: []byte("p")},
		want: l2.Envelope{Created: 1_700_000_000_123_000_000, FreshUntil: 1_700_000_060_999_000_000,
			StaleUntil: 1_700_000_090_000_000_000, LoadDuration: 1234 * time.Microsecond, Payload: []byte("p")},
	},
	{
		name: "stale within the fresh millisecond",
		in:   l2.Envelope{FreshUntil: 10*ms + 100, StaleUntil: 10*ms + 900},
		want: l2.Envelope{FreshUntil: 10 * ms, StaleUntil: 10 * ms},
	},
	{
		name: "stale before fresh becomes fresh",
		in:   l2.Envelope{FreshUntil: 20 * ms, StaleUntil: 10 * ms},
		want: l2.Envelope{FreshUntil: 20 * ms, StaleUntil: 20 * ms},
	},
	{
		name: "negative load duration becomes zero",
		in:   l2.Envelope{LoadDuration: -time.Second},
		want: l2.Envelope{},
	},
	{
		name: "times before 1970 truncate toward zero",
		in:   l2.Envelope{Created: -1_500_000, FreshUntil: -2_500_000, StaleUntil: -1_999_999},
		want: l2.Envelope{Created: -1 * ms, FreshUntil: -2 * ms, StaleUntil: -1 * ms},
	},
	{
		name: "extreme times",
		in: l2.Envelope{Created: math.MaxInt64, FreshUntil: math.MinInt64, StaleUntil: math.MaxInt64,
			LoadDuration: math.MaxInt64},
		want: l2.Envelope{Created: math.MaxInt64 / ms * ms, FreshUntil: math.MinInt64 / ms * ms,
			StaleUntil: math.MaxInt64 / ms * ms, LoadDuration: math.MaxInt64 / time.Microsecond * time.Microsecond},
	},
}

func TestEnvelopeRoundTrip(t *testing.T) {
	for _, tt := range roundTripCases {
		t.Run(tt.name, func(t *testing.T) {
			enc := tt.in.Encode()
			got, err := l2.Decode(enc)
			if err != nil {
				t.Fatalf("Decode(Encode()): %v", err)
			}
			if !envelopesEqual(got, tt.want) {
				t.Fatalf("Decode(Encode()) = %s\nwant %s", describe(got), describe(tt.want))
			}
			// AppendTo writes the same bytes after whatever dst holds.
			prefix := []byte("prefix")
			appended := tt.in.AppendTo(bytes.Clone(prefix))
			if !bytes.Equal(appended[:len(prefix)], prefix) || !bytes.Equal(appended[len(prefix):], enc) {
				t.Fatal("AppendTo(prefix) != prefix + Encode()")
			}
		})
	}
}

// TestDecodedPayloadAliasesInput documents that Decode does not copy.
func TestDecodedPayloadAliasesInput(t *testing.T) {
	enc := (&l2.Envelope{Payload: []byte("abc")}).Encode()
	e, err := l2.Decode(enc)
	if err != nil {
		t.Fatal(err)
	}
	if len(e.Payload) != 3 || &e.Payload[0] != &enc[len(enc)-7] {
		t.Fatal("Payload does not alias the input")
	}
}

// rawEnvelope spells out every field of the wire format, so that a test can
// produce an envelope a correct writer never would, with a valid checksum:
// the decode must then fail on the check the test targets, not on the CRC.
type rawEnvelope struct {
	header         [4]byte
	typ            []byte // the type fingerprint's bytes, written when not nil
	version        uint64
	created, fresh int64  // Unix milliseconds
	stale, load    uint64 // milliseconds after fresh, microseconds
	payload        []byte
}

// goodRaw is a valid positive envelope.
func goodRaw() rawEnvelope {
	return rawEnvelope{
		header:  [4]byte{0x53, 0xA7, l2.FormatVersion, 0},
		version: 7, created: 1_700_000_000_000, fresh: 1_700_000_060_000, stale: 30_000, load: 1500,
		payload: []byte("value"),
	}
}

func (r rawEnvelope) bytes() []byte {
	b := append([]byte(nil), r.header[:]...)
	b = append(b, r.typ...)
	b = binary.AppendUvarint(b, r.version)
	b = binary.AppendVarint(b, r.created)
	b = binary.AppendVarint(b, r.fresh)
	b = binary.AppendUvarint(b, r.stale)
	b = binary.AppendUvarint(b, r.load)
	return withChecksum(append(b, r.payload...))
}

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// withChecksum returns a copy of body followed by its CRC-32C trailer.
func withChecksum(body []byte) []byte {
	out := append([]byte(nil), body...)
	return binary.LittleEndian.AppendUint32(out, crc32.Checksum(body, castagnoli))
}

// TestRawEnvelopeMatchesEncode checks the test's own model of the format, on
// which the corruption tests rely.
func TestRawEnvelopeMatchesEncode(t *testing.T) {
	env := l2.Envelope{Version: 7, Created: 1_700_000_000_000 * ms, FreshUntil: 1_700_000_060_000 * ms,
		StaleUntil: 1_700_000_090_000 * ms, LoadDuration: 1500 * time.Microsecond, Payload: []byte("value")}
	if got, want := goodRaw().bytes(), env.Encode(); !bytes.Equal(got, want) {
		t.Fatalf("raw envelope\n%x\nEncode\n%x", got, want)
	}
}

func TestDecodeRejectsCorruptInput(t *testing.T) {
	const maxMillis = math.MaxInt64 / ms
	mutated := func(f func(r *rawEnvelope)) []byte {
		r := goodRaw()
		f(&r)
		return r.bytes()
	}
	header := []byte{0x53, 0xA7, l2.FormatVersion, 0}
	tests := []struct {
		name string
		in   []byte
	}{
		{"nil", nil},
		{"empty", []byte{}},
		{"header only", header},
		{"one byte short of the smallest envelope", withChecksum(append(bytes.Clone(header), 0, 0, 0, 0))},
		{"checksum only", withChecksum(nil)},
		{"wrong first magic byte", mutated(func(r *rawEnvelope) { r.header[0] = 0x54 })},
		{"wrong second magic byte", mutated(func(r *rawEnvelope) { r.header[1] = 0xA8 })},
		{"format version 0", mutated(func(r *rawEnvelope) { r.header[2] = 0 })},
		{"format version 2", mutated(func(r *rawEnvelope) { r.header[2] = 2 })},
		{"format version 255", mutated(func(r *rawEnvelope) { r.header[2] = 255 })},
		{"compressed flag", mutated(func(r *rawEnvelope) { r.header[3] = l2.FlagCompressed })},
		{"compressed negative", mutated(func(r *rawEnvelope) {
			r.header[3], r.payload = l2.FlagCompressed|l2.FlagNegative, nil
		})},
		{"all flag bits", mutated(func(r *rawEnvelope) { r.header[3] = 0xFF })},
		{"negative entry with payload", mutated(func(r *rawEnvelope) { r.header[3] = l2.FlagNegative })},
		{"type flag without a type", withChecksum(append(bytes.Clone(header[:3]), l2.FlagType, 0, 0, 0, 0, 0))},
		{"type flag, type cut short", withChecksum(append(bytes.Clone(header[:3]), l2.FlagType, 1, 2, 3, 4, 5, 6, 7))},
		{"zero type", mutated(func(r *rawEnvelope) { r.header[3], r.typ = l2.FlagType, make([]byte, 8) })},
		{"bad checksum", func() []byte {
			b := goodRaw().bytes()
			b[len(b)-1] ^= 1
			return b
		}()},
		{"checksum of the whole input", func() []byte {
			b := goodRaw().bytes()
			return binary.LittleEndian.AppendUint32(b[:len(b)-4], crc32.Checksum(b, castagnoli))
		}()},
		{"varints run out", withChecksum(append(bytes.Clone(header), 0x80, 0x80, 0x80, 0x80, 0x80))},
		{"fields missing", withChecksum(append(bytes.Clone(header), 1, 2, 3, 0x80, 0x80))},
		{"varint overflows 64 bits", withChecksum(append(bytes.Clone(header),
			0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x7F, 0, 0, 0, 0))},
		// Fields a writer of int64 nanoseconds cannot produce: decoding them
		// would overflow int64 nanoseconds.
		{"created beyond int64 nanoseconds", mutated(func(r *rawEnvelope) { r.created = maxMillis + 1 })},
		{"created before int64 nanoseconds", mutated(func(r *rawEnvelope) { r.created = -maxMillis - 1 })},
		{"fresh beyond int64 nanoseconds", mutated(func(r *rawEnvelope) { r.fresh, r.stale = maxMillis+1, 0 })},
		{"fresh before int64 nanoseconds", mutated(func(r *rawEnvelope) { r.fresh = math.MinInt64 })},
		{"stale beyond int64 nanoseconds", mutated(func(r *rawEnvelope) { r.fresh, r.stale = maxMillis, 1 })},
		{"stale wraps around", mutated(func(r *rawEnvelope) { r.stale = math.MaxUint64 })},
		{"load beyond int64 nanoseconds", mutated(func(r *rawEnvelope) { r.load = math.MaxInt64/1000 + 1 })},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			wantCorrupt(t, tt.in)
		})
	}
}

// TestDecodeDetectsEveryFlippedByte: a change anywhere, in the header, a
// field, the payload or the checksum, is caught.
func TestDecodeDetectsEveryFlippedByte(t *testing.T) {
	for _, tt := range roundTripCases {
		if tt.noFuzz {
			continue
		}
		t.Run(tt.name, func(t *testing.T) {
			valid := tt.in.Encode()
			for i := range valid {
				for _, mask := range []byte{0x01, 0x80, 0xFF} {
					b := bytes.Clone(valid)
					b[i] ^= mask
					if e, err := l2.Decode(b); !errors.Is(err, l2.ErrCorrupt) {
						t.Fatalf("byte %d ^ %#x: Decode = %s, %v; want ErrCorrupt", i, mask, describe(e), err)
					}
				}
			}
		})
	}
}

func TestDecodeDetectsEveryTruncation(t *testing.T) {
	for _, tt := range roundTripCases {
		if tt.noFuzz {
			continue
		}
		t.Run(tt.name, func(t *testing.T) {
			valid := tt.in.Encode()
			for n := range len(valid) {
				if e, err := l2.Decode(valid[:n]); !errors.Is(err, l2.ErrCorrupt) {
					t.Fatalf("first %d of %d bytes: Decode = %s, %v; want ErrCorrupt", n, len(valid), describe(e), err)
				}
			}
			// Extra bytes after the checksum are not a valid envelope either.
			if _, err := l2.Decode(append(bytes.Clone(valid), 0)); !errors.Is(err, l2.ErrCorrupt) {
				t.Fatalf("with a trailing byte: Decode error = %v, want ErrCorrupt", err)
			}
		})
	}
}

func wantCorrupt(t *testing.T, b []byte) {
	t.Helper()
	e, err := l2.Decode(b)
	if !errors.Is(err, l2.ErrCorrupt) {
		t.Fatalf("Decode(%x) = %s, %v; want ErrCorrupt", b, describe(e), err)
	}
}

// envelopesEqual compares field by field; nil and empty payloads (and tag
// lists) are equal.
func envelopesEqual(a, b l2.Envelope) bool {
	return a.Negative == b.Negative && a.Type == b.Type && a.Version == b.Version && a.Created == b.Created &&
		a.FreshUntil == b.FreshUntil && a.StaleUntil == b.StaleUntil &&
		a.LoadDuration == b.LoadDuration && slices.Equal(a.Tags, b.Tags) && bytes.Equal(a.Payload, b.Payload)
}

func describe(e l2.Envelope) string {
	p := fmt.Sprintf("%q", e.Payload)
	if len(e.Payload) > 32 {
		p = fmt.Sprintf("%d bytes", len(e.Payload))
	}
	return fmt.Sprintf("{Negative:%v Type:%#x Version:%d Created:%d FreshUntil:%d StaleUntil:%d LoadDuration:%d Tags:%q Payload:%s}",
		e.Negative, e.Type, e.Version, e.Created, e.FreshUntil, e.StaleUntil, int64(e.LoadDuration), e.Tags, p)
}
