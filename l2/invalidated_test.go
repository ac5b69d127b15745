package l2

import (
	"context"
	"testing"

	"github.com/redis/go-redis/v9"
)

// Which failed commands leave a server to be flushed before it serves
// again: those whose invalidation covers keys the command does not name.
func TestInvalidatedCoversTagPopsAndClears(t *testing.T) {
	ctx := context.Background()
	for _, c := range []struct {
		name string
		cmd  redis.Cmder
		all  bool
	}{
		{"tag pop", redis.NewCmd(ctx, "evalsha", popTagScript.Hash(), 1, "strata:ns#tag:{t}"), true},
		{"tag pop, by source", redis.NewCmd(ctx, "eval", popTagSrc, 1, "strata:ns#tag:{t}"), true},
		{"tag fence", redis.NewCmd(ctx, "evalsha", advanceScript.Hash(), 1, "strata:ns#tagfence"), true},
		{"version bump, single node", redis.NewCmd(ctx, "incr", "strata:ns#version"), true},
		{"version bump, shard", redis.NewCmd(ctx, "evalsha", setMaxScript.Hash(), 1, "strata:ns#version", 7), true},
		{"routing epoch", redis.NewCmd(ctx, "evalsha", setMaxScript.Hash(), 1, "strata#epoch", 7), false},
		{"another incr", redis.NewCmd(ctx, "incr", "counter"), false},
	} {
		if keys, all := invalidated(c.cmd, ErrUnavailable); all != c.all || len(keys) != 0 {
			t.Errorf("%s: keys %v, all %v; want all %v", c.name, keys, all, c.all)
		}
		// Answered with an error reply, it ran nothing: no flush.
		if _, all := invalidated(c.cmd, replyError("WRONGTYPE Operation against a key holding the wrong kind of value")); all {
			t.Errorf("%s failed by an error reply: a flush asked for", c.name)
		}
	}
}

// replyError is an error reply, as go-redis reports one.
type replyError string

func (e replyError) Error() string { return string(e) }
func (replyError) RedisError()     {}
