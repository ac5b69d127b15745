package benchmarks

import (
	"math/rand/v2"
	"runtime/debug"
	"strconv"
	"time"
)

// User is the decoded value every contender caches, as a pointer: what a
// service keeps after decoding a row. Peers that keep bytes decode it on
// every hit; Strata's L1 and the raw local caches hand out the pointer.
type User struct {
	ID    int64   `json:"id" msgpack:"id"`
	Name  string  `json:"name" msgpack:"name"`
	Email string  `json:"email" msgpack:"email"`
	Score float64 `json:"score" msgpack:"score"`
}

// The shared workload: every contender gets the same keys, values, TTL
// and byte capacity.
const (
	numKeys = 1000
	// capacityBytes is every contender's local byte budget: far more than
	// the 1,000 warmed values, so the local-hit benchmarks measure hits.
	capacityBytes = 32 << 20
	ttl           = time.Hour
	// zipfS and zipfV shape the Zipf-distributed access (s > 1, v ≥ 1).
	zipfS = 1.1
	zipfV = 1
)

// key returns the i-th key of the workload.
func key(i int) string { return "user:" + strconv.Itoa(i) }

// newUser returns the value stored under key(i).
func newUser(i int) *User {
	s := strconv.Itoa(i)
	return &User{ID: int64(i), Name: "user " + s, Email: "user" + s + "@example.com", Score: float64(i) / 7}
}

// keyList returns the workload's keys, in order.
func keyList() []string {
	keys := make([]string, numKeys)
	for i := range keys {
		keys[i] = key(i)
	}
	return keys
}

// accessOrder returns n indexes into keyList: round robin for "uniform",
// Zipf-distributed (a few keys take most reads) for "zipf". Benchmarks
// precompute it so drawing the next key costs the same for everyone.
func accessOrder(dist string, n int, seed uint64) []int {
	out := make([]int, n)
	switch dist {
	case "zipf":
		z := rand.NewZipf(rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15)), zipfS, zipfV, numKeys-1)
		for i := range out {
			out[i] = int(z.Uint64())
		}
	default:
		for i := range out {
			out[i] = i % numKeys
		}
	}
	return out
}

// settle finishes the garbage collection and the return of memory to the
// OS that earlier benchmarks left behind, before a contender is timed: the
// whole report runs in one process, and right after BenchmarkScaling freed
// its 30 replicas a report's LocalHit contenders timed first ran slower
// run after run (raw otter's three runs: 112, 92 and 78 ns), as if the
// runtime's leftover work shared their cores. Whether settling steadies the
// figures has not been measured over enough full reports to tell.
func settle() { debug.FreeOSMemory() }
