package cluster

import (
	"bytes"
	"errors"
	"io"
	"log/slog"
	"reflect"
	"sync"
	"testing"
	"time"

	"github.com/strata-cache/strata/coherence"
	"github.com/strata-cache/strata/internal/bus"
	"github.com/strata-cache/strata/internal/fuzzcorpus"
)

// fuzzKey is the MAC key of the keyed bus in FuzzNotifyMsg.
var fuzzKey = []byte("0123456789abcdef")

// FuzzNotifyMsg hands arbitrary gossip payloads to the node's delegate, as
// memberlist does, on a node wired to two invalidation buses as tiered
// wires it (one without a key, one with): the payload reaches the buses
// intact, in a copy (memberlist reuses its buffer), nothing panics, and a
// bus applies a payload only if it decodes (under the bus's key) into a
// new invalidation, and then exactly the decoded message; malformed and
// unauthenticated payloads are counted and dropped.
func FuzzNotifyMsg(f *testing.F) {
	msgs := []coherence.Message{
		{Origin: "peer", Epoch: 7, Seq: 1, Kind: coherence.KindKeys, Namespace: "users", Items: []string{"1", "2"}, Version: 99},
		{Origin: "peer", Epoch: 7, Seq: 2, Kind: coherence.KindTags, Namespace: "users", Items: []string{"t"}, AckWanted: true},
		{Origin: "peer", Epoch: 7, Seq: 2, Kind: coherence.KindHeartbeat},
	}
	for _, m := range msgs {
		f.Add(coherence.Encode(&m, nil))
		f.Add(coherence.Encode(&m, fuzzKey))
	}
	fuzzcorpus.Write(f, gossipCorpus())
	d := newFuzzDelivery(f)
	f.Fuzz(func(t *testing.T, payload []byte) {
		d.check(t, payload)
	})
}

// gossipCorpus is the committed corpus of FuzzNotifyMsg: invalidations of
// every kind, signed and not, from a peer and under this node's own name,
// and payloads no bus accepts.
func gossipCorpus() []fuzzcorpus.Seed {
	var seeds []fuzzcorpus.Seed
	add := func(name string, b []byte) { seeds = append(seeds, fuzzcorpus.Seed{Name: name, Args: []any{b}}) }
	for kind := coherence.KindKeys; kind <= coherence.KindAck; kind++ {
		m := coherence.Message{Origin: "peer", Epoch: 9, Seq: 1, Kind: kind, Namespace: "ns", Items: []string{"self"},
			Version: 3, AckWanted: kind == coherence.KindClear, L2Missed: kind == coherence.KindKeys, L2Server: "a:1"}
		add(kind.String(), coherence.Encode(&m, nil))
		add(kind.String()+"-signed", coherence.Encode(&m, fuzzKey))
	}
	own := coherence.Message{Origin: "self", Epoch: 1, Seq: 1, Kind: coherence.KindKeys, Namespace: "ns", Items: []string{"k"}}
	add("own-name", coherence.Encode(&own, fuzzKey))
	wrongKey := coherence.Encode(&own, []byte("another key"))
	add("wrong-key", wrongKey)
	add("truncated", wrongKey[:len(wrongKey)/2])
	add("empty", []byte{})
	add("memberlist-leave-meta", []byte(metaLeaving))
	add("invalid-utf8", []byte("\xff\xfe\xfd\x00\xc3\x28"))
	return seeds
}

// fuzzDelivery is a node without memberlist whose deliveries go to two
// buses, and what they did with them.
type fuzzDelivery struct {
	node      *node
	delivered chan []byte
	buses     [2]*bus.Bus // without a key, with fuzzKey
	handlers  [2]*applied
}

func newFuzzDelivery(f *testing.F) *fuzzDelivery {
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	d := &fuzzDelivery{delivered: make(chan []byte, 1)}
	for i, key := range [][]byte{nil, fuzzKey} {
		d.handlers[i] = &applied{}
		b, err := bus.New(bus.Config{NodeID: "self", Gossip: silentGossip{}, Key: key, Handler: d.handlers[i],
			Logger: logger, HeartbeatInterval: time.Hour, LinkTimeout: time.Hour})
		if err != nil {
			f.Fatal(err)
		}
		d.buses[i] = b
		f.Cleanup(func() { _ = b.Close() })
	}
	d.node = newNode(settings{Config: Config{QueueSize: 8, Logger: logger}}, "self", func(msg []byte) {
		for _, b := range d.buses {
			b.Deliver(msg, bus.Gossip)
		}
		d.delivered <- msg
	}, nil)
	f.Cleanup(d.node.stopGoroutines)
	return d
}

// check delivers payload through the delegate and checks what each bus
// made of it.
func (d *fuzzDelivery) check(t *testing.T, payload []byte) {
	t.Helper()
	var before [2]coherence.Stats
	var appliedBefore [2]int
	for i, b := range d.buses {
		before[i] = b.Stats()
		appliedBefore[i], _ = d.handlers[i].count()
	}
	buf := bytes.Clone(payload)
	del := (*delegate)(d.node)
	del.NotifyMsg(buf)
	del.MergeRemoteState(buf, false) // unused, so harmless on any bytes
	clear(buf)                       // memberlist reuses the buffer
	select {
	case msg := <-d.delivered:
		if !bytes.Equal(msg, payload) {
			t.Fatalf("NotifyMsg(%x) delivered %x", payload, msg)
		}
	case <-time.After(10 * time.Second):
		t.Fatalf("NotifyMsg(%x): nothing delivered", payload)
	}
	for i, key := range [][]byte{nil, fuzzKey} {
		checkBus(t, payload, key, d.buses[i], before[i], d.handlers[i], appliedBefore[i])
	}
}

// checkBus asserts that b did with payload what its decoding allows; n is
// how many messages h had applied before.
func checkBus(t *testing.T, payload, key []byte, b *bus.Bus, before coherence.Stats, h *applied, n int) {
	t.Helper()
	after := b.Stats()
	m, err := coherence.Decode(payload, key)
	counted := [2]uint64{after.Malformed - before.Malformed, after.Unauthenticated - before.Unauthenticated}
	var wantCounted [2]uint64
	switch {
	case errors.Is(err, coherence.ErrUnauthenticated):
		wantCounted[1] = 1
	case err != nil:
		wantCounted[0] = 1
	}
	if after.Received-before.Received != 1 || counted != wantCounted {
		t.Fatalf("key %q, payload %x (%v): received %d, malformed and unauthenticated %v",
			key, payload, err, after.Received-before.Received, counted)
	}
	total, last := h.count()
	times := total - n
	applies := err == nil && m.Kind <= coherence.KindClear && (m.Origin != "self" || m.Epoch != b.Epoch())
	switch {
	case !applies && times > 0:
		t.Fatalf("key %q, payload %x (%+v, %v): applied %+v", key, payload, m, err, last)
	case times > 1:
		t.Fatalf("key %q, payload %x: applied %d times", key, payload, times)
	case times == 1 && !reflect.DeepEqual(last, m):
		t.Fatalf("key %q, payload %x: applied %+v, decoded %+v", key, payload, last, m)
	case applies && times == 0 && after.Duplicates == before.Duplicates:
		t.Fatalf("key %q, payload %x: %+v neither applied nor a duplicate", key, payload, m)
	}
}

// applied is a bus.Handler that counts the messages applied and keeps the
// last.
type applied struct {
	mu    sync.Mutex
	total int
	last  coherence.Message
}

func (a *applied) Apply(m *coherence.Message) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.total++
	a.last = *m
}

func (a *applied) Reset(string) {}
func (a *applied) Trust(bool)   {}

// count returns how many messages were applied, and the last.
func (a *applied) count() (int, coherence.Message) {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.total, a.last
}

// silentGossip is a bus.Gossiper with no peers that sends nothing.
type silentGossip struct{}

func (silentGossip) Name() string           { return "self" }
func (silentGossip) Members() []string      { return []string{"self"} }
func (silentGossip) Broadcast([]byte) error { return nil }
func (silentGossip) MaxPacket() int         { return 1336 }
