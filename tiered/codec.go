package tiered

import (
	"encoding/json"
	"hash/fnv"
	"reflect"
)

// Codec turns values into bytes for L2 and back. Implementations must be safe
// for concurrent use. Marshal may return a slice it does not retain; Unmarshal
// must not retain data after it returns.
type Codec[V any] interface {
	Marshal(v V) ([]byte, error)
	Unmarshal(data []byte) (V, error)
}

// JSONCodec encodes values with encoding/json. It is the default codec for
// every type but []byte and string.
//
// NOTE: encoding/json writes each byte of invalid UTF-8 in a string (or a
// map key) as U+FFFD, so such a value reads back changed, and two map keys
// may become one (FuzzCodecs checks exactly this). Keep binary data in
// []byte fields, or give the cache a Codec of its own.
type JSONCodec[V any] struct{}

// Marshal implements Codec.
func (JSONCodec[V]) Marshal(v V) ([]byte, error) { return json.Marshal(v) }

// Unmarshal implements Codec.
func (JSONCodec[V]) Unmarshal(data []byte) (V, error) {
	var v V
	err := json.Unmarshal(data, &v)
	return v, err
}

// rawCodec passes []byte and string values through unencoded.
type rawCodec[V any] struct{}

func (rawCodec[V]) Marshal(v V) ([]byte, error) {
	switch x := any(v).(type) {
	case []byte:
		return x, nil
	default:
		return []byte(any(v).(string)), nil
	}
}

func (rawCodec[V]) Unmarshal(data []byte) (V, error) {
	var v V
	switch p := any(&v).(type) {
	case *[]byte:
		// data may be a view of a go-redis reply string (StringCmd.Bytes
		// does not copy): the value the user may write into is a copy.
		*p = append([]byte(nil), data...)
	case *string:
		*p = string(data)
	}
	return v, nil
}

// defaultCodec picks the codec for V when the user gives none.
func defaultCodec[V any]() Codec[V] {
	var zero V
	switch any(zero).(type) {
	case []byte, string:
		return rawCodec[V]{}
	}
	return JSONCodec[V]{}
}

// marshal runs codec.Marshal, turning a panic into a *PanicError.
func marshal[V any](codec Codec[V], v V) (b []byte, err error) {
	defer recoverCallback("Codec", &err)
	return codec.Marshal(v)
}

// unmarshal runs codec.Unmarshal, turning a panic into a *PanicError.
func unmarshal[V any](codec Codec[V], data []byte) (v V, err error) {
	defer recoverCallback("Codec", &err)
	return codec.Unmarshal(data)
}

// typeFingerprint identifies the encoding of a cache's values in the L2
// envelope (l2.Envelope.Type): schema if set, else the names of V and of
// the codec's type. A reader that finds another fingerprint leaves the
// entry alone and loads around it (see Options.Schema), instead of
// deleting it as corrupt. It is never 0, which means "none".
func typeFingerprint[V any](codec Codec[V], schema string) uint64 {
	h := fnv.New64a()
	if schema != "" {
		h.Write([]byte("schema\x00" + schema))
	} else {
		h.Write([]byte("type\x00" + reflect.TypeFor[V]().String() + "\x00" + reflect.TypeOf(codec).String()))
	}
	return max(h.Sum64(), 1)
}
