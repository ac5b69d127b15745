// Package rendezvous is highest-random-weight hashing over a fixed list of names.
//
// A key goes to the name whose hash, mixed with the key's, is largest, so
// removing a name moves only that name's keys, spread evenly over the others,
// and adding one moves onto it only the keys it now wins.
package rendezvous

import "github.com/cespare/xxhash/v2"

// Hash picks one of a fixed list of names for each key. The zero Hash has no
// names. It is safe for concurrent use: nothing changes it after New.
type Hash struct {
	hashes []uint64
}

// New returns a Hash over names. Which name a key gets depends on the names,
// not their order.
func New(names []string) *Hash {
	h := &Hash{hashes: make([]uint64, len(names))}
	for i, n := range names {
		h.hashes[i] = xxhash.Sum64String(n)
	}
	return h
}

// Get returns the index in New's names of key's name, or -1 when there are
// no names.
func (h *Hash) Get(key string) int {
	kh := xxhash.Sum64String(key)
	best, at := uint64(0), -1
	for i, nh := range h.hashes {
		if s := mix64(kh ^ nh); at < 0 || s > best {
			best, at = s, i
		}
	}
	return at
}

// mix64 is xorshift-multiply, the mixer of dgryski/go-rendezvous: xxhash
// values of similar names XORed with one key differ in few bits, and the
// largest of them must not follow those bits.
func mix64(x uint64) uint64 {
	x ^= x >> 12
	x ^= x << 25
	x ^= x >> 27
	return x * 2685821657736338717
}
