package l1

import (
	"sync"
	"time"
)

// expiryTick is how often the sweeper removes entries past their local
// deadline, and the width of its buckets. The deadline is enforced on every
// read by the callers (they compare LocalFreshUntil and LocalStaleUntil
// with their clock); the sweep only frees the room: a second late costs
// nothing but that second's memory.
const expiryTick = time.Second

// expiry removes entries once their local deadline has passed. The engines
// keep no TTL of their own: both read the clock on every Get of an entry
// with one (ristretto calls time.Now, otter its clock), which is the
// largest single cost of a hit on a VM where time.Now takes 50 ns, and it
// buys nothing here, since callers check deadlines themselves.
//
// Entries wait in one bucket per expiryTick of their deadline, on the wall
// clock, and leave it when they exit the cache any other way (exited), so
// that an entry deleted, replaced or evicted is not held until its
// deadline.
type expiry[V any] struct {
	mu      sync.Mutex
	buckets map[int64]map[*Entry[V]]struct{}

	stop chan struct{}
	done chan struct{}
	once sync.Once
}

func bucketOf(deadline int64) int64 { return deadline/int64(expiryTick) + 1 }

// add files e under its deadline, ttl from now.
func (x *expiry[V]) add(e *Entry[V], ttl time.Duration) {
	e.expireAt = time.Now().Add(ttl).UnixNano()
	b := bucketOf(e.expireAt)
	x.mu.Lock()
	defer x.mu.Unlock()
	if x.buckets == nil {
		x.buckets = make(map[int64]map[*Entry[V]]struct{})
	}
	m := x.buckets[b]
	if m == nil {
		m = make(map[*Entry[V]]struct{})
		x.buckets[b] = m
	}
	m[e] = struct{}{}
}

// remove takes e out of its bucket; e may be nil or in none.
func (x *expiry[V]) remove(e *Entry[V]) {
	if e == nil || e.expireAt == 0 {
		return
	}
	b := bucketOf(e.expireAt)
	x.mu.Lock()
	defer x.mu.Unlock()
	if m := x.buckets[b]; m != nil {
		delete(m, e)
		if len(m) == 0 {
			delete(x.buckets, b)
		}
	}
}

// due takes out the entries of every bucket whose time has come.
func (x *expiry[V]) due(now int64) []*Entry[V] {
	x.mu.Lock()
	defer x.mu.Unlock()
	var out []*Entry[V]
	cur := now / int64(expiryTick)
	for b, m := range x.buckets {
		if b > cur {
			continue
		}
		for e := range m {
			out = append(out, e)
		}
		delete(x.buckets, b)
	}
	return out
}

func (x *expiry[V]) len() int {
	x.mu.Lock()
	defer x.mu.Unlock()
	n := 0
	for _, m := range x.buckets {
		n += len(m)
	}
	return n
}

// sweep runs until halt: every expiryTick it removes the entries due.
func (c *Cache[V]) sweep() {
	defer close(c.expiry.done)
	t := time.NewTicker(expiryTick)
	defer t.Stop()
	for {
		select {
		case <-c.expiry.stop:
			return
		case now := <-t.C:
			c.expire(now.UnixNano())
		}
	}
}

// expire removes the entries whose deadline passed by now. Each removal
// holds the key's guard stripe, as every install of the key does, so the
// entry checked is the one removed: a newer install of the key waits, and
// one before it made the entry exit (gone) already.
func (c *Cache[V]) expire(now int64) {
	for _, e := range c.expiry.due(now) {
		c.guard.locked(e.Key, func() {
			c.life.RLock()
			defer c.life.RUnlock()
			if c.closed || e.gone.Load() {
				return
			}
			c.delete(e.Key)
			c.counts.expired.Add(1)
		})
	}
}

func (x *expiry[V]) halt() {
	x.once.Do(func() { close(x.stop) })
	<-x.done
}
