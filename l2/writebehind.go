package l2

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// Write-behind streams. A namespace's writes waiting for the database are
// entries of a Redis Stream, appended with the L2 write they belong to and
// removed once flushed:
//
//	P:ns#writes        the pending writes (fields k, v, d, t; ver when redriven)
//	P:ns#writes:dead   those given up after too many failed flushes
//	P:ns#writes:lock   the flush lock (the replica flushing the stream now)
//
// On a single node there is one stream, and the append and the write are
// one script: atomic. On a Ring every shard has its own stream under the
// same name, holding the writes of the keys it serves, appended atomically
// with them too; a key served by a stand-in shard during an outage has its
// writes in the stand-in's stream meanwhile, so two streams may hold writes
// of one key: their versions order them. On a Redis Cluster (and with a
// caller's own Ring or Cluster client) the namespace has one stream, in its
// own slot: the record is appended first, then the value written; see
// pipelinedAppend.
// None of these keys has a hash tag, so no flush or pattern deletion of
// data keys removes them.

const (
	writesSuffix = "#writes"
	deadSuffix   = ":dead"
	lockSuffix   = ":lock"
)

// ErrBackpressure is returned by WriteAppend and DeleteAppend when the
// write's stream already holds the most entries allowed: nothing was
// written.
var ErrBackpressure = errors.New("l2: write-behind stream full")

// backpressureReply starts the scripts' error reply for a full stream.
const backpressureReply = "STRATAFULL"

// Record is one write in a write-behind stream.
type Record struct {
	Key string
	// Payload is the encoded value; nil for a delete (Deleted).
	Payload []byte
	Deleted bool
	// Version orders the writes recorded in one stream: Redis assigns it,
	// from the entry's ID (its server's time in ms and a sequence), so a
	// write recorded after another has a larger one, whichever replica
	// made them. An entry redriven from the dead letters keeps its first
	// version. Across streams (a Ring key on a stand-in shard during an
	// outage) versions follow the servers' clocks. Zero when appending.
	Version uint64
	// At is when the write was made (Unix ns, the writer's clock).
	At int64
}

// args appends r as XADD field/value pairs (the version only when it
// carries one over: a redriven entry).
func (r *Record) args(a []any) []any {
	d := "0"
	if r.Deleted {
		d = "1"
	}
	a = append(a, "k", r.Key, "v", r.Payload, "d", d, "t", strconv.FormatInt(r.At, 10))
	if r.Version != 0 {
		a = append(a, "ver", strconv.FormatUint(r.Version, 10))
	}
	return a
}

// idVersion is the version of the entry with ID id ("ms-seq").
func idVersion(id string) (uint64, error) {
	ms, seq, ok := strings.Cut(id, "-")
	m, err1 := strconv.ParseUint(ms, 10, 64)
	q, err2 := strconv.ParseUint(seq, 10, 64)
	if !ok || err1 != nil || err2 != nil || q >= 1<<20 || m >= 1<<43 {
		return 0, fmt.Errorf("l2: write-behind entry ID %q out of range", id)
	}
	return m<<20 | q, nil
}

// parseRecord reads the fields of the stream entry id back.
func parseRecord(id string, values map[string]any) (Record, error) {
	str := func(f string) string { s, _ := values[f].(string); return s }
	r := Record{Key: str("k"), Deleted: str("d") == "1"}
	var err1, err2 error
	if v, ok := values["ver"].(string); ok {
		r.Version, err1 = strconv.ParseUint(v, 10, 64)
	} else {
		r.Version, err1 = idVersion(id)
	}
	r.At, err2 = strconv.ParseInt(str("t"), 10, 64)
	if _, ok := values["k"].(string); !ok || err1 != nil || err2 != nil {
		return Record{}, fmt.Errorf("l2: malformed write-behind entry %s %v", id, values)
	}
	if !r.Deleted {
		r.Payload = []byte(str("v"))
	}
	return r, nil
}

// appendScriptSrc writes a key and appends its record to the stream, or
// refuses both when the stream is full. KEYS value, lease, stream and
// optionally the namespace's version counter; ARGV data, ttl ms (0 deletes
// the key instead), the stream's bound (0: none), then the record's fields.
// It returns what the write script returns.
const appendScriptSrc = `
local bound = tonumber(ARGV[3])
if bound > 0 and redis.call('XLEN', KEYS[3]) >= bound then
  return redis.error_reply('` + backpressureReply + ` write-behind stream full')
end
redis.call('XADD', KEYS[3], '*', unpack(ARGV, 4))
if ARGV[2] == '0' then
  redis.call('DEL', KEYS[1], KEYS[2])
else
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  redis.call('DEL', KEYS[2])
end
if KEYS[4] then return redis.call('GET', KEYS[4]) or '0' end
return 1`

// xaddScriptSrc appends a record to a stream unless it is full: KEYS
// stream; ARGV the bound (0: none), then the record's fields.
const xaddScriptSrc = `
local bound = tonumber(ARGV[1])
if bound > 0 and redis.call('XLEN', KEYS[1]) >= bound then
  return redis.error_reply('` + backpressureReply + ` write-behind stream full')
end
redis.call('XADD', KEYS[1], '*', unpack(ARGV, 2))
return 1`

var (
	appendScript = redis.NewScript(appendScriptSrc)
	xaddScript   = redis.NewScript(xaddScriptSrc)
)

// StreamKey returns the Redis key of namespace ns's write-behind stream.
func (s *Store) StreamKey(ns string) string { return s.prefix + ":" + ns + writesSuffix }

// atomicAppend reports whether a write and its record go in one script.
func (s *Store) atomicAppend() bool { return s.topo.oneServer() || s.topo == shardRing }

// WriteAppend is WriteSeeing that also appends rec (a write of key in
// namespace base, ns being its versioned name) to base's write-behind
// stream, unless the stream holds bound entries already (then it returns
// ErrBackpressure and writes nothing). It returns only once Redis has
// acknowledged both.
//
// On a single node or a Ring shard the two are one atomic step. Elsewhere
// the record goes first, then the write (see pipelinedAppend).
func (s *Store) WriteAppend(ctx context.Context, ns, key string, data []byte, ttl time.Duration, base string, rec Record, bound int) (version uint64, seen bool, err error) {
	return s.appendWrite(ctx, ns, key, data, ttl, base, rec, bound)
}

// DeleteAppend deletes key (and its lease) and appends its tombstone rec to
// base's stream, as WriteAppend does for a write.
func (s *Store) DeleteAppend(ctx context.Context, ns, key, base string, rec Record, bound int) error {
	_, _, err := s.appendWrite(ctx, ns, key, nil, 0, base, rec, bound)
	return err
}

func (s *Store) appendWrite(ctx context.Context, ns, key string, data []byte, ttl time.Duration, base string, rec Record, bound int) (version uint64, seen bool, err error) {
	k, at, standIn := s.route(ns, key)
	ttlMS := int64(0)
	if data != nil {
		ttlMS = ms(s.ttl(standIn, ttl))
	}
	if !s.atomicAppend() {
		return s.pipelinedAppend(ctx, k, data, ttlMS, base, rec, bound)
	}
	keys := []string{k, k + leaseSuffix, s.StreamKey(base)}
	if seen = s.topo.oneServer() && base != "" && data != nil; seen {
		keys = append(keys, s.versionKey(base))
	}
	args := rec.args([]any{data, ttlMS, bound})
	var c redis.Scripter = s.client
	if s.topo == shardRing {
		c = s.set.nodes[at].client
	}
	res, err := appendScript.Run(ctx, c, keys, args...).Result()
	if err != nil {
		return 0, false, appendError(err)
	}
	if str, ok := res.(string); ok && seen {
		if version, err = strconv.ParseUint(str, 10, 64); err != nil {
			return 0, false, fmt.Errorf("l2: namespace version %q: %w", str, err)
		}
	}
	return version, seen, nil
}

// pipelinedAppend is appendWrite where the stream and the key are in
// different slots (a Cluster, a caller's Ring or Cluster client): the
// record first, the write once it is in (two round trips). A full stream
// refuses the write before anything is written; a write that fails after
// its record leaves the record, which the database then receives (a write
// reported failed may be flushed: at least once).
func (s *Store) pipelinedAppend(ctx context.Context, k string, data []byte, ttlMS int64, base string, rec Record, bound int) (uint64, bool, error) {
	if err := xaddScript.Run(ctx, s.client, []string{s.StreamKey(base)}, rec.args([]any{bound})...).Err(); err != nil {
		return 0, false, appendError(err)
	}
	var err error
	if data == nil {
		err = s.client.Del(ctx, k, k+leaseSuffix).Err()
	} else {
		err = writeScript.Run(ctx, s.client, []string{k, k + leaseSuffix}, data, ttlMS).Err()
	}
	if err != nil && !errors.Is(err, redis.Nil) {
		return 0, false, err
	}
	return 0, false, nil
}

// appendError maps a full stream's reply to ErrBackpressure.
func appendError(err error) error {
	if err != nil && strings.HasPrefix(err.Error(), backpressureReply) {
		return ErrBackpressure
	}
	return err
}

// Stream is one write-behind stream of a namespace on one server.
type Stream struct {
	// Server names the server that holds it: a Ring shard's address, or a
	// single node's (a *redis.Client, Strata's or the caller's); empty for
	// a Redis Cluster and a caller's Ring or ClusterClient.
	Server string
	c      redis.UniversalClient
	key    string
}

// Streams returns namespace ns's write-behind streams: one per Ring shard,
// one otherwise.
func (s *Store) Streams(ns string) []Stream {
	key := s.StreamKey(ns)
	if s.topo == shardRing {
		out := make([]Stream, len(s.set.nodes))
		for i, n := range s.set.nodes {
			out[i] = Stream{Server: n.addr, c: n.client, key: key}
		}
		return out
	}
	server := ""
	if c, ok := s.client.(*redis.Client); ok {
		server = c.Options().Addr
	}
	return []Stream{{Server: server, c: s.client, key: key}}
}

// Entry is a stream entry: its ID and its record (or why it could not be
// read, for an entry that was not written by Strata).
type Entry struct {
	ID     string
	Record Record
	Err    error
	raw    map[string]any // the fields as stored, kept whole in a dead letter
}

func entries(msgs []redis.XMessage) []Entry {
	out := make([]Entry, len(msgs))
	for i, m := range msgs {
		out[i] = entryOf(m.ID, m.Values)
	}
	return out
}

func entryOf(id string, values map[string]any) Entry {
	e := Entry{ID: id, raw: values}
	e.Record, e.Err = parseRecord(id, values)
	return e
}

// EnsureGroup creates the consumer group on st, reading from its start, if
// it does not exist yet (and the stream with it).
func (st Stream) EnsureGroup(ctx context.Context, group string) error {
	err := st.c.XGroupCreateMkStream(ctx, st.key, group, "0").Err()
	if err != nil && strings.HasPrefix(err.Error(), "BUSYGROUP") {
		return nil
	}
	return err
}

// Read returns up to count entries for consumer: its own pending ones (read
// before, not acknowledged) with own, else new ones.
func (st Stream) Read(ctx context.Context, group, consumer string, count int, own bool) ([]Entry, error) {
	id := ">"
	if own {
		id = "0"
	}
	res, err := st.c.XReadGroup(ctx, &redis.XReadGroupArgs{Group: group, Consumer: consumer, Streams: []string{st.key, id}, Count: int64(count), Block: -1}).Result()
	if errors.Is(err, redis.Nil) || err == nil && len(res) == 0 {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	return entries(res[0].Messages), nil
}

// Claim takes over, for consumer, up to count entries other consumers read
// but did not acknowledge for at least minIdle (XAUTOCLAIM from start), and
// returns them, the cursor for the next call ("0-0" when the scan is
// complete), and the IDs of entries deleted while pending: lost, which
// Strata's trimming never does, so any is reported. It reads the raw reply:
// go-redis's typed command drops that third element.
func (st Stream) Claim(ctx context.Context, group, consumer string, minIdle time.Duration, start string, count int) (claimed []Entry, next string, deleted []string, err error) {
	res, err := st.c.Do(ctx, "XAUTOCLAIM", st.key, group, consumer, minIdle.Milliseconds(), start, "COUNT", count).Slice()
	if err != nil {
		return nil, "", nil, err
	}
	if len(res) < 2 {
		return nil, "", nil, fmt.Errorf("l2: XAUTOCLAIM reply %v", res)
	}
	next, _ = res[0].(string)
	msgs, _ := res[1].([]any)
	for _, m := range msgs {
		pair, ok := m.([]any)
		if !ok || len(pair) != 2 {
			continue // an entry deleted meanwhile: reported below on 7.0
		}
		id, _ := pair[0].(string)
		fields, _ := pair[1].([]any)
		values := make(map[string]any, len(fields)/2)
		for i := 0; i+1 < len(fields); i += 2 {
			f, _ := fields[i].(string)
			values[f] = fields[i+1]
		}
		claimed = append(claimed, entryOf(id, values))
	}
	if len(res) > 2 {
		ids, _ := res[2].([]any)
		for _, id := range ids {
			if s, ok := id.(string); ok {
				deleted = append(deleted, s)
			}
		}
	}
	return claimed, next, deleted, nil
}

// Done acknowledges ids and deletes them from the stream, in one
// transaction.
func (st Stream) Done(ctx context.Context, group string, ids []string) error {
	if len(ids) == 0 {
		return nil
	}
	_, err := st.c.TxPipelined(ctx, func(p redis.Pipeliner) error {
		p.XAck(ctx, st.key, group, ids...)
		p.XDel(ctx, st.key, ids...)
		return nil
	})
	return err
}

// Bury moves entries to the dead-letter stream, each with its fields as
// stored (its version carried over when it has one) and the reason it was
// given up, then acknowledges and deletes them from the stream. The two
// streams may be in different slots, so this is two steps: an entry both
// buried and still pending (a crash in between) is flushed or buried
// again, never lost.
func (st Stream) Bury(ctx context.Context, group string, es []Entry, reason string) error {
	if len(es) == 0 {
		return nil
	}
	ids := make([]string, len(es))
	_, err := st.c.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i, e := range es {
			ids[i] = e.ID
			values := make([]any, 0, 2*len(e.raw)+6)
			for f, v := range e.raw {
				if f != "id" && f != "error" {
					values = append(values, f, v)
				}
			}
			if _, ok := e.raw["ver"]; !ok && e.Err == nil {
				values = append(values, "ver", strconv.FormatUint(e.Record.Version, 10))
			}
			p.XAdd(ctx, &redis.XAddArgs{Stream: st.key + deadSuffix, Values: append(values, "id", e.ID, "error", reason)})
		}
		return nil
	})
	if err != nil {
		return err
	}
	return st.Done(ctx, group, ids)
}

// Dead returns the dead-letter entries, oldest first, with the reason each
// was given up.
func (st Stream) Dead(ctx context.Context) ([]Entry, []string, error) {
	msgs, err := st.c.XRange(ctx, st.key+deadSuffix, "-", "+").Result()
	if err != nil {
		return nil, nil, err
	}
	reasons := make([]string, len(msgs))
	out := make([]Entry, len(msgs))
	for i, m := range msgs {
		reasons[i], _ = m.Values["error"].(string)
		delete(m.Values, "error")
		delete(m.Values, "id")
		out[i] = entryOf(m.ID, m.Values)
	}
	return out, reasons, nil
}

// Redrive appends the dead-letter entries back to the stream, as new
// entries keeping their versions, and removes them from the dead-letter
// stream. Entries that cannot be read as writes stay. It returns how many
// it moved.
func (st Stream) Redrive(ctx context.Context) (int, error) {
	es, _, err := st.Dead(ctx)
	if err != nil {
		return 0, err
	}
	moved := 0
	for _, e := range es {
		if e.Err != nil {
			continue // not Strata's: left for an operator
		}
		// Appended again first, then removed: the two streams may be in
		// different slots; a crash in between redrives it twice.
		if err := st.c.XAdd(ctx, &redis.XAddArgs{Stream: st.key, Values: e.Record.args(nil)}).Err(); err != nil {
			return moved, err
		}
		if err := st.c.XDel(ctx, st.key+deadSuffix, e.ID).Err(); err != nil {
			return moved, err
		}
		moved++
	}
	return moved, nil
}

// Backlog is how many entries wait in the stream (unflushed, read or not)
// and how many of them group has read but not acknowledged.
func (st Stream) Backlog(ctx context.Context, group string) (pending, inFlight int64, err error) {
	var xlen *redis.IntCmd
	var xp *redis.XPendingCmd
	_, err = st.c.Pipelined(ctx, func(p redis.Pipeliner) error {
		xlen = p.XLen(ctx, st.key)
		xp = p.XPending(ctx, st.key, group)
		return nil
	})
	if err != nil && !strings.HasPrefix(err.Error(), "NOGROUP") {
		return 0, 0, err
	}
	if xp.Err() == nil {
		inFlight = xp.Val().Count
	}
	return xlen.Val(), inFlight, nil
}

// Lock outcomes.
const (
	LockRefused = 0 // another holder has it
	LockKept    = 1 // holder had it and keeps it for ttl more
	LockTaken   = 2 // holder did not have it and has it now
)

// Lock takes or keeps the stream's flush lock for holder, for ttl: only
// its holder reads and flushes the stream, so the writes of a key are
// flushed in order. It returns LockRefused, LockKept or LockTaken.
func (st Stream) Lock(ctx context.Context, holder string, ttl time.Duration) (int, error) {
	return lockScript.Run(ctx, st.c, []string{st.key + lockSuffix}, holder, ttl.Milliseconds()).Int()
}

// Unlock releases holder's flush lock, if it holds it.
func (st Stream) Unlock(ctx context.Context, holder string) error {
	return unlockScript.Run(ctx, st.c, []string{st.key + lockSuffix}, holder).Err()
}

var (
	lockScript = redis.NewScript(`
local h = redis.call('GET', KEYS[1])
if h == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return 1
end
if not h then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return 2
end
return 0`)
	unlockScript = redis.NewScript(`
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0`)
)

// StreamsSupported checks that every server of the store runs Redis 6.2 or
// later, which write-behind needs (XAUTOCLAIM).
func (s *Store) StreamsSupported(ctx context.Context) error {
	for _, st := range s.Streams("") {
		info, err := st.c.Info(ctx, "server").Result()
		if err != nil {
			return err
		}
		if err := streamsVersion(infoField(info, "redis_version")); err != nil {
			return fmt.Errorf("%w (%s)", err, st.Server)
		}
	}
	return nil
}

// streamsVersion checks that Redis version v has XAUTOCLAIM (6.2).
func streamsVersion(v string) error {
	var major, minor int
	if _, err := fmt.Sscanf(v, "%d.%d", &major, &minor); err != nil {
		return fmt.Errorf("l2: Redis version %q: %w", v, err)
	}
	if major < 6 || major == 6 && minor < 2 {
		return fmt.Errorf("l2: write-behind needs Redis 6.2 or later (XAUTOCLAIM); the server runs %s", v)
	}
	return nil
}
