package l2

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"
)

// The scripts run atomically on the server and touch only keys of one slot.
// go-redis's Script.Run sends EVALSHA and falls back to EVAL on NOSCRIPT.
var (
	// getOrLease: KEYS value, lease; ARGV token, lease ms. Returns
	// {value, 0} when the value exists, else {nil, 1} if the lease was
	// granted to token, {nil, 0} if someone else holds it.
	getOrLeaseScript = redis.NewScript(`
local v = redis.call('GET', KEYS[1])
if v then return {v, 0} end
if redis.call('SET', KEYS[2], ARGV[1], 'NX', 'PX', ARGV[2]) then return {false, 1} end
return {false, 0}`)

	// fill: KEYS value, lease; ARGV token, data, ttl ms. Stores data only
	// while token still holds the lease, then ends the lease. Returns 1 if
	// stored.
	fillScript = redis.NewScript(`
if redis.call('GET', KEYS[2]) ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
redis.call('DEL', KEYS[2])
return 1`)

	// release: KEYS lease; ARGV token. Ends the lease if token holds it.
	releaseScript = redis.NewScript(`
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0`)

	// deleteIf: KEYS value; ARGV data. Deletes the value if it still holds
	// data. Returns 1 if deleted.
	deleteIfScript = redis.NewScript(`
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0`)

	// write: see writeScriptSrc.
	writeScript = redis.NewScript(writeScriptSrc)
)

// writeScriptSrc is the write script's text: KEYS value, lease and
// optionally the namespace's version counter; ARGV data, ttl ms. A write:
// stores data and ends any lease, so a fill of data loaded before the write
// fails. With a third key it returns the version after the write ('0'
// when there is none yet: a nil reply would cost go-redis an error), else 1.
const writeScriptSrc = `
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
redis.call('DEL', KEYS[2])
if KEYS[3] then return redis.call('GET', KEYS[3]) or '0' end
return 1`

// GetOrLease reads key; when it is absent it grants the load lease to token
// for ttl, unless another caller holds it. It returns the value (nil when
// absent) and whether the lease was granted, in one round trip.
func (s *Store) GetOrLease(ctx context.Context, ns, key, token string, ttl time.Duration) ([]byte, bool, error) {
	k := s.Key(ns, key)
	res, err := getOrLeaseScript.Run(ctx, s.client, []string{k, k + leaseSuffix}, token, ms(ttl)).Slice()
	if err != nil {
		return nil, false, err
	}
	if len(res) != 2 {
		return nil, false, fmt.Errorf("l2: lease script returned %d values", len(res))
	}
	granted, _ := res[1].(int64)
	if v, ok := res[0].(string); ok {
		return []byte(v), false, nil
	}
	return nil, granted == 1, nil
}

// TryLease grants key's load lease to token for ttl unless someone holds it.
// Refreshes of a value that is still present use it.
func (s *Store) TryLease(ctx context.Context, ns, key, token string, ttl time.Duration) (bool, error) {
	return s.client.SetNX(ctx, s.LeaseKey(ns, key), token, roundTTL(ttl)).Result()
}

// Fill stores data under key for ttl if token still holds key's lease, and
// ends the lease. It reports whether data was stored: false means a write or
// delete came in between (or the lease expired), and the data must not be
// cached.
func (s *Store) Fill(ctx context.Context, ns, key, token string, data []byte, ttl time.Duration) (bool, error) {
	k, standIn := s.locate(ns, key)
	n, err := fillScript.Run(ctx, s.client, []string{k, k + leaseSuffix}, token, data, ms(s.ttl(standIn, ttl))).Int()
	return n == 1, err
}

// Release ends key's lease if token holds it.
func (s *Store) Release(ctx context.Context, ns, key, token string) error {
	return releaseScript.Run(ctx, s.client, []string{s.LeaseKey(ns, key)}, token).Err()
}

// DeleteIf deletes key if it still holds data, and reports whether it did.
// A reader that found data unreadable removes it this way: a write that
// replaced it meanwhile, and any load lease, stay.
func (s *Store) DeleteIf(ctx context.Context, ns, key string, data []byte) (bool, error) {
	n, err := deleteIfScript.Run(ctx, s.client, []string{s.Key(ns, key)}, data).Int()
	return n == 1, err
}

// WriteSeeing stores data under key for ttl and ends any load lease on key,
// in one atomic step: a loader that read the source before this write
// cannot fill its older data afterwards. On a single node it also reads
// the version of namespace base (ns unversioned, see NamespaceVersion) in
// the same step: a writer learns at no extra cost whether a Clear it has
// not heard of moved the namespace. seen is false where that is not possible (a
// Ring or a Cluster, or base empty): the writer reads NamespaceVersion.
func (s *Store) WriteSeeing(ctx context.Context, ns, key string, data []byte, ttl time.Duration, base string) (version uint64, seen bool, err error) {
	k, standIn := s.locate(ns, key)
	keys := []string{k, k + leaseSuffix}
	if seen = s.topo.oneServer() && base != ""; seen {
		keys = append(keys, s.versionKey(base))
	}
	res, err := writeScript.Run(ctx, s.client, keys, data, ms(s.ttl(standIn, ttl))).Result()
	switch {
	case errors.Is(err, redis.Nil):
		return 0, seen, nil
	case err != nil:
		return 0, false, err
	}
	if str, ok := res.(string); ok && seen {
		if version, err = strconv.ParseUint(str, 10, 64); err != nil {
			return 0, false, fmt.Errorf("l2: namespace version %q: %w", str, err)
		}
	}
	return version, seen, nil
}

func ms(d time.Duration) int64 { return int64(roundTTL(d) / time.Millisecond) }

// GetOrLeaseMany is GetOrLease for several keys in one pipeline per shard,
// shards in parallel. Per key it returns the value (nil
// when absent) and whether the lease was granted to token. Keys whose command
// failed have neither; the error says why.
func (s *Store) GetOrLeaseMany(ctx context.Context, ns string, keys []string, token string, ttl time.Duration) ([][]byte, []bool, error) {
	vals := make([][]byte, len(keys))
	granted := make([]bool, len(keys))
	full, shard := s.routeAll(ns, keys)
	err := s.evalMany(ctx, getOrLeaseScript, len(keys), shard, func(i int) ([]string, []any) {
		return []string{full[i], full[i] + leaseSuffix}, []any{token, ms(ttl)}
	}, func(i int, cmd *redis.Cmd) error {
		res, err := cmd.Slice()
		if err != nil || len(res) != 2 {
			return errors.Join(err, errors.New("l2: malformed lease script reply"))
		}
		if v, ok := res[0].(string); ok {
			vals[i] = []byte(v)
		} else {
			n, _ := res[1].(int64)
			granted[i] = n == 1
		}
		return nil
	})
	return vals, granted, err
}

// Item is one entry for FillMany: a key, its data and how long L2 keeps it.
type Item struct {
	Key  string
	Data []byte
	TTL  time.Duration
}

// FillMany is Fill for several keys leased with one token, in one pipeline.
// It reports per item whether the data was stored.
func (s *Store) FillMany(ctx context.Context, ns, token string, items []Item) ([]bool, error) {
	filled := make([]bool, len(items))
	full, shard, ttl := make([]string, len(items)), make([]int, len(items)), make([]time.Duration, len(items))
	for i, it := range items {
		var standIn bool
		full[i], shard[i], standIn = s.route(ns, it.Key)
		ttl[i] = s.ttl(standIn, it.TTL)
	}
	err := s.evalMany(ctx, fillScript, len(items), func(i int) int { return shard[i] }, func(i int) ([]string, []any) {
		return []string{full[i], full[i] + leaseSuffix}, []any{token, items[i].Data, ms(ttl[i])}
	}, func(i int, cmd *redis.Cmd) error {
		n, err := cmd.Int()
		filled[i] = n == 1
		return err
	})
	return filled, err
}

// ReleaseMany is Release for several keys leased with one token.
func (s *Store) ReleaseMany(ctx context.Context, ns, token string, keys []string) error {
	full, shard := s.routeAll(ns, keys)
	return s.evalMany(ctx, releaseScript, len(keys), shard, func(i int) ([]string, []any) {
		return []string{full[i] + leaseSuffix}, []any{token}
	}, func(int, *redis.Cmd) error { return nil })
}

// evalMany runs script n times, one pipeline per shard (see pipelined for
// shard), with args(i) giving each run's keys and arguments and read(i)
// consuming each reply. Runs answered NOSCRIPT (a shard that has not seen the
// script, or restarted) are sent again with EVAL, which also caches the
// script there.
func (s *Store) evalMany(ctx context.Context, script *redis.Script, n int, shard func(i int) int,
	args func(i int) ([]string, []any), read func(i int, cmd *redis.Cmd) error) error {
	cmds := make([]*redis.Cmd, n)
	s.pipelined(ctx, n, shard, func(p redis.Pipeliner, i int) {
		keys, argv := args(i)
		cmds[i] = script.EvalSha(ctx, p, keys, argv...)
	})
	var retry []int
	for i, cmd := range cmds {
		if err := cmd.Err(); err != nil && redis.HasErrorPrefix(err, "NOSCRIPT") {
			retry = append(retry, i)
		}
	}
	if len(retry) > 0 {
		var retryShard func(int) int
		if shard != nil {
			retryShard = func(j int) int { return shard(retry[j]) }
		}
		s.pipelined(ctx, len(retry), retryShard, func(p redis.Pipeliner, j int) {
			keys, argv := args(retry[j])
			cmds[retry[j]] = script.Eval(ctx, p, keys, argv...)
		})
	}
	var errs []error
	var failed []bool
	for i, cmd := range cmds {
		if err := cmd.Err(); err != nil && !errors.Is(err, redis.Nil) {
			errs, failed = append(errs, err), markFailed(failed, n, i)
			continue
		}
		if err := read(i, cmd); err != nil {
			errs, failed = append(errs, err), markFailed(failed, n, i)
		}
	}
	return partial(failed, errs)
}
