package rendezvous

import (
	"fmt"
	"math"
	"slices"
	"testing"
)

const keys = 100_000

func names(n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprint("shard", i)
	}
	return out
}

// owners maps each of the keys to the name h gives it.
func owners(h *Hash, names []string) []string {
	out := make([]string, keys)
	for i := range out {
		out[i] = names[h.Get(fmt.Sprint("user:", i))]
	}
	return out
}

// Keys spread evenly, and a change of names moves only the keys it must: the
// ones a new name wins, or a removed name's, evenly onto the others.
func TestSpreadAndMovement(t *testing.T) {
	for _, n := range []int{3, 5} {
		count := map[string]int{}
		for _, o := range owners(New(names(n)), names(n)) {
			count[o]++
		}
		for name, c := range count {
			if share := float64(c) / keys; math.Abs(share-1/float64(n)) > 0.05/float64(n) {
				t.Errorf("%d names: %s gets %.4f of the keys, want %.4f ± 5%%", n, name, share, 1/float64(n))
			}
		}
	}
	four := names(4)
	withShard1 := owners(New(four), four)
	added := owners(New(four[:3]), four[:3])
	removed := slices.Delete(slices.Clone(four), 1, 2)
	without := owners(New(removed), removed)
	for _, tc := range []struct {
		name          string
		before, after []string
		want          float64
		from, to      string // "" for any
	}{
		{"adding shard3", added, withShard1, 0.25, "", "shard3"},
		{"removing shard1", withShard1, without, 0.25, "shard1", ""},
	} {
		moved, onto := 0, map[string]int{}
		for i := range tc.before {
			if tc.before[i] == tc.after[i] {
				continue
			}
			moved++
			onto[tc.after[i]]++
			if tc.to != "" && tc.after[i] != tc.to || tc.from != "" && tc.before[i] != tc.from {
				t.Fatalf("%s: key %d moved %s → %s", tc.name, i, tc.before[i], tc.after[i])
			}
		}
		if frac := float64(moved) / keys; math.Abs(frac-tc.want) > 0.05*tc.want {
			t.Errorf("%s: moved %.4f of the keys, want %.4f ± 5%%", tc.name, frac, tc.want)
		}
		for name, c := range onto {
			if tc.to == "" && math.Abs(float64(c)/float64(moved)-1/3.0) > 0.05/3 {
				t.Errorf("%s: %s took %d of the %d moved keys, want a third", tc.name, name, c, moved)
			}
		}
	}
}

func TestOrderAndEmpty(t *testing.T) {
	fwd := New([]string{"a", "b", "c"})
	rev := New([]string{"c", "b", "a"})
	for i := range 1000 {
		k := fmt.Sprint(i)
		if got, want := 2-rev.Get(k), fwd.Get(k); got != want {
			t.Fatalf("key %s: name %d in one order, %d in the other", k, want, got)
		}
	}
	if got := New(nil).Get("k"); got != -1 {
		t.Errorf("Get with no names = %d, want -1", got)
	}
	if got := (&Hash{}).Get("k"); got != -1 {
		t.Errorf("Get on the zero Hash = %d, want -1", got)
	}
}
