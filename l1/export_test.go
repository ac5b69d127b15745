package l1

// WithKeyToHash returns cfg with ristretto's key hash replaced, so tests can
// force hash collisions.
func WithKeyToHash(cfg Config, f func(key string) (uint64, uint64)) Config {
	cfg.keyToHash = f
	return cfg
}

// KeysWithTag returns the keys of the entries tagged tag.
func (c *Cache[V]) KeysWithTag(tag string) []string { return c.tags.keys(tag) }

// Expire runs the sweeper's pass as of now (Unix ns, wall clock).
func (c *Cache[V]) Expire(now int64) { c.expire(now) }

// Filed returns how many entries wait for the sweeper.
func (c *Cache[V]) Filed() int { return c.expiry.len() }

// OtherStripe returns a name, made from prefix, that g maps onto another
// stripe than name: stripes are shared by chance (1 in guardStripes), and
// a write on a shared stripe refuses a fill, which a test of an unrelated
// write must not see.
func OtherStripe(g *Guard, name, prefix string) string {
	for i := 0; ; i++ {
		other := prefix + string(rune('a'+i%26)) + string(rune('0'+i/26%10))
		if g.stripe(other) != g.stripe(name) {
			return other
		}
	}
}

// HeldEntries returns how many entries the engine's table holds now,
// without applying what its maintenance has pending; -1 for ristretto.
func (c *Cache[V]) HeldEntries() int {
	if s, ok := c.st.(*otterStore[V]); ok {
		return s.oc.EstimatedSize()
	}
	return -1
}

// EntryCost is the cost of an entry of key with a value of size bytes.
func EntryCost(key string, size int) int64 { return entryCost(key, size) }
