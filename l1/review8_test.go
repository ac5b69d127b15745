package l1_test

import (
	"math/rand/v2"
	"strconv"
	"sync"
	"testing"

	"github.com/strata-cache/strata/l1"
)

// TestReview8EntriesMatchContents shows whether Stats().Entries equals the
// number of keys Get finds after random concurrent Sets (overwrites
// included), SetIfs, Deletes of present and absent keys, InvalidateTags and
// Clears, with a cost bound small enough that the policy evicts and rejects.
func TestReview8EntriesMatchContents(t *testing.T) {
	forEachEngine(t, func(t *testing.T, engine l1.Engine) {
		for _, maxCost := range []int64{1 << 20, 30 * (128 + 16)} {
			t.Run(strconv.FormatInt(maxCost, 10), func(t *testing.T) {
				c := newCache(t, l1.Config{Engine: engine, MaxCost: maxCost})
				const keys = 80
				var wg sync.WaitGroup
				for w := range 4 {
					wg.Add(1)
					go func() {
						defer wg.Done()
						r := rand.New(rand.NewPCG(uint64(w), 7))
						for range 3000 {
							k := "k" + strconv.Itoa(r.IntN(keys))
							n := now()
							switch p := r.IntN(100); {
							case p < 45:
								e := entry(k, "v"+strconv.Itoa(r.IntN(9)), n)
								e.Tags = []string{"t" + strconv.Itoa(r.IntN(4))}
								c.Set(e, n)
							case p < 70:
								e := entry(k, "w", n)
								c.SetIf(e, c.Begin(k), n)
							case p < 85:
								c.Delete(k, "absent"+strconv.Itoa(r.IntN(5)))
							case p < 90:
								c.InvalidateTags("t" + strconv.Itoa(r.IntN(4)))
							case p < 91:
								c.Clear()
							default:
								c.Get(k)
							}
						}
					}()
				}
				wg.Wait()
				s := c.Stats() // first: it settles otter's pending evictions
				found := 0
				for i := range keys {
					if _, ok := c.Get("k" + strconv.Itoa(i)); ok {
						found++
					}
				}
				if s.Entries != int64(found) {
					t.Errorf("Stats %+v: Entries %d, but Get finds %d keys", s, s.Entries, found)
				}
				c.Close()
				if s := c.Stats(); s.Entries != 0 {
					t.Errorf("after Close: Entries %d, want 0", s.Entries)
				}
			})
		}
	})
}
