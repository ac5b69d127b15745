package l1

import (
	"reflect"
	"sync"
	"testing"
	"time"
	"unsafe"
)

// shardLock returns the lock of ristretto's store shard that holds hash h
// (ristretto's shardedMap: shards[h%256], each a lockedMap embedding a
// sync.RWMutex). Holding it parks ristretto's processor when it next touches
// that shard, and only then: the test's tool to order the processor's steps.
func shardLock(t *testing.T, s *ristrettoStore[string], h uint64) *sync.RWMutex {
	t.Helper()
	sm := reflect.ValueOf(s.rc).Elem().FieldByName("storedItems").Elem() // *shardedMap
	lm := sm.Elem().FieldByName("shards").Index(int(h % 256))            // *lockedMap
	mu := lm.Elem().FieldByName("RWMutex")
	return (*sync.RWMutex)(unsafe.Pointer(mu.UnsafeAddr()))
}

// setBufLen is how many items wait in ristretto's set buffer.
func setBufLen(s *ristrettoStore[string]) int {
	return reflect.ValueOf(s.rc).Elem().FieldByName("setBuf").Len()
}

// TestSetAfterDeleteOfCollidingKey: with keys ristretto cannot tell
// apart (same hash and conflict, as the l1 collision tests force), a Set of
// key b made after Delete(b) returned, with no other operation in flight,
// must leave b visible. Since del stopped waiting, Delete(b)'s itemDelete
// can still be queued behind a colliding key a's itemNew (a Set of a on
// another guard stripe, concurrent with the Delete); the processor stores a,
// Set(b) replaces it in place (ristretto's Update path), and the late
// itemDelete then removes b's new entry.
//
// The processor is parked twice by holding store shard locks that only it
// touches at those points: at the eviction of v0 (before a's itemNew) and at
// the eviction of x0 (inside a's itemNew, after a is stored).
func TestSetAfterDeleteOfCollidingKey(t *testing.T) {
	hashes := map[string]uint64{"v0": 2, "x0": 4}
	c, err := New[string](WithKeyToHash(Config{MaxCost: 1000, MaxTTL: time.Hour}, func(k string) (uint64, uint64) {
		if h, ok := hashes[k]; ok {
			return h, h
		}
		return 1, 1 // every other key collides fully
	}))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	rs := c.st.(*ristrettoStore[string])
	a := "ka"
	b := OtherStripe(c.guard, a, "kb")
	n := time.Now().UnixNano()
	ent := func(k, v string, size int) *Entry[string] {
		return &Entry[string]{Key: k, Value: v, FreshUntil: n + int64(time.Hour), StaleUntil: n + int64(time.Hour), Size: size}
	}
	big := 1000 - 128 - 2 - 10 // cost ~990: any two of them overflow MaxCost 1000

	c.Set(ent("v0", "v0", big), n) // the policy holds v0 alone
	if !c.Contains("v0") {         // Contains, not Get: no hit for v0 in the sketch
		t.Fatal("setup: v0 not stored")
	}
	l2, l4 := shardLock(t, rs, 2), shardLock(t, rs, 4)
	var wg sync.WaitGroup
	defer wg.Wait()

	// Park 0: x0's itemNew evicts v0; the processor stores x0, then blocks
	// deleting v0 from shard 2.
	l2.Lock()
	wg.Add(1)
	go func() { defer wg.Done(); c.Set(ent("x0", "x0", big), n) }()
	held2, held4 := true, false
	release := func() {
		if held2 {
			l2.Unlock()
			held2 = false
		}
		if held4 {
			l4.Unlock()
			held4 = false
		}
	}
	waitOrFatal := func(what string, cond func() bool) {
		t.Helper()
		if !waitFor(5*time.Second, cond) {
			release()
			t.Fatalf("timed out waiting for %s", what)
		}
	}
	waitOrFatal("x0 stored", func() bool { return c.Contains("x0") })
	l4.Lock() // park 1, for later: a's itemNew will evict x0 (shard 4)
	held4 = true
	waitOrFatal("x0's Wait queued", func() bool { return setBufLen(rs) == 1 })

	// a's Set queues itemNew(a) (and its Wait) behind the parked eviction.
	base := setBufLen(rs)
	wg.Add(1)
	go func() { defer wg.Done(); c.Set(ent(a, "va", big), n) }()
	waitOrFatal("a's itemNew and Wait queued", func() bool { return setBufLen(rs) >= base+2 })

	// Delete(b), on another stripe: the store holds nothing at the hash yet;
	// its itemDelete is queued behind a's itemNew.
	base = setBufLen(rs)
	deleted := make(chan struct{})
	wg.Add(1)
	go func() { defer wg.Done(); c.Delete(b); close(deleted) }()
	waitOrFatal("b's itemDelete queued", func() bool { return setBufLen(rs) >= base+1 })
	select {
	case <-deleted:
	case <-time.After(200 * time.Millisecond):
		// del waits for ristretto's queue (the code before f06ae19): it
		// cannot return before its itemDelete is applied, so no Set of b
		// can come between. Nothing to show.
		release()
		<-deleted
		wg.Wait()
		t.Log("Delete waited for its itemDelete: the window does not exist")
		e2 := ent(b, "vb", 10)
		c.Set(e2, n)
		if e, ok := c.Get(b); !ok || e != e2 {
			t.Errorf("Set(%q) after Delete(%q): Get = %v, %v", b, b, e, ok)
		}
		return
	}

	// Release park 0: the processor applies itemNew(a) (a is stored), then
	// parks evicting x0, with b's itemDelete still queued.
	l2.Unlock()
	held2 = false
	waitOrFatal("a stored", func() bool { e, ok := rs.get(a); return ok && e.Key == a })

	// Delete(b) has returned; now Set(b). Ristretto finds an item with b's
	// hash and conflict (a's) and updates it in place: b is visible at once.
	e2 := ent(b, "vb", 10)
	setB := make(chan struct{})
	wg.Add(1)
	go func() { defer wg.Done(); c.Set(e2, n); close(setB) }()
	// Wait for b stored in place (the bug's path); a set that first waits
	// for the queued deletes never gets there while the processor is parked.
	if !waitFor(200*time.Millisecond, func() bool { e, ok := rs.get(b); return ok && e == e2 }) {
		t.Log("Set(b) did not update a's item in place: it waits for the queued delete first")
	}

	// Release park 1: the processor finishes a's itemNew, then applies b's
	// old itemDelete, then b's itemUpdate, then Set(b)'s Wait.
	l4.Unlock()
	held4 = false
	<-setB
	wg.Wait()
	if e, ok := c.Get(b); !ok || e != e2 {
		t.Errorf("Set(%q) returned after Delete(%q) had returned, nothing else in flight, yet Get(%q) = %v, %v: the Delete's late itemDelete removed the newer entry", b, b, b, e, ok)
	}
	s := c.Stats()
	found := 0
	for _, k := range []string{a, b, "v0", "x0"} {
		if _, ok := c.Get(k); ok {
			found++
		}
	}
	t.Logf("stats %+v, keys found %d", s, found)
	if s.Entries != int64(found) {
		t.Errorf("Entries %d, Get finds %d", s.Entries, found)
	}
}
