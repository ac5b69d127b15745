package tiered_test

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/strata-cache/strata/coherence"
	"github.com/strata-cache/strata/l2"
	"github.com/strata-cache/strata/tiered"
)

// Issue 15's bad-input table: every public entry point, given bad input,
// answers a clear error (or, where the input is legal, the right answer),
// never panics, and loses nothing: what the cache held before still
// answers after.

// TestBadInputKeys: empty, oversized and non-UTF-8 keys, and keys with the
// characters Redis gives a meaning to ({ } for hash tags, * ? [ for
// patterns), on every keyed entry point.
func TestBadInputKeys(t *testing.T) {
	ctx := context.Background()
	c, _ := newRedisClient(t, tiered.Config{})
	cache := newCache(t, c, "ns", tiered.Options[string]{})
	if err := cache.Set(ctx, "keep", "kept"); err != nil {
		t.Fatal(err)
	}
	long := strings.Repeat("k", tiered.MaxKeyLength+1)
	for _, key := range []string{"", long} {
		calls := map[string]func() error{
			"Get":         func() error { _, err := cache.Get(ctx, key, nil); return err },
			"GetWithInfo": func() error { _, _, err := cache.GetWithInfo(ctx, key, nil); return err },
			"GetMany":     func() error { _, err := cache.GetMany(ctx, []string{"keep", key}, nil); return err },
			"Set":         func() error { return cache.Set(ctx, key, "v") },
			"Delete":      func() error { return cache.Delete(ctx, "keep", key) },
			"Invalidate":  func() error { return c.Invalidate(ctx, "ns", key) },
		}
		for name, call := range calls {
			if err := call(); !errors.Is(err, tiered.ErrInvalidKey) {
				t.Errorf("%s(key of %d bytes) = %v, want ErrInvalidKey", name, len(key), err)
			}
		}
	}
	// A rejected batch changes nothing: "keep" was not deleted with it.
	if v, err := cache.Get(ctx, "keep", nil); err != nil || v != "kept" {
		t.Fatalf("after the rejected calls: Get(keep) = %q, %v", v, err)
	}

	// Legal keys that mean something to Redis are keys like any other.
	odd := []string{"\xff\xfe", "a{b}c", "{", "}", "}{", "{}", "a*", "*", "a?", "[ab]", "\\", "a b", "ns:x", "#1",
		strings.Repeat("{", tiered.MaxKeyLength)}
	for _, k := range odd {
		if err := cache.Set(ctx, k, "v:"+k); err != nil {
			t.Fatalf("Set(%q) = %v", k, err)
		}
	}
	if err := cache.Set(ctx, "ab", "v:ab"); err != nil {
		t.Fatal(err)
	}
	got, err := cache.GetMany(ctx, odd, nil)
	if err != nil || len(got) != len(odd) {
		t.Fatalf("GetMany(odd keys) = %d values, %v; want %d", len(got), err, len(odd))
	}
	for _, k := range odd {
		if got[k] != "v:"+k {
			t.Errorf("GetMany[%q] = %q", k, got[k])
		}
	}
	// Deleting "a*", "a?" and "[ab]" deletes those keys, not the keys they
	// would match as patterns.
	if err := cache.Delete(ctx, "a*", "a?", "[ab]"); err != nil {
		t.Fatal(err)
	}
	if v, err := cache.Get(ctx, "ab", nil); err != nil || v != "v:ab" {
		t.Fatalf("Delete of pattern-like keys took ab: %q, %v", v, err)
	}
	for _, k := range []string{"a*", "a?", "[ab]"} {
		if _, err := cache.Get(ctx, k, nil); !errors.Is(err, tiered.ErrNotFound) {
			t.Errorf("Get(%q) after its Delete = %v, want ErrNotFound", k, err)
		}
	}
}

func TestBadInputNamespaces(t *testing.T) {
	c := newClient(t, tiered.Config{})
	for _, ns := range []string{"", strings.Repeat("n", tiered.MaxNamespaceLength+1), "a{b", "a}b", "a#1"} {
		if _, err := tiered.NewCache(c, ns, tiered.Options[string]{}); !errors.Is(err, tiered.ErrInvalidNamespace) {
			t.Errorf("NewCache(%q) = %v, want ErrInvalidNamespace", ns, err)
		}
		if err := c.Invalidate(context.Background(), ns, "k"); !errors.Is(err, tiered.ErrInvalidNamespace) {
			t.Errorf("Invalidate(%q) = %v, want ErrInvalidNamespace", ns, err)
		}
		if err := c.InvalidateTags(context.Background(), ns, "t"); !errors.Is(err, tiered.ErrInvalidNamespace) {
			t.Errorf("InvalidateTags(%q) = %v, want ErrInvalidNamespace", ns, err)
		}
	}
	for _, ns := range []string{"\xff", "a*b", "a:b", "a b", strings.Repeat("n", tiered.MaxNamespaceLength)} {
		if _, err := tiered.NewCache(c, ns, tiered.Options[string]{}); err != nil {
			t.Errorf("NewCache(%q) = %v, want a cache", ns, err)
		}
	}
}

// TestBadInputCallbacks: nil and panicking loaders, batch loaders that
// panic or return nil maps, Tags and codecs that panic. A panic is an error
// carrying the stack, nothing is cached, and the key's flight is released:
// the next call loads again.
func TestBadInputCallbacks(t *testing.T) {
	ctx := context.Background()
	c, _ := newRedisClient(t, tiered.Config{})
	cache := newCache(t, c, "ns", tiered.Options[string]{})
	good := func(context.Context, string) (string, error) { return "good", nil }
	isPanic := func(err error, callback string) bool {
		var pe *tiered.PanicError
		return errors.As(err, &pe) && pe.Callback == callback && len(pe.Stack) > 0
	}

	if _, err := cache.Get(ctx, "k", nil); !errors.Is(err, tiered.ErrNotFound) {
		t.Errorf("Get with a nil loader = %v, want ErrNotFound (a lookup)", err)
	}
	if got, err := cache.GetMany(ctx, []string{"k"}, nil); err != nil || len(got) != 0 {
		t.Errorf("GetMany with a nil batch loader = %v, %v, want an empty lookup", got, err)
	}
	for range 2 { // the second: the flight was released
		_, err := cache.Get(ctx, "p", func(context.Context, string) (string, error) { panic("boom") })
		if !isPanic(err, "loader") {
			t.Fatalf("Get with a panicking loader = %v, want a *PanicError with the stack", err)
		}
	}
	if v, err := cache.Get(ctx, "p", good); err != nil || v != "good" {
		t.Fatalf("Get after the panics = %q, %v; want a new load", v, err)
	}
	_, err := cache.GetMany(ctx, []string{"b1", "b2"}, func(context.Context, []string) (map[string]string, error) { panic("boom") })
	if !isPanic(err, "loader") {
		t.Errorf("GetMany with a panicking batch loader = %v, want a *PanicError", err)
	}
	got, err := cache.GetMany(ctx, []string{"b1", "b2"}, func(context.Context, []string) (map[string]string, error) { return nil, nil })
	if err != nil || len(got) != 0 {
		t.Errorf("GetMany with a nil map = %v, %v; want no values, no error", got, err)
	}
	got, err = cache.GetMany(ctx, []string{"b1"}, func(context.Context, []string) (map[string]string, error) {
		return map[string]string{"b1": "one", "unasked": "x"}, nil
	})
	if err != nil || got["b1"] != "one" || len(got) != 1 {
		t.Errorf("GetMany with an extra key loaded = %v, %v; want b1 alone", got, err)
	}
	if _, err := cache.Get(ctx, "unasked", nil); !errors.Is(err, tiered.ErrNotFound) {
		t.Errorf("a key the batch loader returned unasked was cached: %v", err)
	}

	tagged := newCache(t, c, "tagged", tiered.Options[string]{Tags: func(string, string) []string { panic("tags") }})
	if err := tagged.Set(ctx, "k", "v"); !isPanic(err, "Tags") {
		t.Errorf("Set with a panicking Tags = %v, want a *PanicError", err)
	}
	if _, err := tagged.Get(ctx, "k", nil); !errors.Is(err, tiered.ErrNotFound) {
		t.Errorf("after the failed Set: %v, want nothing cached", err)
	}
	coded := newCache(t, c, "coded", tiered.Options[string]{Codec: panicCodec{}})
	if err := coded.Set(ctx, "k", "v"); !isPanic(err, "Codec") {
		t.Errorf("Set with a panicking codec = %v, want a *PanicError", err)
	}
	if v, err := coded.Get(ctx, "k", good); err != nil || v != "good" {
		t.Errorf("Get with a panicking codec = %q, %v; want the loaded value, uncached", v, err)
	}
}

type panicCodec struct{}

func (panicCodec) Marshal(string) ([]byte, error)   { panic("marshal") }
func (panicCodec) Unmarshal([]byte) (string, error) { panic("unmarshal") }

// TestBadInputContexts: a cancelled or expired context fails a call with
// its error, or the call answers correctly; it never caches a wrong value,
// and a caller giving up never takes the Redis server out of service (a
// write or invalidation abandoned halfway would: the server would need
// cleaning before it serves again) nor makes the replicas drop their L1 (a
// message not sent is a gap).
func TestBadInputContexts(t *testing.T) {
	c, _ := newRedisClient(t, tiered.Config{})
	cache := newCache(t, c, "ns", tiered.Options[string]{})
	cancelled, cancel := context.WithCancel(context.Background())
	cancel()
	expired, cancel2 := context.WithDeadline(context.Background(), time.Now().Add(-time.Second))
	defer cancel2()
	load := func(ctx context.Context, k string) (string, error) {
		if err := ctx.Err(); err != nil {
			return "", err
		}
		return "v:" + k, nil
	}
	for name, ctx := range map[string]context.Context{"cancelled": cancelled, "expired": expired} {
		ctxErr := func(err error) bool {
			return errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded)
		}
		if v, err := cache.Get(ctx, name, load); err != nil && !ctxErr(err) || err == nil && v != "v:"+name {
			t.Errorf("%s: Get = %q, %v", name, v, err)
		}
		if _, err := cache.GetMany(ctx, []string{name + "1"}, nil); err != nil && !ctxErr(err) {
			t.Errorf("%s: GetMany = %v", name, err)
		}
		for op, call := range map[string]func() error{
			"Set":               func() error { return cache.Set(ctx, name, "v") },
			"Delete":            func() error { return cache.Delete(ctx, name) },
			"InvalidateTags":    func() error { return cache.InvalidateTags(ctx, "t") },
			"InvalidatePattern": func() error { return cache.InvalidatePattern(ctx, "x*") },
			"Clear":             func() error { return cache.Clear(ctx) },
		} {
			if err := call(); err != nil && !ctxErr(err) {
				t.Errorf("%s: %s = %v, want nil or the context's error", name, op, err)
			}
		}
	}
	for _, h := range c.L2Health() {
		if !h.Serving || h.Dirty {
			t.Errorf("after the cancelled calls: server %+v, want it serving, clean", h)
		}
	}
	if s := c.BusStats(); s.PubSub.SendErrors != 0 {
		t.Errorf("%d invalidations not sent", s.PubSub.SendErrors)
	}
	// Nothing wrong was cached: each key answers its loader's value or
	// nothing, never another's.
	for _, k := range []string{"cancelled", "expired"} {
		if v, err := cache.Get(context.Background(), k, load); err != nil || v != "v:"+k {
			t.Errorf("after the calls: Get(%q) = %q, %v", k, v, err)
		}
	}
}

// TestBadInputCorruptEntries: an L2 entry with every combination of the
// envelope's flag byte, checksummed so that only the content is wrong, is
// a miss: deleted as corrupt, or, with a type fingerprint, left alone as
// another type's; the loader answers either way.
func TestBadInputCorruptEntries(t *testing.T) {
	ctx := context.Background()
	c, srv := newRedisClient(t, tiered.Config{})
	type user struct{ Name string }
	cache := newCache(t, c, "ns", tiered.Options[user]{L1: tiered.L1Options{Disabled: true}})
	load := func(context.Context, string) (user, error) { return user{"loaded"}, nil }
	castagnoli := crc32.MakeTable(crc32.Castagnoli)
	fresh := time.Now().Add(time.Hour).UnixMilli()
	for flags := range 256 {
		b := []byte{0x53, 0xA7, l2.FormatVersion, byte(flags)}
		if flags&int(l2.FlagType) != 0 {
			b = binary.LittleEndian.AppendUint64(b, 0x5eed)
		}
		b = binary.AppendUvarint(b, 7)
		b = binary.AppendVarint(b, fresh)
		b = binary.AppendVarint(b, fresh)
		b = binary.AppendUvarint(b, 0)
		b = binary.AppendUvarint(b, 0)
		if flags&int(l2.FlagTags) != 0 {
			b = append(b, 1, 1, 't')
		}
		b = append(b, "\xff not json"...)
		b = binary.LittleEndian.AppendUint32(b, crc32.Checksum(b, castagnoli))
		key := fmt.Sprintf("k%d", flags)
		srv.Do(t, "SET", "strata:ns:{"+key+"}", b)
		before := cache.Stats()
		v, err := cache.Get(ctx, key, load)
		if err != nil || v.Name != "loaded" {
			t.Fatalf("flags %#x: Get = %+v, %v; want the loader's value", flags, v, err)
		}
		after := cache.Stats()
		corrupt, foreign := after.CorruptEntries-before.CorruptEntries, after.TypeMismatches-before.TypeMismatches
		// Known flags with a type and no payload rule broken: another
		// type's entry. Anything else here is corrupt.
		wantForeign := flags&^int(l2.FlagTags|l2.FlagType) == 0 && flags&int(l2.FlagType) != 0
		switch {
		case wantForeign && (foreign != 1 || corrupt != 0):
			t.Errorf("flags %#x: %d mismatches, %d corrupt; want it taken for another type's", flags, foreign, corrupt)
		case !wantForeign && (corrupt != 1 || foreign != 0):
			t.Errorf("flags %#x: %d corrupt, %d mismatches; want it deleted as corrupt", flags, corrupt, foreign)
		}
		raw, err := srv.Client(t).Get(ctx, "strata:ns:{"+key+"}").Bytes()
		switch {
		case wantForeign && string(raw) != string(b):
			t.Errorf("flags %#x: another type's entry was not left alone", flags)
		case !wantForeign && errors.Is(err, redis.Nil):
			// deleted; the fill raced it or not: either way not the corrupt bytes
		case !wantForeign && string(raw) == string(b):
			t.Errorf("flags %#x: the corrupt entry is still in L2", flags)
		}
	}
}

// TestBadInputMessages: invalidations for a namespace nobody here caches,
// of a kind or a format this version does not know, or without the MAC the
// client requires, change nothing they should not, are counted, and never
// stop the bus.
func TestBadInputMessages(t *testing.T) {
	ctx := context.Background()
	key := []byte("0123456789abcdef0123456789abcdef")
	c, srv := newRedisClient(t, tiered.Config{InvalidationKey: key})
	cache := newCache(t, c, "ns", tiered.Options[string]{TTL: time.Hour})
	if err := cache.Set(ctx, "k", "v"); err != nil {
		t.Fatal(err)
	}
	if !eventually(10*time.Second, func() bool { return c.Health().Trusted }) {
		t.Fatal("no channel vouches for L1")
	}
	send := func(b []byte) { srv.Do(t, "PUBLISH", "strata:invalidations", b) }
	seq := uint64(0)
	msg := func(kind coherence.Kind, ns string) *coherence.Message {
		seq++
		return &coherence.Message{Origin: "stranger", Epoch: 1, Seq: seq, Kind: kind, Namespace: ns, Items: []string{"k"},
			SentAt: time.Now().UnixNano()}
	}
	dropped := func() uint64 { return c.BusStats().PubSub.Dropped }

	send(coherence.Encode(msg(coherence.KindKeys, "elsewhere"), key)) // a namespace not cached here
	unsigned := coherence.Encode(msg(coherence.KindKeys, "ns"), nil)
	send(unsigned)
	future := coherence.Encode(msg(coherence.KindKeys, "ns"), key)
	future[2] = 99 // a format version from the future
	send(future)
	send([]byte("garbage"))
	if !eventually(10*time.Second, func() bool { return dropped() >= 3 }) {
		t.Fatalf("dropped %d messages, want the unsigned, the future and the garbage one", dropped())
	}
	if v, info, err := cache.GetWithInfo(ctx, "k", nil); err != nil || v != "v" || info.Tier != tiered.TierL1 {
		t.Fatalf("after the bad messages: Get = %q from %v, %v; want L1's copy", v, info.Tier, err)
	}
	// A kind this version does not know is dropped as malformed; its
	// sequence number, never applied, is a gap the next message shows (and
	// a gap drops L1). The bus goes on.
	send(coherence.Encode(msg(coherence.Kind(77), "ns"), key))
	if !eventually(10*time.Second, func() bool { return dropped() >= 4 }) {
		t.Fatalf("dropped %d messages, want the unknown kind's too", dropped())
	}
	send(coherence.Encode(msg(coherence.KindKeys, "ns"), key))
	if !eventually(10*time.Second, func() bool {
		_, info, err := cache.GetWithInfo(ctx, "k", nil)
		return err == nil && info.Tier == tiered.TierL2 && c.BusStats().PubSub.Received.Of(coherence.KindKeys) >= 2
	}) {
		t.Fatal("the bus stopped applying messages after the bad ones")
	}
}

// TestBadInputConfig: invalid Config and Options values are errors from
// NewClient and NewCache, naming the field.
func TestBadInputConfig(t *testing.T) {
	for name, cfg := range map[string]tiered.Config{
		"LogInterval":          {LogInterval: -time.Second},
		"Audit.SampleRate":     {Audit: tiered.AuditConfig{SampleRate: 2}},
		"Addrs":                {Redis: l2.Config{Addrs: []string{"127.0.0.1:1"}, ClusterAddrs: []string{"127.0.0.1:2"}}},
		"Timeout":              {Redis: l2.Config{Addrs: []string{"127.0.0.1:1"}, Timeout: -time.Second}},
		"ClusterAddrs syntax":  {Redis: l2.Config{ClusterAddrs: []string{"127.0.0.1"}}},
		"Audit.Window":         {Audit: tiered.AuditConfig{SampleRate: 0.5, Window: -1}},
		"Audit.MaxRate":        {Audit: tiered.AuditConfig{SampleRate: 0.5, MaxRate: -1}},
		"Redis address syntax": {Redis: l2.Config{Addrs: []string{"no-port"}}},
	} {
		c, err := tiered.NewClient(context.Background(), cfg)
		if err == nil {
			_ = c.Close()
			t.Errorf("%s: NewClient accepted %+v", name, cfg)
		}
	}
	c := newClient(t, tiered.Config{})
	for name, opts := range map[string]tiered.Options[string]{
		"TTL":            {TTL: -time.Second},
		"TTL too long":   {TTL: tiered.MaxEntryTTL + time.Second},
		"Jitter":         {Jitter: 1.5},
		"MaxValueSize":   {MaxValueSize: -1},
		"L1.MaxCost":     {L1: tiered.L1Options{MaxCost: -1}},
		"Writer and WB":  {Writer: func(context.Context, string, string) error { return nil }, WriteBehind: &tiered.WriteBehind[string]{}},
		"WB without L2":  {WriteBehind: &tiered.WriteBehind[string]{Flush: func(context.Context, []tiered.Write[string]) error { return nil }}},
		"WB no Flush":    {WriteBehind: &tiered.WriteBehind[string]{}},
		"LeaseWait":      {LeaseWait: -time.Second},
		"RefreshTimeout": {RefreshTimeout: -time.Second},
	} {
		if _, err := tiered.NewCache(c, "ns", opts); err == nil {
			t.Errorf("%s: NewCache accepted it", name)
		}
	}
}

// TestBadInputAfterClose: every call after Close fails with ErrClosed (or
// does nothing, for the read-only ones), and Close again is nil.
func TestBadInputAfterClose(t *testing.T) {
	ctx := context.Background()
	c, _ := newRedisClient(t, tiered.Config{})
	cache := newCache(t, c, "ns", tiered.Options[string]{})
	if err := cache.Set(ctx, "k", "v"); err != nil {
		t.Fatal(err)
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	for name, call := range map[string]func() error{
		"Get":               func() error { _, err := cache.Get(ctx, "k", nil); return err },
		"GetMany":           func() error { _, err := cache.GetMany(ctx, []string{"k"}, nil); return err },
		"Set":               func() error { return cache.Set(ctx, "k", "v") },
		"Delete":            func() error { return cache.Delete(ctx, "k") },
		"InvalidateTags":    func() error { return cache.InvalidateTags(ctx, "t") },
		"InvalidatePattern": func() error { return cache.InvalidatePattern(ctx, "k*") },
		"Clear":             func() error { return cache.Clear(ctx) },
		"Client.Invalidate": func() error { return c.Invalidate(ctx, "ns", "k") },
		"NewCache":          func() error { _, err := tiered.NewCache(c, "other", tiered.Options[string]{}); return err },
	} {
		if err := call(); !errors.Is(err, tiered.ErrClosed) {
			t.Errorf("%s after Close = %v, want ErrClosed", name, err)
		}
	}
	_ = c.Stats()
	_ = c.Health()
	if err := c.Close(); err != nil {
		t.Errorf("second Close = %v", err)
	}
}
