package l2

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"
)

// Lease keys sit beside their value key, in its hash slot: Key(ns, k)+":lease".
// A value key always ends in '}', a lease key never does, so they cannot
// collide.
const leaseSuffix = ":lease"

// LeaseKey returns the Redis key of key's load lease.
func (s *Store) LeaseKey(ns, key string) string { return s.Key(ns, key) + leaseSuffix }

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

	// write: KEYS value, lease; ARGV data, ttl ms. A write: stores data and
	// ends any lease, so a fill of data loaded before the write fails.
	writeScript = redis.NewScript(`
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
redis.call('DEL', KEYS[2])
return 1`)
)

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
	k := s.Key(ns, key)
	n, err := fillScript.Run(ctx, s.client, []string{k, k + leaseSuffix}, token, data, ms(ttl)).Int()
	return n == 1, err
}

// Release ends key's lease if token holds it.
func (s *Store) Release(ctx context.Context, ns, key, token string) error {
	return releaseScript.Run(ctx, s.client, []string{s.LeaseKey(ns, key)}, token).Err()
}

// Write stores data under key for ttl and ends any load lease on key, in one
// atomic step: a loader that read the source before this write cannot fill
// its older data afterwards.
func (s *Store) Write(ctx context.Context, ns, key string, data []byte, ttl time.Duration) error {
	k := s.Key(ns, key)
	err := writeScript.Run(ctx, s.client, []string{k, k + leaseSuffix}, data, ms(ttl)).Err()
	if errors.Is(err, redis.Nil) {
		return nil
	}
	return err
}

func ms(d time.Duration) int64 { return int64(roundTTL(d) / time.Millisecond) }
