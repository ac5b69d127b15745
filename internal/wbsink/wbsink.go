// Package wbsink is a database for write-behind tests: a Redis hash that
// keeps each key's newest version, as an idempotent Flush should, and
// counts every delivery so duplicates can be reported.
package wbsink

import (
	"context"
	"fmt"
	"strconv"

	"github.com/redis/go-redis/v9"

	"github.com/strata-cache/strata/tiered"
)

// Sink is one namespace's table.
type Sink struct {
	rdb              *redis.Client
	vals, vers, seen string
}

// New returns the sink of namespace ns in rdb.
func New(rdb *redis.Client, ns string) *Sink {
	p := "sink:" + ns
	return &Sink{rdb: rdb, vals: p + ":vals", vers: p + ":vers", seen: p + ":seen"}
}

// upsert applies a write unless a newer version is stored (versions padded
// to 20 digits compare as strings), and counts its delivery.
var upsert = redis.NewScript(`
redis.call('HINCRBY', KEYS[3], ARGV[1] .. '@' .. ARGV[2], 1)
local cur = redis.call('HGET', KEYS[2], ARGV[1])
if cur and cur >= ARGV[2] then return 0 end
redis.call('HSET', KEYS[2], ARGV[1], ARGV[2])
if ARGV[4] == '1' then redis.call('HDEL', KEYS[1], ARGV[1]) else redis.call('HSET', KEYS[1], ARGV[1], ARGV[3]) end
return 1`)

// Flush is a WriteBehind.Flush.
func (s *Sink) Flush(ctx context.Context, ws []tiered.Write[string]) error {
	_, err := s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for _, w := range ws {
			d := "0"
			if w.Deleted {
				d = "1"
			}
			upsert.Eval(ctx, p, []string{s.vals, s.vers, s.seen}, w.Key, fmt.Sprintf("%020d", w.Version), w.Value, d)
		}
		return nil
	})
	return err
}

// Values returns the stored values by key.
func (s *Sink) Values(ctx context.Context) (map[string]string, error) {
	return s.rdb.HGetAll(ctx, s.vals).Result()
}

// Deliveries returns how many writes were delivered, and how many of those
// were deliveries of a write delivered before.
func (s *Sink) Deliveries(ctx context.Context) (total, duplicates int, err error) {
	m, err := s.rdb.HGetAll(ctx, s.seen).Result()
	if err != nil {
		return 0, 0, err
	}
	for _, v := range m {
		n, _ := strconv.Atoi(v)
		total += n
		duplicates += n - 1
	}
	return total, duplicates, nil
}
