package chaos_test

import (
	"context"
	"errors"
	"math/rand/v2"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/strata-cache/strata/tiered"
)

// errLoaderFault is what the database answers while a failing-loader fault
// is on.
var errLoaderFault = errors.New("chaos: database unavailable (injected)")

// Loader fault modes (loaderFaults.mode).
const (
	loaderNormal = iota
	loaderSlow
	loaderFailing
)

// maxSlowLoad is the longest a slow load takes: below the lease wait, so a
// slow loader delays the replicas waiting on its lease without making them
// load too.
const maxSlowLoad = 300 * time.Millisecond

// loaderFaults is the database's injected behaviour, shared by every
// loader of a phase.
type loaderFaults struct{ mode atomic.Int32 }

// apply runs the current fault: a slow load sleeps (its pacing, not a
// synchronisation), a failing one returns errLoaderFault.
func (f *loaderFaults) apply(ctx context.Context) error {
	switch f.mode.Load() {
	case loaderSlow:
		t := time.NewTimer(time.Duration(rand.Int64N(int64(maxSlowLoad))))
		defer t.Stop()
		select {
		case <-t.C:
		case <-ctx.Done():
			return ctx.Err()
		}
	case loaderFailing:
		return errLoaderFault
	}
	return nil
}

// versionedDB is the database behind the soak: every write of a key gives
// it the next version, and it remembers each write's begin and
// acknowledgement (the cache call's return), so a read can be checked
// against the writes acknowledged before it began.
type versionedDB struct {
	next   atomic.Int64
	loads  atomic.Int64
	rows   map[string]*dbRow
	faults *loaderFaults
}

type dbRow struct {
	write sync.Mutex // one writer per key at a time: database and cache in one order
	mu    sync.Mutex
	cur   int64
	done  []dbWrite // acknowledged writes, oldest first
}

// dbWrite is one write of a key: the database update and the cache call
// after it (Set, Delete or a tag invalidation).
type dbWrite struct {
	Version int64     `json:"version"`
	Kind    string    `json:"kind"`
	Replica string    `json:"replica"` // the writer
	Slot    int       `json:"-"`
	Begin   time.Time `json:"begin"`
	Ack     time.Time `json:"ack"` // when the cache call returned
	OK      bool      `json:"ok"`  // the cache call returned no error
}

func newVersionedDB(keys []string, faults *loaderFaults) *versionedDB {
	db := &versionedDB{rows: make(map[string]*dbRow, len(keys)), faults: faults}
	for _, k := range keys {
		db.rows[k] = &dbRow{}
	}
	return db
}

// load is the Loader of the soak's namespace.
func (db *versionedDB) load(ctx context.Context, k string) (string, error) {
	db.loads.Add(1)
	if err := db.faults.apply(ctx); err != nil {
		return "", err
	}
	return db.current(k), nil
}

// loadMany is the BatchLoader: one query for the batch.
func (db *versionedDB) loadMany(ctx context.Context, keys []string) (map[string]string, error) {
	db.loads.Add(1)
	if err := db.faults.apply(ctx); err != nil {
		return nil, err
	}
	out := make(map[string]string, len(keys))
	for _, k := range keys {
		out[k] = db.current(k)
	}
	return out, nil
}

// write gives keys new versions in the database, then runs cacheWrite
// (the cache call that follows a database write), and records each key's
// write as acknowledged when it returns. Writers of a key are serialized
// across it, as a row lock would: keys are locked in ascending order.
func (db *versionedDB) write(keys []string, kind, replica string, slot int, cacheWrite func(versions map[string]string) error) error {
	keys = slices.Sorted(slices.Values(keys))
	for _, k := range keys {
		db.rows[k].write.Lock()
	}
	defer func() {
		for _, k := range keys {
			db.rows[k].write.Unlock()
		}
	}()
	begin := time.Now()
	versions := make(map[string]string, len(keys))
	for _, k := range keys {
		r := db.rows[k]
		v := db.next.Add(1)
		r.mu.Lock()
		r.cur = v
		r.mu.Unlock()
		versions[k] = strconv.FormatInt(v, 10)
	}
	err := cacheWrite(versions)
	ack := time.Now()
	for _, k := range keys {
		r := db.rows[k]
		v, _ := strconv.ParseInt(versions[k], 10, 64)
		r.mu.Lock()
		r.done = append(r.done, dbWrite{Version: v, Kind: kind, Replica: replica, Slot: slot, Begin: begin, Ack: ack, OK: err == nil})
		r.mu.Unlock()
	}
	return err
}

// floor is the newest version of k acknowledged before t.
func (db *versionedDB) floor(k string, t time.Time) int64 {
	r := db.rows[k]
	r.mu.Lock()
	defer r.mu.Unlock()
	i := r.acknowledgedBefore(t)
	if i == 0 {
		return 0
	}
	return r.done[i-1].Version
}

// acknowledgedBefore is how many writes were acknowledged before t. r.mu
// must be held.
func (r *dbRow) acknowledgedBefore(t time.Time) int {
	i, _ := slices.BinarySearchFunc(r.done, t, func(w dbWrite, t time.Time) int { return w.Ack.Compare(t) })
	return i
}

// newer returns the writes of k newer than version got and acknowledged
// before t, oldest first, at most limit of them.
func (db *versionedDB) newer(k string, got int64, t time.Time, limit int) []dbWrite {
	r := db.rows[k]
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []dbWrite
	for _, w := range r.done[:r.acknowledgedBefore(t)] {
		if w.Version > got && len(out) < limit {
			out = append(out, w)
		}
	}
	return out
}

// current is k's version in the database now.
func (db *versionedDB) current(k string) string {
	r := db.rows[k]
	r.mu.Lock()
	defer r.mu.Unlock()
	return strconv.FormatInt(r.cur, 10)
}

// writeBehindDB is the database behind the write-behind namespace: Flush
// keeps, per key, the write of the highest Version (idempotent, as
// WriteBehind.Flush must be), and the model remembers each key's
// acknowledged Sets to find the lost ones.
type writeBehindDB struct {
	mu      sync.Mutex
	stored  map[string]tiered.Write[string]
	locks   map[string]*sync.Mutex
	acked   map[string]string   // the last Set of the key that returned no error
	maybe   map[string][]string // Sets after it that returned an error: they may have landed
	flushes atomic.Int64
}

func newWriteBehindDB(keys []string) *writeBehindDB {
	db := &writeBehindDB{stored: map[string]tiered.Write[string]{}, locks: map[string]*sync.Mutex{},
		acked: map[string]string{}, maybe: map[string][]string{}}
	for _, k := range keys {
		db.locks[k] = &sync.Mutex{}
	}
	return db
}

// flush is WriteBehind.Flush.
func (db *writeBehindDB) flush(_ context.Context, batch []tiered.Write[string]) error {
	db.flushes.Add(1)
	db.mu.Lock()
	defer db.mu.Unlock()
	for _, w := range batch {
		if old, ok := db.stored[w.Key]; !ok || w.Version > old.Version {
			db.stored[w.Key] = w
		}
	}
	return nil
}

// set runs one write-behind Set of k (serialized per key, so the last one
// acknowledged is well defined) and records its outcome.
func (db *writeBehindDB) set(k, v string, set func() error) error {
	l := db.locks[k]
	l.Lock()
	defer l.Unlock()
	err := set()
	db.mu.Lock()
	defer db.mu.Unlock()
	if err == nil {
		db.acked[k] = v
		delete(db.maybe, k)
	} else {
		db.maybe[k] = append(db.maybe[k], v)
	}
	return err
}

// lost lists the keys whose database value is neither their last
// acknowledged Set nor a later Set that failed but may have landed.
func (db *writeBehindDB) lost() []string {
	db.mu.Lock()
	defer db.mu.Unlock()
	var out []string
	for k, want := range db.acked {
		got := db.stored[k]
		if got.Value != want && !slices.Contains(db.maybe[k], got.Value) {
			out = append(out, k+": database "+strconv.Quote(got.Value)+", acknowledged "+strconv.Quote(want))
		}
	}
	slices.Sort(out)
	return out
}

// history returns k's acknowledged writes from the one of version from
// (or the first newer) on, at most n.
func (db *versionedDB) history(k string, from int64, n int) []dbWrite {
	r := db.rows[k]
	r.mu.Lock()
	defer r.mu.Unlock()
	i, _ := slices.BinarySearchFunc(r.done, from, func(w dbWrite, v int64) int { return int(w.Version - v) })
	return slices.Clone(r.done[max(0, i-1):min(len(r.done), i+n)])
}
