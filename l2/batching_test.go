package l2_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/strata-cache/strata/internal/redistest"
	"github.com/strata-cache/strata/l2"
)

// pipelineCounter counts the pipelines and the commands one shard receives.
type pipelineCounter struct {
	mu              sync.Mutex
	pipelines, cmds int
	single          int
}

func (p *pipelineCounter) DialHook(next redis.DialHook) redis.DialHook { return next }
func (p *pipelineCounter) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		p.mu.Lock()
		p.single++
		p.mu.Unlock()
		return next(ctx, cmd)
	}
}
func (p *pipelineCounter) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		p.mu.Lock()
		p.pipelines++
		p.cmds += len(cmds)
		p.mu.Unlock()
		return next(ctx, cmds)
	}
}

// Multi-key operations send one pipeline to each shard (shards in parallel),
// never a command per key on its own; GetMany sends one MGET per shard.
func TestBatchingIsOnePipelinePerShard(t *testing.T) {
	ctx := context.Background()
	var addrs []string
	for _, s := range redistest.StartShards(t, 3) {
		addrs = append(addrs, s.Addr())
	}
	store := openStore(t, l2.Config{Addrs: addrs})
	ring := store.Client().(*redis.Ring)
	counters := map[string]*pipelineCounter{}
	for _, c := range ring.GetShardClients() {
		counters[c.Options().Addr] = &pipelineCounter{}
		c.AddHook(counters[c.Options().Addr])
	}
	keys := make([]string, 100)
	items := make([]l2.Item, len(keys))
	tags := make([]string, 30)
	for i := range keys {
		keys[i] = fmt.Sprint("k", i)
		items[i] = l2.Item{Key: keys[i], Data: []byte("v"), TTL: time.Minute}
	}
	for i := range tags {
		tags[i] = fmt.Sprint("t", i)
	}
	ops := []struct {
		name string
		n    int // commands per key or tag
		run  func() error
	}{
		{"SetMany", len(keys), func() error { return store.SetMany(ctx, "ns", items) }},
		{"GetMany", 3, func() error { _, err := store.GetMany(ctx, "ns", keys); return err }}, // one MGET per shard
		{"Delete", len(keys), func() error { return store.Delete(ctx, "ns", keys...) }},
		{"PopTags", len(tags), func() error { _, err := store.PopTags(ctx, "ns", tags); return err }},
		{"ExpireTags", 2 * len(tags), func() error { return store.ExpireTags(ctx, "ns", tags, time.Minute) }}, // the set and its popping set
	}
	// Warm the connections (opening one sends its own handshake commands)
	// and load the scripts (a first EVALSHA is answered NOSCRIPT and resent).
	if _, err := store.GetMany(ctx, "ns", keys); err != nil {
		t.Fatal(err)
	}
	if _, err := store.PopTags(ctx, "ns", tags); err != nil {
		t.Fatal(err)
	}
	for _, op := range ops {
		for _, c := range counters {
			*c = pipelineCounter{}
		}
		if err := op.run(); err != nil {
			t.Fatalf("%s: %v", op.name, err)
		}
		total := 0
		for addr, c := range counters {
			if c.pipelines != 1 || c.single != 0 {
				t.Errorf("%s: shard %s got %d pipelines and %d single commands, want one pipeline", op.name, addr, c.pipelines, c.single)
			}
			total += c.cmds
		}
		if total != op.n {
			t.Errorf("%s: %d commands in the pipelines, want %d", op.name, total, op.n)
		}
	}
}
