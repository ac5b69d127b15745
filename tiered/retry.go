package tiered

import (
	"context"
	"sync"
	"time"

	"github.com/strata-cache/strata/l2"
)

// retryInterval is how often failed L2 writes are tried again while any wait:
// with a server's breaker open a try fails at once, without a round trip, so
// trying often costs little and ends stale reads soon after the server (or
// its promoted replica) answers.
const retryInterval = 25 * time.Millisecond

// maxRetries bounds how many failed writes wait at once. Past it some
// are given up (and counted): the spool must not grow without bound while a
// server stays away.
const maxRetries = 100_000

// retrier keeps the L2 writes that failed and must not be left to expire,
// and tries them again every retryInterval until they apply or what they
// fix has expired, as mcrouter spools and replays failed deletes:
//
//   - the deletes of keys whose Set or Delete failed on a store that does
//     not heal (a Redis Cluster or a caller's client, see l2.Store.Heals):
//     the old value stays readable there, by every replica, until its TTL.
//     A delete that applies is published, so that replicas drop copies they
//     read from L2 meanwhile: stale reads after a failed write last until
//     the retry, not the TTL.
//   - the releases of load leases whose fill or release failed, in every
//     topology: a lease left in L2 makes other replicas wait for a fill that
//     cannot land, up to LeaseWait.
type retrier struct {
	c *Client

	mu       sync.Mutex
	deletes  map[retryKey]retryDelete
	releases map[retryKey]retryRelease
	running  bool // a retry loop runs
	closed   bool

	applied, expired, dropped uint64 // under mu
	seq                       uint64 // under mu
	wg                        sync.WaitGroup
}

// retryKey is a key in a namespace as L2 names it (with its version).
type retryKey struct{ l2ns, key string }

type retryDelete struct {
	ns    string        // the cache's namespace, for the publication
	at    func() string // the namespace's name in L2 now: readers look there, after a Clear too
	until int64         // after this (clock nanoseconds) the old value expired anyway; 0: never
	seq   uint64        // tells a delete spooled again apart from the one a round tried
}

type retryRelease struct {
	token string
	until int64 // the lease's expiry
}

// RetryStats counts the failed L2 writes a Client tries again (see
// Client.RetryStats).
type RetryStats struct {
	// Pending is how many wait now.
	Pending int `json:"pending"`
	// Applied counts the retries that landed.
	Applied uint64 `json:"applied"`
	// Expired counts those given up because what they fixed expired
	// meanwhile; Dropped those given up because too many waited.
	Expired uint64 `json:"expired"`
	Dropped uint64 `json:"dropped"`
}

// retryStats is Client.RetryStats.
func (c *Client) retryStats() RetryStats {
	r := &c.retry
	r.mu.Lock()
	defer r.mu.Unlock()
	return RetryStats{Pending: len(r.deletes) + len(r.releases), Applied: r.applied, Expired: r.expired, Dropped: r.dropped}
}

// spoolDeletes keeps the deletes of keys (of cache namespace ns, named l2ns
// in L2 when they failed, at() now) to try again until until (0: until they
// apply).
func (r *retrier) spoolDeletes(ns, l2ns string, at func() string, keys []string, until int64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return
	}
	if r.deletes == nil {
		r.deletes = map[retryKey]retryDelete{}
	}
	r.seq++
	for _, k := range keys {
		r.deletes[retryKey{l2ns, k}] = retryDelete{ns: ns, at: at, until: until, seq: r.seq}
	}
	r.trimLocked()
	r.startLocked()
}

// forgetDelete drops a waiting delete of key: a write of it has just
// reached L2, which holds no old value any more.
func (r *retrier) forgetDelete(l2ns, key string) {
	r.mu.Lock()
	if len(r.deletes) > 0 {
		delete(r.deletes, retryKey{l2ns, key})
	}
	r.mu.Unlock()
}

// spoolReleases keeps the releases of the load leases token holds on keys,
// until the leases expire at until.
func (r *retrier) spoolReleases(l2ns, token string, keys []string, until int64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed || len(keys) == 0 {
		return
	}
	if r.releases == nil {
		r.releases = map[retryKey]retryRelease{}
	}
	for _, k := range keys {
		r.releases[retryKey{l2ns, k}] = retryRelease{token: token, until: until}
	}
	r.trimLocked()
	r.startLocked()
}

// trimLocked gives up waiting writes past maxRetries: lease releases first
// (a lease expires by itself within LeaseTTL), then deletes in no order.
// Each costs O(1): a full spool under a long outage must not make every
// failed write scan it.
func (r *retrier) trimLocked() {
	for k := range r.releases {
		if len(r.deletes)+len(r.releases) <= maxRetries {
			return
		}
		delete(r.releases, k)
		r.dropped++
	}
	for k := range r.deletes {
		if len(r.deletes) <= maxRetries {
			return
		}
		delete(r.deletes, k)
		r.dropped++
	}
}

func (r *retrier) startLocked() {
	if r.running {
		return
	}
	r.running = true
	r.wg.Go(r.loop)
}

// loop tries the waiting writes every retryInterval until none waits or the
// client closes.
func (r *retrier) loop() {
	t := time.NewTicker(retryInterval)
	defer t.Stop()
	for {
		select {
		case <-r.c.ctx.Done():
			return
		case <-t.C:
		}
		if !r.round() {
			return
		}
	}
}

// round tries every waiting write once. It reports whether any still waits
// (see pending).
func (r *retrier) round() bool {
	store := r.c.l2
	if !store.Settled() {
		// A write landing now may land where the key is not read once
		// its server is back: wait for it. (Expired writes are dropped
		// once it is; trimLocked bounds the spool meanwhile.)
		return r.pending()
	}
	now := r.c.clock.NowNano()
	r.mu.Lock()
	// By the namespace's name in L2 now: a Clear since the failure moved
	// readers to a new name, and the old one is read by no one.
	deletes := map[string][]retryKey{}
	namespaces := map[string]string{}
	seqs := map[retryKey]uint64{}
	for k, d := range r.deletes {
		if d.until != 0 && now >= d.until {
			delete(r.deletes, k)
			r.expired++
			continue
		}
		at := k.l2ns
		if d.at != nil {
			at = d.at()
		}
		deletes[at] = append(deletes[at], k)
		namespaces[at] = d.ns
		seqs[k] = d.seq
	}
	releases := map[retryKey]string{}
	for k, l := range r.releases {
		if now >= l.until {
			delete(r.releases, k)
			r.expired++
			continue
		}
		releases[k] = l.token
	}
	r.mu.Unlock()

	// Past the breakers: a retry lands as soon as the server answers, and a
	// lease others wait on is released then, not a cool-down later.
	ctx, cancel := context.WithTimeout(l2.Unguarded(r.c.ctx), time.Second)
	defer cancel()
	for at, rks := range deletes {
		keys := make([]string, len(rks))
		for i, rk := range rks {
			keys[i] = rk.key
		}
		err := store.Delete(ctx, at, keys...)
		failed := l2.KeyFailed(err)
		var done []string
		var settled []retryKey
		for i, rk := range rks {
			if err == nil || !failed(i) {
				done = append(done, rk.key)
				settled = append(settled, rk)
			}
		}
		r.settleDeletes(settled, seqs)
		if len(done) > 0 {
			r.c.repaired(namespaces[at], done)
		}
	}
	for k, token := range releases {
		if store.Release(ctx, k.l2ns, k.key, token) == nil {
			r.mu.Lock()
			if l, ok := r.releases[k]; ok && l.token == token {
				delete(r.releases, k)
				r.applied++
			}
			r.mu.Unlock()
		}
	}

	return r.pending()
}

// pending reports whether any write still waits; when none does (or the
// client closed), the loop ends, under mu, so a write spooled meanwhile
// starts a new one.
func (r *retrier) pending() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.deletes)+len(r.releases) == 0 || r.closed {
		r.running = false
		return false
	}
	return true
}

// settleDeletes removes the deletes of keys that applied, unless one was
// spooled again since the round read it (seqs): that write failed after the
// retry, and L2 may hold what it replaced.
func (r *retrier) settleDeletes(rks []retryKey, seqs map[retryKey]uint64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, rk := range rks {
		if d, ok := r.deletes[rk]; ok && d.seq == seqs[rk] {
			delete(r.deletes, rk)
			r.applied++
		}
	}
}

// close stops the retries: what still waits is given up (Close cannot wait
// for a server that may never answer).
func (r *retrier) close() {
	r.mu.Lock()
	r.closed = true
	r.mu.Unlock()
	r.wg.Wait()
}
