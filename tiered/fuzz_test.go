package tiered_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"maps"
	"math"
	"reflect"
	"slices"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/strata-cache/strata/internal/fuzzcorpus"
	"github.com/strata-cache/strata/tiered"
)

// FuzzValidation gives the entry points arbitrary namespaces, keys, tags and
// patterns (pads lengthen them to reach the limits): each is accepted or
// rejected, with ErrInvalidNamespace or ErrInvalidKey, exactly as the
// documented rules say, never panics, and what is accepted works: a Set is
// read back, a Delete makes the next Get load. tags holds the tags
// separated by 0xFF bytes ("" is none).
func FuzzValidation(f *testing.F) {
	f.Add("users", uint16(0), "user:1", uint16(0), "team:1\xffteam:2")
	f.Add("", uint16(0), "", uint16(0), "")
	fuzzcorpus.Write(f, []fuzzcorpus.Seed{
		{Name: "longest-namespace", Args: []any{"n", uint16(tiered.MaxNamespaceLength - 1), "k", uint16(0), ""}},
		{Name: "namespace-too-long", Args: []any{"n", uint16(tiered.MaxNamespaceLength), "k", uint16(0), ""}},
		{Name: "namespace-hash", Args: []any{"users#1", uint16(0), "k", uint16(0), ""}},
		{Name: "namespace-braces", Args: []any{"{users}", uint16(0), "k", uint16(0), ""}},
		{Name: "namespace-invalid-utf8", Args: []any{"\xff\xfe", uint16(0), "k", uint16(0), ""}},
		{Name: "longest-key", Args: []any{"ns", uint16(0), "k", uint16(tiered.MaxKeyLength - 1), ""}},
		{Name: "key-too-long", Args: []any{"ns", uint16(0), "k", uint16(tiered.MaxKeyLength), ""}},
		{Name: "key-braces", Args: []any{"ns", uint16(0), "}{a}~", uint16(0), "}"}},
		{Name: "key-invalid-utf8", Args: []any{"ns", uint16(0), "\xc3\x28\x00", uint16(0), "\xa0"}},
		{Name: "empty-tag", Args: []any{"ns", uint16(0), "k", uint16(0), "a\xff\xffb"}},
		{Name: "duplicate-tags", Args: []any{"ns", uint16(0), "k", uint16(0), strings.Repeat("t\xff", 300) + "t"}},
		{Name: "pattern", Args: []any{"ns", uint16(0), "user:[a-z]*\\?", uint16(0), ""}},
	})
	client := newClient(f, tiered.Config{})
	// A small L1: InvalidatePattern clears it whole, at a cost in
	// proportion to its size.
	shared, err := tiered.NewCache[string](client, "fuzz", tiered.Options[string]{L1: tiered.L1Options{MaxCost: 1 << 16}})
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, ns string, nsPad uint16, key string, keyPad uint16, tags string) {
		ns += strings.Repeat("n", int(nsPad)%(2*tiered.MaxNamespaceLength))
		key += strings.Repeat("k", int(keyPad)%(2*tiered.MaxKeyLength))
		var tagList []string
		if tags != "" {
			tagList = strings.Split(tags, "\xff")
		}
		checkNamespace(t, ns)
		checkKey(t, shared, key, tagList)
	})
}

// checkNamespace asserts that NewCache accepts ns exactly when it is not
// empty, at most MaxNamespaceLength bytes and free of '{', '}' and '#'.
func checkNamespace(t *testing.T, ns string) {
	t.Helper()
	valid := ns != "" && len(ns) <= tiered.MaxNamespaceLength && !strings.ContainsAny(ns, "{}#")
	client, err := tiered.NewClient(context.Background(), tiered.Config{Logger: quietLogger})
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	cache, err := tiered.NewCache[string](client, ns, tiered.Options[string]{L1: tiered.L1Options{Disabled: true}})
	switch {
	case valid && err != nil:
		t.Fatalf("NewCache(%q): %v", ns, err)
	case !valid && !errors.Is(err, tiered.ErrInvalidNamespace):
		t.Fatalf("NewCache(%q) = %v; want ErrInvalidNamespace", ns, err)
	case valid && cache.Namespace() != ns:
		t.Fatalf("NewCache(%q).Namespace() = %q", ns, cache.Namespace())
	}
}

// checkKey asserts that c's entry points accept key exactly when it is not
// empty and at most MaxKeyLength bytes, and tags when (duplicates aside,
// for Set) there are at most l2.MaxTags of them, none empty or longer than
// l2.MaxTagLength; and that what they accept takes effect.
func checkKey(t *testing.T, c *tiered.Cache[string], key string, tags []string) {
	t.Helper()
	ctx := context.Background()
	keyOK := key != "" && len(key) <= tiered.MaxKeyLength
	distinct := slices.Compact(slices.Sorted(slices.Values(tags)))
	setOK := keyOK && tagsValid(distinct)
	wantInvalid := func(what string, ok bool, err error) {
		t.Helper()
		if ok && err != nil || !ok && !errors.Is(err, tiered.ErrInvalidKey) {
			t.Fatalf("%s (key %q, %d tags): %v; want ErrInvalidKey: %v", what, key, len(tags), err, !ok)
		}
	}
	wantInvalid("Set", setOK, c.Set(ctx, key, "set:"+key, tiered.WithTags(tags...)))
	loads := 0
	load := func(_ context.Context, k string) (string, error) {
		if loads++; k != key {
			t.Fatalf("loader called with %q for %q", k, key)
		}
		return "loaded:" + k, nil
	}
	v, err := c.Get(ctx, key, load)
	wantInvalid("Get", keyOK, err)
	if setOK && (v != "set:"+key || loads != 0) {
		t.Fatalf("Get(%q) after Set = %q (%d loads)", key, v, loads)
	}
	wantInvalid("Delete", keyOK, c.Delete(ctx, key))
	loads = 0
	v, err = c.Get(ctx, key, load)
	if keyOK && (err != nil || v != "loaded:"+key || loads != 1) || !keyOK && loads != 0 {
		t.Fatalf("Get(%q) after Delete = %q, %v (%d loads)", key, v, err, loads)
	}
	wantInvalid("InvalidateTags", tagsValid(tags), c.InvalidateTags(ctx, tags...))
	wantInvalid("InvalidatePattern", keyOK, c.InvalidatePattern(ctx, key))
}

func tagsValid(tags []string) bool {
	return len(tags) <= 256 && !slices.ContainsFunc(tags, func(t string) bool { return t == "" || len(t) > 1024 })
}

// record exercises the JSON codec's kinds of value.
type record struct {
	S   string
	B   []byte
	I   int64
	U   uint64
	F   float64
	Ok  bool
	L   []string
	M   map[string]int64
	P   *string
	Any any
}

// FuzzCodecs checks the default codecs: the raw ones ([]byte, string) give
// back exactly the bytes given, in a copy; JSON round trips a value exactly
// (invalid UTF-8 becomes U+FFFD per bad byte, as encoding/json documents;
// NaN and infinities are an error), and a value it decodes from arbitrary
// bytes round trips exactly.
func FuzzCodecs(f *testing.F) {
	f.Add("ada", []byte(`{"S":"x","I":1}`), int64(-7), uint64(1<<63), 1.5, true)
	f.Add("", []byte{}, int64(0), uint64(0), 0.0, false)
	fuzzcorpus.Write(f, []fuzzcorpus.Seed{
		{Name: "invalid-utf8", Args: []any{"a\xffb\xc3\x28", []byte("\xff\xfe"), int64(math.MinInt64), uint64(math.MaxUint64), -0.0, true}},
		{Name: "nan", Args: []any{"k", []byte(`{"F":1e400}`), int64(1), uint64(1), math.NaN(), false}},
		{Name: "infinity", Args: []any{"k", []byte(`null`), int64(1), uint64(1), math.Inf(-1), false}},
		{Name: "smallest-float", Args: []any{"<>&\u2028", []byte(`{"Any":[1,"x",{"y":null}],"M":{"a":1}}`), int64(1), uint64(1), math.SmallestNonzeroFloat64, false}},
		{Name: "largest-float", Args: []any{"\"\\", []byte(`{"B":"AAE=","L":["\ud800"],"P":"\u00e9"}`), int64(1), uint64(1), math.MaxFloat64, false}},
		{Name: "duplicate-fields", Args: []any{"a", []byte(`{"S":"1","S":"2","s":"3"}`), int64(1), uint64(1), 1e-7, false}},
	})
	f.Fuzz(func(t *testing.T, s string, b []byte, i int64, u uint64, fl float64, ok bool) {
		checkRaw(t, s, b)
		m := map[string]int64{"a": i, s: int64(u)}
		v := record{S: s, B: b, I: i, U: u, F: fl, Ok: ok, L: []string{s, "x"}, M: m, P: &s, Any: []any{s, fl, ok, nil}}
		checkJSON(t, v)
		codec := tiered.DefaultCodec[record]()
		if got, err := codec.Unmarshal(b); err == nil {
			again, err := codec.Marshal(got)
			if err != nil {
				t.Fatalf("Unmarshal(%q) = %+v, which does not marshal: %v", b, got, err)
			}
			if back, err := codec.Unmarshal(again); err != nil || !reflect.DeepEqual(back, got) {
				t.Fatalf("Unmarshal(%q) = %+v; marshalled and unmarshalled %+v, %v", b, got, back, err)
			}
		}
	})
}

// checkRaw asserts that the raw codecs give back exactly the bytes they
// were given, and that an unmarshalled []byte is a copy.
func checkRaw(t *testing.T, s string, b []byte) {
	t.Helper()
	bytesCodec, stringCodec := tiered.DefaultCodec[[]byte](), tiered.DefaultCodec[string]()
	if enc, err := bytesCodec.Marshal(b); err != nil || !bytes.Equal(enc, b) {
		t.Fatalf("[]byte Marshal(%q) = %q, %v", b, enc, err)
	}
	data := bytes.Clone(b)
	got, err := bytesCodec.Unmarshal(data)
	if err != nil || !bytes.Equal(got, b) {
		t.Fatalf("[]byte Unmarshal(%q) = %q, %v", b, got, err)
	}
	if len(data) > 0 {
		data[0] ^= 0xFF
		if got[0] != b[0] {
			t.Fatalf("[]byte Unmarshal(%q) kept the input", b)
		}
	}
	if enc, err := stringCodec.Marshal(s); err != nil || string(enc) != s {
		t.Fatalf("string Marshal(%q) = %q, %v", s, enc, err)
	}
	if got, err := stringCodec.Unmarshal([]byte(s)); err != nil || got != s {
		t.Fatalf("string Unmarshal(%q) = %q, %v", s, got, err)
	}
}

// checkJSON asserts that the JSON codec round trips v, as far as JSON can
// hold it.
func checkJSON(t *testing.T, v record) {
	t.Helper()
	codec := tiered.DefaultCodec[record]()
	if _, isJSON := codec.(tiered.JSONCodec[record]); !isJSON {
		t.Fatalf("default codec of a struct is %T, want JSONCodec", codec)
	}
	enc, err := codec.Marshal(v)
	if math.IsNaN(v.F) || math.IsInf(v.F, 0) {
		var unsupported *json.UnsupportedValueError
		if !errors.As(err, &unsupported) {
			t.Fatalf("Marshal with F = %v: %v; want an UnsupportedValueError", v.F, err)
		}
		return
	}
	if err != nil {
		t.Fatalf("Marshal(%+v): %v", v, err)
	}
	got, err := codec.Unmarshal(enc)
	if want := jsonForm(v); err != nil || !reflect.DeepEqual(got, want) {
		t.Fatalf("Unmarshal(Marshal(%+v)) = %+v, %v\nwant %+v", v, got, err, want)
	}
}

// jsonForm is what JSON keeps of v: strings with each byte of invalid
// UTF-8 replaced by U+FFFD, map keys so replaced (the last of keys that
// become one wins, in sorted order, the order Marshal writes them), and
// Any's number a float64.
func jsonForm(v record) record {
	s := validUTF8(v.S)
	m := map[string]int64{}
	for _, k := range slices.Sorted(maps.Keys(v.M)) {
		m[validUTF8(k)] = v.M[k]
	}
	list := v.Any.([]any)
	return record{S: s, B: v.B, I: v.I, U: v.U, F: v.F, Ok: v.Ok, L: []string{s, "x"}, M: m, P: &s,
		Any: []any{validUTF8(list[0].(string)), list[1], list[2], list[3]}}
}

// validUTF8 replaces each byte of invalid UTF-8 in s with U+FFFD, as
// encoding/json's Marshal does.
func validUTF8(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); {
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			b.WriteRune(utf8.RuneError)
		} else {
			b.WriteString(s[i : i+size])
		}
		i += size
	}
	return b.String()
}
