package tiered

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/strata-cache/strata/l2"
)

// Write-behind defaults, used when a WriteBehind field is zero.
const (
	DefaultWriteBatchSize   = 100
	DefaultWriteInterval    = 100 * time.Millisecond
	DefaultMaxPending       = 100_000
	DefaultWriteMaxAttempts = 10
	DefaultRetryInitial     = 100 * time.Millisecond
	DefaultRetryMax         = 10 * time.Second
	// DefaultClaimIdle is how long a write read by a replica but not
	// acknowledged waits before another replica takes it over (XAUTOCLAIM's
	// min-idle): longer than any Flush should take, so a slow replica's
	// batch is not flushed twice, short enough that a dead replica's batch
	// is not held up for long.
	DefaultClaimIdle    = 30 * time.Second
	DefaultDrainTimeout = 10 * time.Second
)

// ErrBackpressure is returned by a write-behind Set or Delete when the
// namespace's stream holds MaxPending writes not yet flushed (unless
// WriteBehind.Block): nothing was written.
var ErrBackpressure = errors.New("tiered: write-behind backlog full")

// WriteBehind makes Set and Delete write-behind: each write is stored in L2
// and L1 as usual and recorded, durably, in a Redis Stream of the
// namespace; flushers on the replicas hand the recorded writes to Flush in
// batches, in the background. See the package documentation for the
// guarantees.
type WriteBehind[V any] struct {
	// Flush writes a batch to the database. It is called with at most
	// BatchSize writes, one per key (the last of the key's writes in the
	// batch), and must be idempotent: delivery is at least once. A write's
	// Version orders the writes of one key; a Flush that keeps, per key,
	// only a newer version than the one stored is correct under every
	// failure. Required.
	Flush func(ctx context.Context, batch []Write[V]) error
	// BatchSize is the most writes one Flush receives. Zero means
	// DefaultWriteBatchSize.
	BatchSize int
	// Interval is the longest a write waits to be batched. Zero means
	// DefaultWriteInterval.
	Interval time.Duration
	// MaxPending bounds the writes not yet flushed, per stream (per shard
	// on a Ring). Zero means DefaultMaxPending.
	MaxPending int
	// Block makes a Set or Delete that finds the backlog full wait for room
	// (or its ctx) instead of returning ErrBackpressure.
	Block bool
	// RetryInitial and RetryMax shape the back-off between failed Flush
	// attempts of one batch: doubling from RetryInitial, capped at
	// RetryMax. Zero means DefaultRetryInitial and DefaultRetryMax.
	RetryInitial, RetryMax time.Duration
	// MaxAttempts is how many times a batch is tried before its writes are
	// moved to the dead-letter stream (see Cache.DeadLetters). Zero means
	// DefaultWriteMaxAttempts.
	MaxAttempts int
	// ClaimIdle is how long a write another replica read but did not
	// acknowledge must wait before this one takes it over. Zero means
	// DefaultClaimIdle.
	ClaimIdle time.Duration
	// DrainTimeout bounds how long Client.Close flushes what is pending.
	// Zero means DefaultDrainTimeout.
	DrainTimeout time.Duration
}

// Write is one write handed to WriteBehind.Flush.
type Write[V any] struct {
	Key   string
	Value V // the zero value for a delete
	// Deleted marks a Delete (a tombstone).
	Deleted bool
	// Version orders the writes of one key: Redis assigns it when it
	// records the write, so a write recorded later has a larger one,
	// whichever replica made it (a redriven write keeps its own). Across
	// Ring shards (a key on a stand-in shard during an outage) it follows
	// the servers' clocks. At is when the write was made, on the writer's
	// clock.
	Version uint64
	At      time.Time
}

// DeadLetter is a write given up after WriteBehind.MaxAttempts failed
// flushes (or one that could not be decoded), with why.
type DeadLetter[V any] struct {
	Write  Write[V]
	ID     string // its entry ID in the dead-letter stream
	Reason string
	// Err is set, and Write empty, when the entry could not be decoded.
	Err error
}

// WriteBehindStats count a write-behind cache's flushing on this replica.
type WriteBehindStats struct {
	Pending      int64  `json:"pending"`       // writes not yet flushed, in every stream of the namespace (last read)
	InFlight     int64  `json:"in_flight"`     // of those, writes read by a flusher and not acknowledged yet
	Flushed      uint64 `json:"flushed"`       // writes flushed (a coalesced write counts once per entry it covered)
	Flushes      uint64 `json:"flushes"`       // Flush calls that succeeded
	Retried      uint64 `json:"retried"`       // Flush calls that failed and were tried again
	DeadLettered uint64 `json:"dead_lettered"` // writes moved to the dead-letter stream
	Claimed      uint64 `json:"claimed"`       // writes taken over from another replica's consumer
	LostByTrim   uint64 `json:"lost_by_trim"`  // pending writes deleted from a stream by someone else: must stay 0
}

func (w *WriteBehind[V]) setDefaults() error {
	switch {
	case w.Flush == nil:
		return errors.New("tiered: WriteBehind.Flush is required")
	case w.BatchSize < 0 || w.Interval < 0 || w.MaxPending < 0 || w.RetryInitial < 0 || w.RetryMax < 0 ||
		w.MaxAttempts < 0 || w.ClaimIdle < 0 || w.DrainTimeout < 0:
		return errors.New("tiered: WriteBehind's sizes and durations must not be negative")
	}
	def := func(v *int, d int) {
		if *v == 0 {
			*v = d
		}
	}
	defD := func(v *time.Duration, d time.Duration) {
		if *v == 0 {
			*v = d
		}
	}
	def(&w.BatchSize, DefaultWriteBatchSize)
	def(&w.MaxPending, DefaultMaxPending)
	def(&w.MaxAttempts, DefaultWriteMaxAttempts)
	defD(&w.Interval, DefaultWriteInterval)
	defD(&w.RetryInitial, DefaultRetryInitial)
	defD(&w.RetryMax, DefaultRetryMax)
	defD(&w.ClaimIdle, DefaultClaimIdle)
	defD(&w.DrainTimeout, DefaultDrainTimeout)
	return nil
}

// wbGroup is the consumer group of every write-behind stream.
const wbGroup = "strata-flushers"

// flusher flushes one write-behind cache's streams. Only the holder of a
// stream's flush lock reads it, one batch at a time, acknowledging a batch
// before reading the next: a key's writes reach Flush in the order they
// were appended. A new holder first finishes what an earlier one left read
// but unacknowledged (once ClaimIdle old), then reads on.
type flusher[V any] struct {
	c        *Cache[V]
	wb       *WriteBehind[V]
	consumer string
	streams  []l2.Stream
	ctx      context.Context // ended by stop's deadline
	cancel   context.CancelFunc
	stopping chan struct{}
	done     chan struct{}
	stopOnce sync.Once

	// Per stream, touched by the flusher's goroutine only.
	grouped []bool
	ownRead []bool
	cursor  []string

	flushed, flushes, retried, dead, claimed, lost atomic.Uint64
	pending, inFlight                              atomic.Int64
	looked                                         atomic.Bool // a first pass over the streams is over (tests)
}

func newFlusher[V any](c *Cache[V]) *flusher[V] {
	streams := c.client.l2.Streams(c.ns)
	f := &flusher[V]{c: c, wb: c.opts.WriteBehind, consumer: c.client.cfg.NodeID, streams: streams,
		stopping: make(chan struct{}), done: make(chan struct{}),
		grouped: make([]bool, len(streams)), ownRead: make([]bool, len(streams)), cursor: make([]string, len(streams))}
	for i := range f.cursor {
		f.cursor[i] = "0-0"
	}
	f.ctx, f.cancel = context.WithCancel(context.Background())
	go f.run()
	return f
}

// lockTTL is how long a stream's flush lock outlives its holder's last
// renewal: a few intervals, so a dead holder's stream waits briefly.
func (f *flusher[V]) lockTTL() time.Duration { return max(10*f.wb.Interval, time.Second) }

func (f *flusher[V]) run() {
	defer close(f.done)
	defer f.c.survive("write-behind flusher", "")
	t := time.NewTicker(f.wb.Interval)
	defer t.Stop()
	lastBacklog := time.Time{}
	for {
		busy := f.pass()
		if time.Since(lastBacklog) >= time.Second {
			f.readBacklog()
			lastBacklog = time.Now()
		}
		f.looked.Store(true)
		select {
		case <-f.stopping:
			f.drain()
			return
		default:
		}
		if busy {
			continue
		}
		select {
		case <-t.C:
		case <-f.stopping:
			f.drain()
			return
		}
	}
}

// pass takes a step on every stream; it reports whether one may have more
// to flush at once.
func (f *flusher[V]) pass() bool {
	busy := false
	for i := range f.streams {
		busy = f.step(i) || busy
	}
	return busy
}

// drain flushes until the streams hold nothing this replica may flush, or
// the drain deadline (which cancels f.ctx), then releases the locks.
func (f *flusher[V]) drain() {
	for f.ctx.Err() == nil && f.pass() {
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	for _, st := range f.streams {
		_ = st.Unlock(ctx, f.consumer)
	}
	f.cancel()
}

// stop drains the flusher and waits for it: DrainTimeout from now, the
// flusher's context ends, and with it a Flush or a back-off in progress.
func (f *flusher[V]) stop() {
	f.stopOnce.Do(func() {
		time.AfterFunc(f.wb.DrainTimeout, f.cancel)
		close(f.stopping)
	})
	<-f.done
}

// step flushes one batch of stream i if this replica holds (or takes) its
// lock; it reports whether there may be more to flush at once.
func (f *flusher[V]) step(i int) bool {
	st := f.streams[i]
	ctx, cancel := context.WithTimeout(f.ctx, f.opTimeout())
	defer cancel()
	if !f.grouped[i] {
		if st.EnsureGroup(ctx, wbGroup) != nil {
			return false
		}
		f.grouped[i] = true
	}
	switch got, err := st.Lock(ctx, f.consumer, f.lockTTL()); {
	case err != nil || got == l2.LockRefused:
		return false
	case got == l2.LockTaken:
		// Held anew: whatever this replica read under an earlier hold may
		// have been claimed since; what is still its own is read first.
		f.ownRead[i] = false
	}
	es, err := f.next(ctx, i)
	if err != nil && strings.Contains(err.Error(), "NOGROUP") {
		f.grouped[i] = false // the stream was deleted (a FLUSHALL, say): make it again
	}
	if err != nil || len(es) == 0 {
		return false
	}
	f.flushBatch(i, es)
	return len(es) == f.wb.BatchSize
}

func (f *flusher[V]) opTimeout() time.Duration {
	return max(f.c.client.cfg.Redis.Timeout, time.Second)
}

// next reads the next batch of stream i: this consumer's own unacknowledged
// entries first (a restart), then those another consumer left once they are
// ClaimIdle old (until then it waits, so that no newer write of their keys
// is flushed first), then new ones.
func (f *flusher[V]) next(ctx context.Context, i int) ([]l2.Entry, error) {
	st := f.streams[i]
	n := f.wb.BatchSize
	if !f.ownRead[i] {
		es, err := st.Read(ctx, wbGroup, f.consumer, n, true)
		if err != nil || len(es) > 0 {
			return es, err
		}
		f.ownRead[i] = true
	}
	_, inFlight, err := st.Backlog(ctx, wbGroup)
	if err != nil {
		return nil, err
	}
	if inFlight > 0 {
		es, next, deleted, err := st.Claim(ctx, wbGroup, f.consumer, f.wb.ClaimIdle, f.cursor[i], n)
		if err != nil {
			return nil, err
		}
		f.cursor[i] = next
		if len(deleted) > 0 {
			f.lost.Add(uint64(len(deleted)))
			f.c.client.cfg.Logger.Error("strata: write-behind entries deleted while pending: writes lost",
				"namespace", f.c.ns, "server", st.Server, "ids", deleted)
		}
		f.claimed.Add(uint64(len(es)))
		// Another consumer's batch not yet claimable: wait for it.
		return es, nil
	}
	f.cursor[i] = "0-0"
	return st.Read(ctx, wbGroup, f.consumer, n, false)
}

// flushBatch hands es, coalesced per key, to Flush, retrying with back-off,
// then acknowledges them; after MaxAttempts, or for entries that cannot be
// decoded, it moves them to the dead-letter stream. The stream's flush lock
// is renewed all along; once it is lost (another replica may claim the
// batch and flush newer writes after it), the batch is not tried again:
// it stays pending, for whoever holds the lock.
func (f *flusher[V]) flushBatch(i int, es []l2.Entry) {
	st := f.streams[i]
	keep := f.keepLock(st)
	defer keep.stop()
	batch, bad := f.coalesce(es)
	if len(bad) > 0 {
		f.buryEntries(st, bad, errors.New("undecodable: "+bad[0].Err.Error()))
		es = slices.DeleteFunc(es, func(e l2.Entry) bool {
			return slices.ContainsFunc(bad, func(b l2.Entry) bool { return b.ID == e.ID })
		})
		if len(es) == 0 {
			return
		}
	}
	ids := make([]string, len(es))
	for j, e := range es {
		ids[j] = e.ID
	}
	backoff := f.wb.RetryInitial
	var err error
	for attempt := 1; ; attempt++ {
		start := time.Now()
		err = f.callFlush(batch)
		f.c.observe(f.ctx, Event{Kind: EventFlush, Duration: time.Since(start), Err: err})
		if err == nil {
			break
		}
		if keep.lost.Load() {
			f.ownRead[i] = false
			return // left pending: see above
		}
		if attempt >= f.wb.MaxAttempts {
			f.buryEntries(st, es, err)
			return
		}
		f.retried.Add(1)
		f.c.client.warnLimited(&f.c.client.wbLog, "strata: write-behind flush failed; retrying", "namespace", f.c.ns,
			"attempt", attempt, "err", err)
		if sleep(f.ctx, backoff) != nil || keep.lost.Load() {
			f.ownRead[i] = false
			return // draining ended, or the lock was lost: the entries stay pending
		}
		backoff = min(2*backoff, f.wb.RetryMax)
	}
	f.flushes.Add(1)
	f.flushed.Add(uint64(len(es)))
	ctx, cancel := context.WithTimeout(context.WithoutCancel(f.ctx), f.opTimeout())
	defer cancel()
	if err := st.Done(ctx, wbGroup, ids); err != nil {
		// Flushed but still pending: flushed again later (at least once).
		f.c.client.warnLimited(&f.c.client.wbLog, "strata: write-behind acknowledgement failed", "namespace", f.c.ns, "err", err)
		f.ownRead[i] = false // re-read them first
	}
}

// lockKeeper renews a stream's flush lock while a batch is flushed.
type lockKeeper struct {
	lost atomic.Bool // a renewal found the lock held by another, or failed
	done chan struct{}
	wg   sync.WaitGroup
}

func (f *flusher[V]) keepLock(st l2.Stream) *lockKeeper {
	k := &lockKeeper{done: make(chan struct{})}
	ttl := f.lockTTL()
	k.wg.Go(func() {
		t := time.NewTicker(ttl / 3)
		defer t.Stop()
		for {
			select {
			case <-k.done:
				return
			case <-t.C:
			}
			ctx, cancel := context.WithTimeout(context.WithoutCancel(f.ctx), ttl/3)
			got, err := st.Lock(ctx, f.consumer, ttl)
			cancel()
			if err != nil || got != l2.LockKept {
				k.lost.Store(true)
				return
			}
		}
	})
	return k
}

func (k *lockKeeper) stop() {
	close(k.done)
	k.wg.Wait()
}

// callFlush calls Flush, turning a panic into a *PanicError.
func (f *flusher[V]) callFlush(batch []Write[V]) (err error) {
	defer recoverCallback("Flush", &err)
	return f.wb.Flush(f.ctx, batch)
}

// coalesce keeps, per key, the write with the highest version (the last
// recorded), in the order of the keys' first entries; it returns apart the
// entries that cannot be decoded, with their Err set.
func (f *flusher[V]) coalesce(es []l2.Entry) ([]Write[V], []l2.Entry) {
	var bad []l2.Entry
	at := make(map[string]int, len(es))
	var out []Write[V]
	for _, e := range es {
		if e.Err != nil {
			bad = append(bad, e)
			continue
		}
		w, err := f.c.writeOf(e.Record)
		if err != nil {
			e.Err = err
			bad = append(bad, e)
			continue
		}
		if i, ok := at[w.Key]; ok {
			if w.Version >= out[i].Version {
				out[i] = w
			}
			continue
		}
		at[w.Key] = len(out)
		out = append(out, w)
	}
	return out, bad
}

func (f *flusher[V]) buryEntries(st l2.Stream, es []l2.Entry, cause error) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(f.ctx), f.opTimeout())
	defer cancel()
	if err := st.Bury(ctx, wbGroup, es, cause.Error()); err != nil {
		f.c.client.cfg.Logger.Error("strata: write-behind dead-lettering failed; the writes stay pending", "namespace", f.c.ns, "err", err)
		return
	}
	f.dead.Add(uint64(len(es)))
	f.c.client.cfg.Logger.Warn("strata: write-behind writes moved to the dead-letter stream", "namespace", f.c.ns,
		"writes", len(es), "err", cause)
}

// readBacklog refreshes Pending and InFlight from every stream.
func (f *flusher[V]) readBacklog() {
	var pending, inFlight int64
	for _, st := range f.streams {
		ctx, cancel := context.WithTimeout(f.ctx, f.opTimeout())
		p, fl, err := st.Backlog(ctx, wbGroup)
		cancel()
		if err != nil {
			return // keep the last reading
		}
		pending, inFlight = pending+p, inFlight+fl
	}
	f.pending.Store(pending)
	f.inFlight.Store(inFlight)
}

func (f *flusher[V]) stats() WriteBehindStats {
	if f == nil {
		return WriteBehindStats{}
	}
	return WriteBehindStats{Pending: f.pending.Load(), InFlight: f.inFlight.Load(), Flushed: f.flushed.Load(),
		Flushes: f.flushes.Load(), Retried: f.retried.Load(), DeadLettered: f.dead.Load(), Claimed: f.claimed.Load(),
		LostByTrim: f.lost.Load()}
}

// backpressured runs write, which may fail with l2.ErrBackpressure; with
// WriteBehind.Block it waits for room (or ctx) and tries again.
func (c *Cache[V]) backpressured(ctx context.Context, write func() error) error {
	backoff := time.Millisecond
	for {
		err := write()
		if !errors.Is(err, l2.ErrBackpressure) {
			return err
		}
		if !c.opts.WriteBehind.Block {
			return fmt.Errorf("%w (%d writes pending in a stream of %q)", ErrBackpressure, c.opts.WriteBehind.MaxPending, c.ns)
		}
		if err := sleep(ctx, backoff); err != nil {
			return fmt.Errorf("%w: waiting for room: %w", ErrBackpressure, err)
		}
		backoff = min(2*backoff, c.opts.WriteBehind.Interval)
	}
}

// writeOf decodes a stream record into the Write it stands for.
func (c *Cache[V]) writeOf(r l2.Record) (Write[V], error) {
	w := Write[V]{Key: r.Key, Deleted: r.Deleted, Version: r.Version, At: time.Unix(0, r.At)}
	if w.Deleted {
		return w, nil
	}
	var err error
	w.Value, err = unmarshal(c.opts.Codec, r.Payload)
	return w, err
}

// deadLetters is Cache.DeadLetters.
func (c *Cache[V]) deadLetters(ctx context.Context) ([]DeadLetter[V], error) {
	if c.flusher == nil {
		return nil, nil
	}
	var out []DeadLetter[V]
	for _, st := range c.flusher.streams {
		es, reasons, err := st.Dead(ctx)
		if err != nil {
			return out, err
		}
		for i, e := range es {
			d := DeadLetter[V]{ID: e.ID, Reason: reasons[i], Err: e.Err}
			if e.Err == nil {
				d.Write, d.Err = c.writeOf(e.Record)
			}
			out = append(out, d)
		}
	}
	return out, nil
}

// redrive is Cache.Redrive.
func (c *Cache[V]) redrive(ctx context.Context) (int, error) {
	if c.flusher == nil {
		return 0, nil
	}
	total := 0
	for _, st := range c.flusher.streams {
		n, err := st.Redrive(ctx)
		total += n
		if err != nil {
			return total, err
		}
	}
	return total, nil
}

// warnLimited logs a warning through r's rate limit, with how many were
// held back.
func (c *Client) warnLimited(r *rateLimitedLog, msg string, args ...any) {
	if n, ok := r.allow(c.clock.NowNano()); ok {
		c.cfg.Logger.Warn(msg, append(args, "since_last_log", n)...)
	}
}

// checkWriteBehind checks what write-behind needs: L2, on Redis 6.2+.
func (c *Cache[V]) checkWriteBehind() error {
	if c.client.l2 == nil {
		return errors.New("tiered: Options.WriteBehind needs L2 (Config.Redis): the writes are kept in Redis Streams")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := c.client.l2.StreamsSupported(ctx); err != nil {
		return fmt.Errorf("tiered: Options.WriteBehind: %w", err)
	}
	return nil
}

// drain stops the cache's flusher, if any, after it flushed what it could
// within WriteBehind.DrainTimeout.
func (c *Cache[V]) drain() {
	if c.flusher != nil {
		c.flusher.stop()
	}
}

func (s WriteBehindStats) add(o WriteBehindStats) WriteBehindStats {
	return WriteBehindStats{Pending: max(s.Pending, o.Pending), InFlight: max(s.InFlight, o.InFlight), // each replica reads the same streams
		Flushed: s.Flushed + o.Flushed, Flushes: s.Flushes + o.Flushes, Retried: s.Retried + o.Retried,
		DeadLettered: s.DeadLettered + o.DeadLettered, Claimed: s.Claimed + o.Claimed, LostByTrim: s.LostByTrim + o.LostByTrim}
}
