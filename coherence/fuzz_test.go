package coherence

import (
	"bytes"
	"errors"
	"reflect"
	"strings"
	"testing"

	"github.com/strata-cache/strata/internal/fuzzcorpus"
)

// fuzzKey and fuzzOtherKey are the MAC keys the fuzz targets sign with.
var (
	fuzzKey      = []byte("0123456789abcdef")
	fuzzOtherKey = []byte("fedcba9876543210")
)

// FuzzMessageDecode feeds Decode arbitrary bytes, without a key and with
// one. What decodes is a valid message that survives a round trip, signed
// or not; with a key only a message whose MAC verifies decodes, and then to
// what it decodes to without the key. The input is also signed for real
// (its MAC flag set and its MAC appended), so the fuzzer reaches the
// parsing behind a valid MAC: the MAC changes nothing there, and any one
// flipped bit of the signed message is rejected.
func FuzzMessageDecode(f *testing.F) {
	for _, m := range sampleMessages() {
		f.Add(Encode(&m, nil))
		f.Add(Encode(&m, fuzzKey))
	}
	fuzzcorpus.Write(f, messageCorpus())
	f.Fuzz(func(t *testing.T, b []byte) {
		plain, err := decodeChecked(t, b, nil)
		signed, errSigned := decodeChecked(t, b, fuzzKey)
		switch {
		case errSigned == nil && (err != nil || !reflect.DeepEqual(plain, signed)):
			t.Fatalf("%x: with the key %+v, without %+v, %v", b, signed, plain, err)
		case errSigned == nil && b[4]&flagMAC == 0:
			t.Fatalf("%x: no MAC, accepted with a key", b)
		case err == nil && b[4]&flagMAC == 0 && !errors.Is(errSigned, ErrUnauthenticated):
			t.Fatalf("%x: no MAC, with a key: %v, want ErrUnauthenticated", b, errSigned)
		}
		if errSigned == nil {
			if _, err := Decode(b, fuzzOtherKey); !errors.Is(err, ErrUnauthenticated) {
				t.Fatalf("%x: with another key: %v, want ErrUnauthenticated", b, err)
			}
		}
		if len(b) < headerLen {
			return
		}
		resigned := sign(b)
		plain, err = decodeChecked(t, resigned, nil)
		signed, errSigned = decodeChecked(t, resigned, fuzzKey)
		if !errors.Is(errSigned, err) || !reflect.DeepEqual(plain, signed) {
			t.Fatalf("%x signed: with the key %+v, %v; without %+v, %v", resigned, signed, errSigned, plain, err)
		}
		bit := int(b[0]) + len(b) // some bit, chosen by the input
		resigned[bit/8%len(resigned)] ^= 1 << (bit % 8)
		if m, err := Decode(resigned, fuzzKey); err == nil {
			t.Fatalf("%x: a flipped bit, accepted as %+v", resigned, m)
		}
	})
}

// sign returns a copy of b with its MAC flag set and a MAC under fuzzKey
// appended.
func sign(b []byte) []byte {
	s := bytes.Clone(b)
	s[4] |= flagMAC
	return append(s, mac(fuzzKey, s)...)
}

// decodeChecked runs Decode(b, key) and checks what it returns: ErrMalformed
// or (with a key) ErrUnauthenticated, or a valid message that Encode gives
// back, with a MAC and without.
func decodeChecked(t *testing.T, b, key []byte) (Message, error) {
	t.Helper()
	m, err := Decode(b, key)
	if err != nil {
		if !errors.Is(err, ErrMalformed) && (key == nil || !errors.Is(err, ErrUnauthenticated)) {
			t.Fatalf("Decode(%x, %q): error %v", b, key, err)
		}
		if !reflect.DeepEqual(m, Message{}) {
			t.Fatalf("Decode(%x, %q): error %v with %+v", b, key, err, m)
		}
		return m, err
	}
	if problem := invalid(&m); problem != "" {
		t.Fatalf("Decode(%x, %q) = %+v: %s", b, key, m, problem)
	}
	for _, k := range [][]byte{nil, fuzzKey} {
		again, err := Decode(Encode(&m, k), k)
		if err != nil || !reflect.DeepEqual(again, m) {
			t.Fatalf("Decode(%x, %q) = %+v; re-encoded with key %q: %+v, %v", b, key, m, k, again, err)
		}
	}
	return m, nil
}

// invalid says what makes m a message Decode must not return ("" when
// nothing does): the rules in the package doc.
func invalid(m *Message) string {
	switch {
	case m.Origin == "" || len(m.Origin) > MaxOriginLen:
		return "origin"
	case m.Kind < KindKeys || m.Kind > KindAck:
		return "kind"
	case m.Seq == 0 && m.Kind != KindHeartbeat && m.Kind != KindAck:
		return "sequence 0"
	case len(m.Items) > MaxItems || m.Items != nil && len(m.Items) == 0:
		return "items"
	case m.L2Server != "" && !m.L2Missed || len(m.L2Server) > MaxOriginLen:
		return "L2 server"
	}
	return ""
}

// messageCorpus is the committed corpus of FuzzMessageDecode: real
// messages of every kind, every flag combination (ack wanted, L2 missed,
// L2 server) on one of them, signed and not, and broken ones: truncated,
// oversized length fields, invalid UTF-8.
func messageCorpus() []fuzzcorpus.Seed {
	var seeds []fuzzcorpus.Seed
	add := func(name string, b []byte) { seeds = append(seeds, fuzzcorpus.Seed{Name: name, Args: []any{b}}) }
	add("empty", []byte{})
	add("header-only", []byte{magic0, magic1, formatVersion, byte(KindKeys), 0})
	base := Message{Origin: "node-a", Epoch: 7, Seq: 3, Kind: KindKeys, Namespace: "users", Items: []string{"1", "2"},
		Version: 99, SentAt: 1_700_000_000_000_000_000, L2Server: "10.0.0.7:6379"}
	for kind := KindKeys; kind <= KindAck; kind++ {
		for flags := range 8 {
			if kind != KindKeys && flags != 0 && flags != 7 {
				continue // every flag combination on one kind suffices
			}
			m := base
			m.Kind, m.AckWanted, m.L2Missed = kind, flags&1 != 0, flags&2 != 0
			if flags&4 == 0 {
				m.L2Server = ""
			}
			var key []byte
			if flags == 7 || flags == 0 {
				key = fuzzKey
			}
			add(kind.String()+"-flags-"+string(rune('0'+flags)), Encode(&m, key))
		}
	}
	valid := Encode(&base, nil)
	for _, n := range []int{3, 6, len(valid) / 2, len(valid) - 1} {
		add("truncated-"+string(rune('a'+n%26)), valid[:n])
	}
	fields := []byte{magic0, magic1, formatVersion, byte(KindKeys), 0, 1, 1, 0, 0} // epoch, seq, version, sent
	add("origin-length-huge", append(bytes.Clone(fields), 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01, 'n'))
	add("origin-too-long", Encode(&Message{Origin: strings.Repeat("o", MaxOriginLen+1), Seq: 1, Kind: KindKeys}, nil))
	add("item-count-huge", append(bytes.Clone(fields), 1, 'n', 0, 0xff, 0xff, 0xff, 0xff, 0x0f, 1, 'k'))
	add("item-length-past-input", append(bytes.Clone(fields), 1, 'n', 0, 1, 100, 'k'))
	add("invalid-utf8", Encode(&Message{Origin: "\xff\xfe", Seq: 1, Kind: KindTags, Namespace: "\xc3\x28",
		Items: []string{"\xa0\xa1", ""}}, fuzzKey))
	add("mac-too-short", append([]byte{magic0, magic1, formatVersion, byte(KindKeys), flagMAC}, 1, 2, 3))
	add("server-without-missed", append([]byte{magic0, magic1, formatVersion, byte(KindKeys), flagL2Server},
		Encode(&base, nil)[headerLen:]...))
	return seeds
}

// FuzzMessageRoundTrip builds messages from arbitrary fields: Decode of
// Encode, signed or not, gives the message back exactly when it keeps the
// rules in the package doc (a non-empty origin within MaxOriginLen, a known
// kind, a sequence unless a heartbeat or ack, an L2 server only with
// L2Missed), and ErrMalformed otherwise. items holds the items separated
// by 0xFF bytes ("" is none).
func FuzzMessageRoundTrip(f *testing.F) {
	f.Add("node-a", uint64(7), uint64(1), uint8(KindKeys), "users", "1\xff2", uint64(99), int64(1_700_000_000_000_000_000),
		false, false, "", false)
	f.Add("n", uint64(1), uint64(0), uint8(KindHeartbeat), "", "", uint64(0), int64(-5), false, false, "", true)
	fuzzcorpus.Write(f, []fuzzcorpus.Seed{
		{Name: "ack", Args: []any{"n", uint64(1), uint64(0), uint8(KindAck), "", "other", uint64(4), int64(0), false, false, "", true}},
		{Name: "missed-on-server", Args: []any{"n", uint64(1), uint64(5), uint8(KindKeys), "ns", "k", uint64(0), int64(0), true, true, "10.0.0.7:6379", true}},
		{Name: "server-without-missed", Args: []any{"n", uint64(1), uint64(5), uint8(KindTags), "ns", "t", uint64(0), int64(0), true, false, "a:1", false}},
		{Name: "sequence-zero", Args: []any{"n", uint64(1), uint64(0), uint8(KindClear), "ns", "", uint64(12), int64(0), false, false, "", false}},
		{Name: "empty-origin", Args: []any{"", uint64(1), uint64(1), uint8(KindPattern), "ns", "user:*", uint64(0), int64(0), false, false, "", true}},
		{Name: "origin-too-long", Args: []any{strings.Repeat("o", MaxOriginLen+1), uint64(1), uint64(1), uint8(KindKeys), "ns", "k", uint64(0), int64(0), false, false, "", false}},
		{Name: "unknown-kind", Args: []any{"n", uint64(1), uint64(1), uint8(0), "ns", "k", uint64(0), int64(0), false, false, "", false}},
		{Name: "kind-past-ack", Args: []any{"n", uint64(1), uint64(1), uint8(KindAck + 1), "ns", "k", uint64(0), int64(0), false, false, "", true}},
		{Name: "invalid-utf8", Args: []any{"\xff", uint64(1 << 63), uint64(1 << 40), uint8(KindKeys), "\xc3\x28", "\xa0\xff\xff", uint64(1), int64(-1), true, true, "\xfe", true}},
	})
	f.Fuzz(func(t *testing.T, origin string, epoch, seq uint64, kind uint8, namespace, items string, version uint64,
		sentAt int64, ackWanted, l2Missed bool, l2Server string, signed bool) {
		m := Message{Origin: origin, Epoch: epoch, Seq: seq, Kind: Kind(kind), Namespace: namespace, Version: version,
			SentAt: sentAt, AckWanted: ackWanted, L2Missed: l2Missed, L2Server: l2Server}
		if items != "" {
			m.Items = strings.Split(items, "\xff")
		}
		var key []byte
		if signed {
			key = fuzzKey
		}
		enc := Encode(&m, key)
		got, err := Decode(enc, key)
		want := m
		if !m.L2Missed {
			want.L2Server = "" // sent only with L2Missed
		}
		if invalid(&want) != "" || len(enc) > MaxMessageSize {
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("invalid (%s) %+v: Decode(Encode()) = %+v, %v; want ErrMalformed", invalid(&want), m, got, err)
			}
			return
		}
		if err != nil || !reflect.DeepEqual(got, want) {
			t.Fatalf("Decode(Encode(%+v)) = %+v, %v", m, got, err)
		}
	})
}
