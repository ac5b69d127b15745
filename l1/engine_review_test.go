package l1

// Regression tests from the adversarial review of two engine changes: the
// otter engine running a Set's maintenance before the Set returns, and
// ristretto's key hash without a conflict hash (keyHash).

import (
	"math/rand/v2"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// collidingKeyHash is keyHash (L1's default since 6f2f9e1) for every key,
// except that the keys in collide share one 64-bit hash: what two real keys
// whose z.MemHashString collide look like to ristretto. The conflict hash
// is keyHash's, 0, for all of them.
func collidingKeyHash(collide ...string) func(string) (uint64, uint64) {
	return func(k string) (uint64, uint64) {
		if slices.Contains(collide, k) {
			return 0x5eed, 0
		}
		return keyHash(k)
	}
}

func reviewEntry(k, v string, n int64, tags ...string) *Entry[string] {
	return &Entry[string]{Key: k, Value: v, FreshUntil: n + int64(time.Hour), StaleUntil: n + int64(time.Hour), Tags: tags, Size: len(v)}
}

// TestContainsOnCollidingKey: with keyHash's conflict 0, ristretto cannot
// tell apart keys whose 64-bit hashes collide, so Contains (ristretto's
// GetTTL) may answer for a colliding key, as documented; Get, which
// compares keys, misses it, and the stored key keeps its entry.
func TestContainsOnCollidingKey(t *testing.T) {
	c, err := New[string](WithKeyToHash(Config{MaxTTL: time.Hour}, collidingKeyHash("a", "b")))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	n := time.Now().UnixNano()
	c.Set(reviewEntry("a", "va", n), n)
	t.Logf("Contains(b) = %v with only a stored", c.Contains("b"))
	if e, ok := c.Get("b"); ok {
		t.Fatalf("Get(b) = %q: a colliding key's entry", e.Value)
	}
	if e, ok := c.Get("a"); !ok || e.Value != "va" {
		t.Fatalf("Get(a) = %v, %v; want va", e, ok)
	}
}

// TestFullCollisionBookkeeping: every key shares one 64-bit hash with
// keyHash's conflict 0, so ristretto's store holds at most one of them and
// every Set of one replaces whichever is there (in place, with OnExit), every
// Delete removes whichever is there, and a concurrent itemNew is rejected by
// the policy (OnReject, which ristretto follows with OnExit). Checked after
// concurrent Sets, SetIfs, Deletes and InvalidateTags on distinct guard
// stripes: Entries equals what the store holds (0 or 1), every key indexed
// under a tag is the held one, every filed entry is the held one, and while
// writers run each one's Set is visible (or refused, counted) when it
// returns, and its Delete makes its key miss. With conflict 0 (keyHash's) a
// stored hash is always in the policy outside ristretto's processor (caller
// side Update in place needs a stored item; Del removes from the store
// first), so itemNew never overwrites a stored item silently, and every way
// an entry leaves ristretto's store is followed by an exit.
func TestFullCollisionBookkeeping(t *testing.T) {
	c, err := New[string](WithKeyToHash(Config{MaxCost: 1 << 20, MaxTTL: time.Hour}, func(string) (uint64, uint64) { return 0x5eed, 0 }))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	rs := c.st.(*ristrettoStore[string])
	// one key per writer, each on a stripe of its own, so writers overlap
	keys := []string{"k0"}
	for len(keys) < 4 {
		k := OtherStripe(c.guard, keys[len(keys)-1], "k"+strconv.Itoa(len(keys)))
		clash := false
		for _, o := range keys {
			clash = clash || c.guard.stripe(o) == c.guard.stripe(k)
		}
		if !clash {
			keys = append(keys, k)
		}
	}
	var wg sync.WaitGroup
	for w, k := range keys {
		wg.Go(func() {
			r := rand.New(rand.NewPCG(uint64(w), 11))
			for i := range 3000 {
				n := time.Now().UnixNano()
				e := reviewEntry(k, strconv.Itoa(i), n, "t"+k, "all")
				rejected, dropped := c.counts.rejected.Load(), c.counts.dropped.Load()
				switch p := r.IntN(10); {
				case p < 5:
					c.Set(e, n)
					// the key is this goroutine's: only colliding keys' writes
					// may have replaced or removed e since (e exits then)
					if got, ok := c.Get(k); ok && got != e {
						t.Errorf("after Set(%q) = %q, Get = %q", k, e.Value, got.Value)
					} else if !ok && !waitFor(time.Second, e.gone.Load) {
						// a colliding Set swaps the store before it calls
						// OnExit for e: give that exit a moment
						t.Errorf("after Set(%q): Get misses, yet e never exited (rejected %d->%d, dropped %d->%d)", k, rejected, c.counts.rejected.Load(), dropped, c.counts.dropped.Load())
					}
				case p < 7:
					c.SetIf(e, c.Begin(k), n)
				case p < 9:
					c.Delete(k)
					if got, ok := c.Get(k); ok {
						t.Errorf("after Delete(%q): Get = %q", k, got.Value)
					}
				default:
					c.InvalidateTags("t" + k)
				}
				if t.Failed() {
					return
				}
			}
		})
	}
	wg.Wait()
	s := c.Stats()
	held, ok := rs.get("k0") // every key maps to the one slot
	want := int64(0)
	if ok {
		want = 1
	}
	t.Logf("stats %+v, held %v", s, held)
	if s.Entries != want {
		t.Errorf("Entries %d, store holds %d", s.Entries, want)
	}
	if f := c.Filed(); int64(f) != want {
		t.Errorf("Filed %d, store holds %d", f, want)
	}
	tagged := c.KeysWithTag("all")
	if int64(len(tagged)) != want || (ok && tagged[0] != held.Key) {
		t.Errorf("KeysWithTag(all) = %v, store holds %v", tagged, held)
	}
	if s.Cost != 0 && (!ok || s.Cost != held.cost) {
		t.Errorf("Cost %d, store holds %v", s.Cost, held)
	}
}

// TestOtterInlineMaintenanceNoDeadlock: the Otter engine at a MaxCost that
// keeps it evicting, with every path that reaches otter at once: Sets and
// SetIfs (maintenance inline, under a guard stripe and life.RLock, then
// CleanUp), Gets whose drains run inline while any set is in progress and
// on otter's goroutines otherwise, Deletes and InvalidateTags, Clear (all
// stripes, then InvalidateAll), the sweeper's pass (Expire), Stats
// (CleanUp), and at the end Close with writers and readers running, then
// Gets on the closed cache (goleak in TestMain checks the goroutines). The
// lock order holds: otter's eviction and bucket locks are taken inside the
// stripe and life locks, never around them, and what otter calls back
// (exited) takes only the tag index's and expiry's locks, which never call
// out.
func TestOtterInlineMaintenanceNoDeadlock(t *testing.T) {
	const keys, writes = 200, 3_000
	c, err := New[string](Config{Engine: Otter, MaxCost: 40 * (entryOverhead + 8), MaxTTL: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	tag := func(r *rand.Rand) string { return "t" + strconv.Itoa(r.IntN(4)) }
	writersDone := make(chan struct{})
	var writers, others sync.WaitGroup
	for w := range 3 {
		writers.Go(func() {
			r := rand.New(rand.NewPCG(uint64(w), 3))
			for range writes {
				k, n := "k"+strconv.Itoa(r.IntN(keys)), time.Now().UnixNano()
				switch p := r.IntN(10); {
				case p < 5:
					c.Set(reviewEntry(k, "v"+strconv.Itoa(r.IntN(100)), n, tag(r)), n)
				case p < 7:
					c.SetIf(reviewEntry(k, "w", n, tag(r)), c.Begin(k), n)
				case p < 9:
					c.Delete(k)
				default:
					c.InvalidateTags(tag(r))
				}
			}
		})
	}
	for w := 3; w < 5; w++ {
		r := rand.New(rand.NewPCG(uint64(w), 3))
		loopUntil(&others, writersDone, func() {
			k := "k" + strconv.Itoa(r.IntN(keys))
			if e, ok := c.Get(k); ok && e.Key != k {
				t.Errorf("Get(%q) returned %q", k, e.Key)
			}
		})
	}
	r, i := rand.New(rand.NewPCG(6, 3)), 0
	loopUntil(&others, writersDone, func() {
		switch n := time.Now().UnixNano(); i % 3 {
		case 0:
			if r.IntN(20) == 0 { // rarely, so that writers leave entries
				c.Clear()
			}
		case 1:
			c.Expire(n + int64(2*time.Hour)) // every filed entry is due
		default:
			c.Stats()
		}
		i++
	})
	done := make(chan struct{})
	go func() {
		writers.Wait()
		close(writersDone)
		others.Wait()
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(60 * time.Second):
		t.Fatal("otter engine deadlocked: workers did not finish within 60 s")
	}

	s := c.Stats()
	found := 0
	for i := range keys {
		if _, ok := c.Get("k" + strconv.Itoa(i)); ok {
			found++
		}
	}
	tagged := 0
	for i := range 4 {
		tagged += len(c.KeysWithTag("t" + strconv.Itoa(i)))
	}
	if s.Entries != int64(found) || c.Filed() != found || tagged != found {
		t.Errorf("Entries %d, Filed %d, tagged %d: Get finds %d", s.Entries, c.Filed(), tagged, found)
	}
	if s.Cost > s.MaxCost {
		t.Errorf("Cost %d over MaxCost %d", s.Cost, s.MaxCost)
	}

	// Close while writers and readers run, then read the closed cache.
	stop := make(chan struct{})
	var ops atomic.Int64
	var late sync.WaitGroup
	for w := range 4 {
		r := rand.New(rand.NewPCG(uint64(w), 5))
		loopUntil(&late, stop, func() {
			k, n := "k"+strconv.Itoa(r.IntN(keys)), time.Now().UnixNano()
			if w%2 == 0 {
				c.Set(reviewEntry(k, "x", n, tag(r)), n)
			} else {
				c.Get(k)
			}
			ops.Add(1)
		})
	}
	if !waitFor(10*time.Second, func() bool { return ops.Load() >= 2000 }) {
		t.Fatal("the late workers did not get going")
	}
	closed := make(chan struct{})
	go func() { c.Close(); close(closed) }()
	select {
	case <-closed:
	case <-time.After(10 * time.Second):
		t.Fatal("Close hangs with writers running")
	}
	close(stop)
	late.Wait()
	for i := range keys {
		c.Get("k" + strconv.Itoa(i))
	}
	if s := c.Stats(); s.Entries != 0 {
		t.Errorf("after Close: Entries %d", s.Entries)
	}
}

// loopUntil runs fn over and over on a goroutine of wg until stop is closed.
func loopUntil(wg *sync.WaitGroup, stop <-chan struct{}, fn func()) {
	wg.Go(func() {
		for {
			select {
			case <-stop:
				return
			default:
			}
			fn()
		}
	})
}
