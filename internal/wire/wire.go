// Package wire reads and writes the varint fields of Strata's binary formats
// (the L2 entry envelope and the invalidation message) without panicking on
// any input.
package wire

import "encoding/binary"

// Reader consumes fields from B and remembers the first failure in Bad; after
// one, every read returns a zero value.
type Reader struct {
	B   []byte
	Bad bool
}

// Uvarint reads an unsigned varint.
func (r *Reader) Uvarint() uint64 {
	v, n := binary.Uvarint(r.B)
	if n <= 0 {
		r.Bad = true
		return 0
	}
	r.B = r.B[n:]
	return v
}

// Varint reads a signed varint.
func (r *Reader) Varint() int64 {
	v, n := binary.Varint(r.B)
	if n <= 0 {
		r.Bad = true
		return 0
	}
	r.B = r.B[n:]
	return v
}

// String reads a length-prefixed string of at most limit bytes.
func (r *Reader) String(limit int) string {
	n := r.Uvarint()
	if r.Bad || n > uint64(limit) || n > uint64(len(r.B)) {
		r.Bad = true
		return ""
	}
	s := string(r.B[:n])
	r.B = r.B[n:]
	return s
}

// AppendString appends s with its length prefix, as String reads it.
func AppendString(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}
