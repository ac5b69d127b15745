package tiered

import (
	"context"
	"hash/maphash"
	"sync"
)

// slide extends e's life in L2 after an access, at most once per TTL/2 per
// key on this replica, and its tag sets' with it (a set that expired first
// would hide the key from tag invalidations): the PEXPIREs go out in the
// background, so a hit stays a hit.
func (c *Cache[V]) slide(ctx context.Context, e *entry[V], now int64) {
	store := c.client.l2
	half := int64(c.opts.TTL / 2)
	if store == nil || e.Value.l1Only || !c.extensions.due(e.Key, now, half) {
		return
	}
	lctx, done, err := c.client.beginLoad(context.WithoutCancel(ctx))
	if err != nil {
		return
	}
	c.stats.extensions.Add(1)
	ttl := c.opts.TTL + max(c.opts.StaleWhileRevalidate, c.opts.StaleIfError)
	key, tags, ns := e.Key, e.Tags, c.l2ns()
	go func() {
		defer done()
		defer c.survive("extension", key)
		// Tag sets first: a value never outlives them.
		if len(tags) > 0 {
			if err := store.ExpireTags(lctx, ns, tags, ttl); err != nil {
				c.reportL2(lctx, "expire", err)
				return
			}
		}
		if err := store.Expire(lctx, ns, key, ttl); err != nil {
			c.reportL2(lctx, "expire", err)
		}
	}()
}

// extensionLog remembers per key when its next sliding extension is due.
// Striped, so hits on different keys rarely share a lock; each stripe drops
// past-due keys when it grows, so keys no longer read are forgotten.
type extensionLog struct {
	seed    maphash.Seed
	stripes [16]struct {
		mu   sync.Mutex
		next map[string]int64
	}
}

// maxStripeKeys is when a stripe sweeps out keys whose extension is past due.
const maxStripeKeys = 4096

// due reports whether key's extension is due at now and, if so, schedules
// the next one interval later.
func (l *extensionLog) due(key string, now, interval int64) bool {
	s := &l.stripes[maphash.String(l.seed, key)%uint64(len(l.stripes))]
	s.mu.Lock()
	defer s.mu.Unlock()
	if now < s.next[key] {
		return false
	}
	if s.next == nil {
		s.next = make(map[string]int64)
	}
	if len(s.next) >= maxStripeKeys {
		for k, t := range s.next {
			if t <= now {
				delete(s.next, k)
			}
		}
	}
	s.next[key] = now + interval
	return true
}
