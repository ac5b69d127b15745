package tiered

// L1WithKeyToHash returns o with ristretto's key hash replaced, so tests can
// force hash collisions.
func L1WithKeyToHash(o L1Options, f func(string) (uint64, uint64)) L1Options {
	o.keyToHash = f
	return o
}
