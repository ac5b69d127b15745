package l1_test

import (
	"strconv"
	"testing"
	"time"

	"github.com/dgraph-io/ristretto/v2/z"

	"github.com/strata-cache/strata/l1"
)

// BenchmarkGetKeyHash compares a hit under L1's key hash (one 64-bit hash)
// with one under ristretto's default (a second, xxhash, for the conflict
// check that Cache's key comparison makes redundant), in one run.
func BenchmarkGetKeyHash(b *testing.B) {
	for _, tc := range []struct {
		name string
		cfg  l1.Config
	}{
		{"l1", l1.Config{MaxTTL: time.Hour}},
		{"ristretto-default", l1.WithKeyToHash(l1.Config{MaxTTL: time.Hour}, z.KeyToHash[string])},
	} {
		b.Run(tc.name, func(b *testing.B) {
			c := newCache(b, tc.cfg)
			keys := make([]string, 1000)
			start := now()
			for i := range keys {
				keys[i] = "user:" + strconv.Itoa(i)
				c.Set(entry(keys[i], "v", start), start)
			}
			b.ReportAllocs()
			for i := 0; b.Loop(); i++ {
				if _, ok := c.Get(keys[i%len(keys)]); !ok {
					b.Fatalf("%s missed", keys[i%len(keys)])
				}
			}
		})
	}
}
