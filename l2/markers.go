package l2

import (
	"context"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
)

// A Ring's replicas agree about which shards serve through two kinds of key
// on the serving shards: the routing epoch (epochKey), raised by the
// replica that opens an outage, and out markers (outKey), kept by each
// replica for the shards it cannot reach.

// markScript: KEYS markers; ARGV id, ttl in ms. Sets this replica's marker
// in each, to expire ttl from now in the server's clock, and keeps the key
// at least that long: never shorter, since replicas with other health
// settings hold longer markers in the same key.
var markScript = redis.NewScript(`
local t = redis.call('TIME')
local now = t[1] * 1000 + math.floor(t[2] / 1000)
local ttl = tonumber(ARGV[2])
for _, k in ipairs(KEYS) do
  if redis.call('TYPE', k).ok ~= 'string' then
    redis.call('HSET', k, ARGV[1], now + ttl)
    if redis.call('PTTL', k) < ttl then redis.call('PEXPIRE', k, ttl) end
  end
end
return 1`)

// liveScript: KEYS markers. For each, 1 if some replica's marker in it is
// live, else 0; lapsed markers are removed.
var liveScript = redis.NewScript(`
local t = redis.call('TIME')
local now = t[1] * 1000 + math.floor(t[2] / 1000)
local out = {}
for i, k in ipairs(KEYS) do
  local typ = redis.call('TYPE', k).ok
  out[i] = 0
  if typ == 'string' then
    out[i] = 1
  elseif typ == 'hash' then
    local kv = redis.call('HGETALL', k)
    for j = 1, #kv, 2 do
      if tonumber(kv[j + 1]) > now then out[i] = 1 else redis.call('HDEL', k, kv[j]) end
    end
  end
end
return out`)

// unmarkScript: KEYS markers; ARGV id. Removes this replica's marker from
// each: other replicas' stay.
var unmarkScript = redis.NewScript(`
for _, k in ipairs(KEYS) do
  if redis.call('TYPE', k).ok == 'hash' then redis.call('HDEL', k, ARGV[1]) end
end
return 1`)

// outMarkerTTL is how long a marker outlives the last round that set it.
func (h *watch) outMarkerTTL() time.Duration { return max(time.Second, 4*h.interval+2*h.timeout) }

// setMaxScript: KEYS epoch; ARGV n. Raises the epoch to n, never lowers it.
var setMaxScript = redis.NewScript(`
local cur = tonumber(redis.call('GET', KEYS[1]) or '0')
if cur < tonumber(ARGV[1]) then redis.call('SET', KEYS[1], ARGV[1]) end
return 1`)

// holdOut refreshes this replica's out markers for the shards it cannot
// reach, and removes its markers for shards it reaches again, on every
// serving shard.
func (h *watch) holdOut(ctx context.Context, markers, reached []string, epoch uint64) {
	ttl := h.outMarkerTTL()
	parent := ctx
	for _, n := range h.nodes {
		if !n.serving() {
			continue
		}
		ctx, cancel := context.WithTimeout(parent, h.timeout)
		_, _ = n.admin.Pipelined(ctx, func(p redis.Pipeliner) error {
			if len(markers) > 0 {
				// The epoch first: a replica that sees the marker must not
				// route to stand-in keys of an earlier outage.
				setMaxScript.Eval(ctx, p, []string{h.epochKey}, epoch)
				markScript.Eval(ctx, p, markers, h.id, ttl.Milliseconds())
			}
			if len(reached) > 0 {
				unmarkScript.Eval(ctx, p, reached, h.id)
			}
			return nil
		})
		cancel()
	}
}

// stamp raises n's epoch to e.
func (h *watch) stamp(n *node, e uint64) error {
	ctx, cancel := context.WithTimeout(h.ctx, h.timeout)
	defer cancel()
	return setMaxScript.Run(ctx, n.admin, []string{h.epochKey}, e).Err()
}

// stampAll raises the epoch of the servers to e, in the background: fencing
// happens on callers' write paths and under the invalidation bus's lock, so
// it does not wait for them.
func (h *watch) stampAll(servers []int, e uint64) {
	if h.closed {
		return
	}
	h.wg.Go(func() {
		var wg sync.WaitGroup
		for _, i := range servers {
			wg.Go(func() { _ = h.stamp(h.nodes[i], e) })
		}
		wg.Wait()
	})
}

// markerKeys returns the out marker keys of the servers.
func (h *watch) markerKeys(servers []int) []string {
	var keys []string
	for _, i := range servers {
		keys = append(keys, outKey(h.prefix, h.nodes[i].name))
	}
	return keys
}
