package l2_test

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/strata-cache/strata/internal/fuzzcorpus"
	"github.com/strata-cache/strata/l2"
)

// FuzzEnvelopeDecode feeds Decode arbitrary bytes: it must fail with
// ErrCorrupt or return a consistent envelope that survives another round
// trip unchanged, and whose encoding is a fixed point.
func FuzzEnvelopeDecode(f *testing.F) {
	for _, tt := range roundTripCases {
		if !tt.noFuzz {
			f.Add(tt.in.Encode())
		}
	}
	f.Add(goodRaw().bytes())
	f.Add([]byte{})
	fuzzcorpus.Write(f, envelopeCorpus())
	f.Fuzz(func(t *testing.T, b []byte) {
		checkDecode(t, b)
		// A random change almost never keeps the checksum valid; fixing it up
		// lets the fuzzer reach the field parsing behind it.
		if len(b) >= 4 {
			checkDecode(t, withChecksum(b[:len(b)-4]))
		}
	})
}

// checkDecode asserts that Decode fails with ErrCorrupt or returns an
// envelope that is consistent and survives another round trip unchanged.
func checkDecode(t *testing.T, b []byte) {
	t.Helper()
	e, err := l2.Decode(b)
	if err != nil {
		if !errors.Is(err, l2.ErrCorrupt) {
			t.Fatalf("Decode(%x) error = %v, want ErrCorrupt", b, err)
		}
		return
	}
	if e.StaleUntil < e.FreshUntil || e.LoadDuration < 0 || (e.Negative && len(e.Payload) > 0) ||
		len(e.Tags) > l2.MaxTags || b[3]&l2.FlagTags != 0 && len(e.Tags) == 0 {
		t.Fatalf("Decode(%x) = %s: inconsistent envelope", b, describe(e))
	}
	for _, tag := range e.Tags {
		if len(tag) > l2.MaxTagLength {
			t.Fatalf("Decode(%x) = %s: a tag of %d bytes", b, describe(e), len(tag))
		}
	}
	enc := e.Encode()
	again, err := l2.Decode(enc)
	if err != nil {
		t.Fatalf("Decode(%x) = %s, but decoding its Encode() fails: %v", b, describe(e), err)
	}
	if !envelopesEqual(again, e) {
		t.Fatalf("Decode(%x) = %s\nre-encoded and decoded: %s", b, describe(e), describe(again))
	}
	if reenc := again.Encode(); !bytes.Equal(reenc, enc) {
		t.Fatalf("Decode(%x): Encode is not a fixed point:\n%x\n%x", b, enc, reenc)
	}
}

// envelopeCorpus is the committed corpus of FuzzEnvelopeDecode: real
// envelopes with every flag combination, tags at and over their limits,
// invalid UTF-8, truncations and oversized length fields (with valid
// checksums, so that the decoder reaches the field behind them).
func envelopeCorpus() []fuzzcorpus.Seed {
	base := l2.Envelope{Version: 7, Created: 1_700_000_000_000 * ms, FreshUntil: 1_700_000_060_000 * ms,
		StaleUntil: 1_700_000_090_000 * ms, LoadDuration: 1500 * time.Microsecond,
		Tags: []string{"user:1", "team:9"}, Payload: []byte(`{"name":"ada"}`)}
	tagged := base.Encode()
	var seeds []fuzzcorpus.Seed
	add := func(name string, b []byte) { seeds = append(seeds, fuzzcorpus.Seed{Name: name, Args: []any{b}}) }
	add("empty", []byte{})
	add("tagged", tagged)
	add("negative-tagged", (&l2.Envelope{Negative: true, Version: 2, FreshUntil: 10 * ms, StaleUntil: 20 * ms,
		Tags: []string{"t"}}).Encode())
	add("invalid-utf8", (&l2.Envelope{Version: 1, Tags: []string{"\xff\xfe", "a\x00b"}, Payload: []byte("\xc3\x28\xa0")}).Encode())
	add("max-tags", (&l2.Envelope{Tags: repeatTags(l2.MaxTags, "t"), Payload: []byte("v")}).Encode())
	add("too-many-tags", (&l2.Envelope{Tags: repeatTags(l2.MaxTags+1, "t")}).Encode())
	add("longest-tag", (&l2.Envelope{Tags: []string{strings.Repeat("x", l2.MaxTagLength)}}).Encode())
	add("tag-too-long", (&l2.Envelope{Tags: []string{strings.Repeat("x", l2.MaxTagLength+1)}}).Encode())
	// Every combination of the flag byte's defined bits, and all bits, over
	// the tagged envelope's fields (a payload where negative forbids one).
	for _, flags := range []byte{0, 1, 2, 3, 4, 5, 6, 7, 0x80, 0xFF} {
		b := bytes.Clone(tagged[:len(tagged)-4])
		b[3] = flags
		add(fmt.Sprintf("flags-%#02x", flags), withChecksum(b))
	}
	for _, n := range []int{1, 4, 8, 12, len(tagged) / 2, len(tagged) - 5} {
		add(fmt.Sprintf("truncated-%d", n), withChecksum(tagged[:n]))
	}
	header := []byte{0x53, 0xA7, l2.FormatVersion, l2.FlagTags}
	fields := []byte{7, 0, 0, 0, 0} // version, created, fresh, stale, load
	oversized := func(name string, tail ...[]byte) {
		b := append(bytes.Clone(header), fields...)
		for _, t := range tail {
			b = append(b, t...)
		}
		add(name, withChecksum(b))
	}
	oversized("tag-count-huge", binary.AppendUvarint(nil, math.MaxUint64), []byte("t"))
	oversized("tag-count-past-input", binary.AppendUvarint(nil, 3), []byte{1, 'a'})
	oversized("tag-length-huge", []byte{1}, binary.AppendUvarint(nil, 1<<40), []byte("abc"))
	oversized("tag-length-past-input", []byte{1, 10}, []byte("abc"))
	oversized("tag-count-zero", []byte{0}, []byte("payload"))
	oversized("varint-overflow", bytes.Repeat([]byte{0xFF}, 10), []byte{0x01})
	return seeds
}

func repeatTags(n int, prefix string) []string {
	tags := make([]string, n)
	for i := range tags {
		tags[i] = fmt.Sprint(prefix, i)
	}
	return tags
}

// FuzzEnvelopeRoundTrip builds envelopes from arbitrary fields: Decode of
// Encode gives back the envelope at the format's precision (milliseconds,
// microseconds, no payload when negative, stale not before fresh), and
// fails, with ErrCorrupt, exactly when the tags break the documented
// limits. tags holds the tags separated by 0xFF bytes ("" is no tags).
func FuzzEnvelopeRoundTrip(f *testing.F) {
	f.Add(false, uint64(0x5eed), uint64(42), int64(1_700_000_000_000*ms), int64(1_700_000_060_000*ms), int64(1_700_000_090_000*ms),
		int64(1500*time.Microsecond), "", []byte("hello"))
	fuzzcorpus.Write(f, []fuzzcorpus.Seed{
		{Name: "negative-tagged", Args: []any{true, uint64(math.MaxUint64), uint64(1), int64(5 * ms), int64(10 * ms), int64(10 * ms), int64(0),
			"user:1\xffteam:2", []byte("dropped")}},
		{Name: "extreme-times", Args: []any{false, uint64(0), uint64(math.MaxUint64), int64(math.MaxInt64), int64(math.MinInt64),
			int64(math.MaxInt64), int64(math.MaxInt64), "\xfe\x00", []byte{}}},
		{Name: "before-1970-invalid-utf8", Args: []any{false, uint64(0), uint64(0), int64(-1_500_000), int64(-2_500_000),
			int64(-1_999_999), int64(-1), "\xff", []byte("\xc3\x28")}},
		{Name: "stale-before-fresh", Args: []any{false, uint64(0), uint64(3), int64(0), int64(20 * ms), int64(10 * ms), int64(999),
			"", []byte("v")}},
		{Name: "max-tags", Args: []any{false, uint64(1), uint64(3), int64(0), int64(0), int64(0), int64(0),
			strings.Repeat("t\xff", l2.MaxTags-1) + "t", []byte("v")}},
		{Name: "too-many-tags", Args: []any{false, uint64(0), uint64(3), int64(0), int64(0), int64(0), int64(0),
			strings.Repeat("t\xff", l2.MaxTags), []byte("v")}},
		{Name: "tag-too-long", Args: []any{false, uint64(0), uint64(3), int64(0), int64(0), int64(0), int64(0),
			strings.Repeat("x", l2.MaxTagLength+1), []byte("v")}},
		{Name: "empty-tags", Args: []any{false, uint64(0), uint64(3), int64(0), int64(0), int64(0), int64(0), "\xff\xff", []byte("v")}},
	})
	f.Fuzz(func(t *testing.T, negative bool, typ, version uint64, created, fresh, stale, load int64, tags string, payload []byte) {
		in := l2.Envelope{Negative: negative, Type: typ, Version: version, Created: created, FreshUntil: fresh, StaleUntil: stale,
			LoadDuration: time.Duration(load), Payload: payload}
		if tags != "" {
			in.Tags = strings.Split(tags, "\xff")
		}
		got, err := l2.Decode(in.Encode())
		if !tagsWithinLimits(in.Tags) {
			if !errors.Is(err, l2.ErrCorrupt) {
				t.Fatalf("%d tags beyond the limits: Decode(Encode()) = %s, %v; want ErrCorrupt", len(in.Tags), describe(got), err)
			}
			return
		}
		if err != nil {
			t.Fatalf("Decode(Encode(%s)): %v", describe(in), err)
		}
		if want := atFormatPrecision(in); !envelopesEqual(got, want) {
			t.Fatalf("Decode(Encode(%s))\n= %s\nwant %s", describe(in), describe(got), describe(want))
		}
	})
}

func tagsWithinLimits(tags []string) bool {
	if len(tags) > l2.MaxTags {
		return false
	}
	for _, t := range tags {
		if len(t) > l2.MaxTagLength {
			return false
		}
	}
	return true
}

// atFormatPrecision is what the envelope format keeps of e.
func atFormatPrecision(e l2.Envelope) l2.Envelope {
	fresh := e.FreshUntil / ms
	want := l2.Envelope{Negative: e.Negative, Type: e.Type, Version: e.Version, Created: e.Created / ms * ms, FreshUntil: fresh * ms,
		StaleUntil: (fresh + max(e.StaleUntil/ms-fresh, 0)) * ms, Tags: e.Tags,
		LoadDuration: max(e.LoadDuration/time.Microsecond, 0) * time.Microsecond}
	if !e.Negative {
		want.Payload = e.Payload
	}
	return want
}

// FuzzKeyLayout checks the Redis key layout for any valid prefix,
// namespace, namespace version, routing epoch and key: a value key, plain
// or on a stand-in shard, parses back to its namespace and key, and no
// other key parses as a value key; an entry's value, lease and stand-in
// keys carry one hash tag, so share a Cluster slot (whatever the namespace,
// version or epoch); and a flush keeps data keys only.
func FuzzKeyLayout(f *testing.F) {
	f.Add("strata", "users", uint64(0), uint64(0), "k1", "tag")
	f.Add("strata", "users", uint64(3), uint64(7), "}x", "}t")
	fuzzcorpus.Write(f, []fuzzcorpus.Seed{
		{Name: "separators", Args: []any{"p:q@", "a:b", uint64(1733100000000), uint64(math.MaxUint64), "~~x", ""}},
		{Name: "braces-in-key", Args: []any{"s", "n", uint64(0), uint64(1), "a}b{c}", "{t}"}},
		{Name: "key-in-braces", Args: []any{"strata", "ns", uint64(2), uint64(2), "{a}", "x"}},
		{Name: "empty-key", Args: []any{"strata", "ns", uint64(0), uint64(0), "", "t"}},
		{Name: "invalid-utf8", Args: []any{"strata", "ns", uint64(0), uint64(0), "\xff\xfe:lease", "\xc3\x28"}},
		{Name: "lookalike-namespace", Args: []any{"strata", "@7:ns", uint64(5), uint64(9), "ns:{k}", "t"}},
		{Name: "tilde", Args: []any{"strata", "ns", uint64(0), uint64(0), "~", "~"}},
		{Name: "close-brace", Args: []any{"strata", "ns", uint64(0), uint64(0), "}", "}"}},
		{Name: "invalid-prefix", Args: []any{"a{b", "ns", uint64(0), uint64(0), "k", "t"}},
		{Name: "invalid-namespace", Args: []any{"strata", "ns#1", uint64(0), uint64(0), "k", "t"}},
	})
	f.Fuzz(func(t *testing.T, prefix, ns string, version, epoch uint64, key, tag string) {
		// The rules: Config rejects a prefix with a brace (and defaults an
		// empty one), tiered rejects an empty namespace and one with '#' or a
		// brace.
		if prefix == "" || strings.ContainsAny(prefix, "{}") || ns == "" || strings.ContainsAny(ns, "#{}") {
			return
		}
		s := l2.KeyLayout(prefix)
		at := l2.NamespaceAt(ns, version)
		value, lease := s.Key(at, key), s.LeaseKey(at, key)
		standIn := l2.StandInPrefix(prefix, epoch) + strings.TrimPrefix(value, prefix)
		for _, k := range []string{value, standIn} {
			if gotNS, gotKey, ok := s.ParseKey(k); ok != (key != "") || ok && (gotNS != ns || gotKey != key) {
				t.Fatalf("ParseKey(%q) = %q, %q, %v; want %q, %q, %v", k, gotNS, gotKey, ok, ns, key, key != "")
			}
		}
		for _, k := range []string{lease, s.TagKey(at, tag), s.VersionKey(at), s.StreamKey(at)} {
			if gotNS, gotKey, ok := s.ParseKey(k); ok {
				t.Fatalf("ParseKey(%q) = %q, %q: not a value key", k, gotNS, gotKey)
			}
		}
		if key == "" {
			return // rejected before it gets here (tiered.ErrInvalidKey)
		}
		checkHashTags(t, key, value, lease, standIn)
		kept := l2.DataKeys([]string{value, s.TagKey(at, tag), lease, s.VersionKey(at), standIn, s.StreamKey(at)})
		if want := []string{value, lease, standIn}; !slices.Equal(kept, want) {
			t.Fatalf("DataKeys kept %q, want %q", kept, want)
		}
	})
}

// checkHashTags asserts that the keys of one entry have a non-empty hash
// tag taken from its key alone, the same for all, and so one Cluster slot,
// and that HashTag (the Ring's placement) agrees with Redis's rule.
func checkHashTags(t *testing.T, key string, keys ...string) {
	t.Helper()
	escaped := key
	if key[0] == '}' || key[0] == '~' {
		escaped = "~" + key
	}
	want, _, _ := strings.Cut(escaped, "}")
	for _, k := range keys {
		tag, whole := redisHashTag(k)
		if whole || tag != want || l2.HashTag(k) != tag {
			t.Fatalf("key %q: %q has hash tag %q (HashTag %q), want %q", key, k, tag, l2.HashTag(k), want)
		}
		if got := redisSlot(k); got != redisSlot(want) {
			t.Fatalf("key %q: %q in slot %d, want %d", key, k, got, redisSlot(want))
		}
	}
}

// redisHashTag is what Redis Cluster hashes of key (the cluster spec's
// keyHashSlot): the text between the first '{' and the first '}' after it
// if that is not empty, else the whole key (whole is then true).
func redisHashTag(key string) (tag string, whole bool) {
	s := strings.IndexByte(key, '{')
	if s < 0 {
		return key, true
	}
	e := strings.IndexByte(key[s+1:], '}')
	if e <= 0 {
		return key, true
	}
	return key[s+1 : s+1+e], false
}

// redisSlot is key's Redis Cluster hash slot: CRC16 (XMODEM) of its hash
// tag, modulo 16384.
func redisSlot(key string) int {
	tag, _ := redisHashTag(key)
	return int(crc16(tag) % 16384)
}

func crc16(s string) uint16 {
	var crc uint16
	for i := range len(s) {
		crc ^= uint16(s[i]) << 8
		for range 8 {
			if crc&0x8000 != 0 {
				crc = crc<<1 ^ 0x1021
			} else {
				crc <<= 1
			}
		}
	}
	return crc
}

// TestRedisSlot checks the test's own slot function against Redis: the
// CRC16 check value and CLUSTER KEYSLOT answers.
func TestRedisSlot(t *testing.T) {
	if got := crc16("123456789"); got != 0x31C3 {
		t.Errorf("crc16(123456789) = %#x, want 0x31c3", got)
	}
	for key, want := range map[string]int{"foo": 12182, "{user1000}.following": 3443, "{user1000}.followers": 3443, "foo{}{bar}": 8363} {
		if got := redisSlot(key); got != want {
			t.Errorf("slot of %q = %d, want %d", key, got, want)
		}
	}
}
