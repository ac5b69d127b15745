package coherence

import (
	"bytes"
	"errors"
	"reflect"
	"testing"
)

func sampleMessages() []Message {
	return []Message{
		{Origin: "node-a", Epoch: 7, Seq: 1, Kind: KindKeys, Namespace: "users", Items: []string{"1", "2", "{odd}key"}, Version: 99, SentAt: 1_700_000_000_000_000_000},
		{Origin: "n", Epoch: 1 << 63, Seq: 1 << 40, Kind: KindTags, Namespace: "ns", Items: []string{"tag:a"}},
		{Origin: "n", Epoch: 1, Seq: 2, Kind: KindPattern, Namespace: "ns", Items: []string{"user:*"}},
		{Origin: "n", Epoch: 1, Seq: 3, Kind: KindClear, Namespace: "ns", Version: 12},
		{Origin: "n", Epoch: 1, Seq: 0, Kind: KindHeartbeat, SentAt: -5},
		{Origin: "n", Epoch: 1, Seq: 4, Kind: KindKeys, Namespace: "ns", Items: []string{"k"}, L2Missed: true},
		{Origin: "n", Epoch: 1, Seq: 5, Kind: KindKeys, Namespace: "ns", Items: []string{"k"}, L2Missed: true, L2Server: "10.0.0.7:6379"},
	}
}

func TestRoundTrip(t *testing.T) {
	for _, key := range [][]byte{nil, []byte("0123456789abcdef")} {
		for _, m := range sampleMessages() {
			got, err := Decode(Encode(&m, key), key)
			if err != nil {
				t.Fatalf("%v: %v", m, err)
			}
			if !reflect.DeepEqual(got, m) {
				t.Fatalf("round trip: got %+v, want %+v", got, m)
			}
		}
	}
}

func TestAuthentication(t *testing.T) {
	m := sampleMessages()[0]
	key, other := []byte("0123456789abcdef"), []byte("fedcba9876543210")
	if _, err := Decode(Encode(&m, nil), key); !errors.Is(err, ErrUnauthenticated) {
		t.Errorf("unsigned message with a key: %v, want ErrUnauthenticated", err)
	}
	if _, err := Decode(Encode(&m, other), key); !errors.Is(err, ErrUnauthenticated) {
		t.Errorf("message signed with another key: %v, want ErrUnauthenticated", err)
	}
	signed := Encode(&m, key)
	for i := range signed {
		tampered := bytes.Clone(signed)
		tampered[i] ^= 0x20
		if _, err := Decode(tampered, key); err == nil {
			t.Fatalf("byte %d flipped: message accepted", i)
		}
	}
}

func TestMalformed(t *testing.T) {
	valid := Encode(&sampleMessages()[0], nil)
	cases := map[string][]byte{
		"empty":         nil,
		"short":         valid[:3],
		"bad magic":     append([]byte{0, 0}, valid[2:]...),
		"bad format":    append([]byte{magic0, magic1, 9}, valid[3:]...),
		"bad kind":      append([]byte{magic0, magic1, formatVersion, 0}, valid[4:]...),
		"unknown flags": append([]byte{magic0, magic1, formatVersion, 1, 0x80}, valid[5:]...),
		"trailing":      append(bytes.Clone(valid), 0),
		"huge items":    append(bytes.Clone(valid[:len(valid)-9]), 0xff, 0xff, 0xff, 0xff, 0x0f),
	}
	for i := range valid {
		cases["truncated at "+string(rune('0'+i%10))+string(rune('a'+i/10))] = valid[:i]
	}
	named := Encode(&sampleMessages()[6], nil)
	named[4] &^= flagL2Missed
	cases["server without L2 missed"] = named
	for name, b := range cases {
		if _, err := Decode(b, nil); !errors.Is(err, ErrMalformed) {
			t.Errorf("%s: err = %v, want ErrMalformed", name, err)
		}
	}
}
