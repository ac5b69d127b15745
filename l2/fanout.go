package l2

import (
	"context"
	"sync"

	"github.com/redis/go-redis/v9"
)

// A Ring's multi-key operations are split per shard here rather than by
// go-redis's Ring, which starts a goroutine per shard for every pipeline:
// each starts on a small stack and grows it by copying through the deep
// pipeline write and read path, about a seventh of the CPU of a 100-key
// GetMany over 5 shards. Strata already knows each key's shard (shardSet is
// the Ring's router), so it sends each shard's pipeline on that shard's
// client, the last one on the caller's goroutine and the others on
// long-lived workers whose stacks have already grown.

// workers runs functions on long-lived goroutines.
type workers struct {
	tasks chan func()
	done  chan struct{}
	once  sync.Once
	wg    sync.WaitGroup
}

func newWorkers(n int) *workers {
	w := &workers{tasks: make(chan func()), done: make(chan struct{})}
	for range n {
		w.wg.Go(func() {
			for {
				select {
				case fn := <-w.tasks:
					fn()
				case <-w.done:
					return
				}
			}
		})
	}
	return w
}

// run runs fn on an idle worker, or on a new goroutine when none is idle
// (or the pool is closed): it never waits for a worker.
func (w *workers) run(fn func()) {
	select {
	case w.tasks <- fn:
	default:
		go fn()
	}
}

func (w *workers) close() {
	w.once.Do(func() { close(w.done) })
	w.wg.Wait()
}

// pipelined sends n commands in one pipeline per shard, shards in parallel.
// add(p, i) queues the i-th command on p; on a Ring, shard(i) is the index of
// the shard it goes to (from route or tagShard), unused otherwise. Command
// errors are left on the commands for the caller to read.
func (s *Store) pipelined(ctx context.Context, n int, shard func(i int) int, add func(p redis.Pipeliner, i int)) {
	s.perShard(ctx, n, shard, func(p redis.Pipeliner, idx []int32) {
		for _, i := range idx {
			add(p, int(i))
		}
	})
}

// perShard is pipelined with one call per shard: add(p, idx) queues the
// commands for the items idx, all of one shard (of one Ring shard, or all
// items without a Ring).
func (s *Store) perShard(ctx context.Context, n int, shard func(i int) int, add func(p redis.Pipeliner, idx []int32)) {
	if n == 0 {
		return
	}
	if s.topo != shardRing {
		idx := make([]int32, n)
		for i := range idx {
			idx[i] = int32(i)
		}
		_, _ = s.client.Pipelined(ctx, func(p redis.Pipeliner) error {
			add(p, idx)
			return nil
		})
		return
	}
	// A counting sort groups the items: order holds their indices shard
	// after shard, shard j's being order[start[j]:start[j+1]].
	shards := len(s.set.nodes)
	at := make([]int32, n)
	start := make([]int32, shards+1)
	for i := range n {
		at[i] = int32(shard(i))
		start[at[i]+1]++
	}
	for j := range shards {
		start[j+1] += start[j]
	}
	order := make([]int32, n)
	next := append([]int32(nil), start[:shards]...)
	for i, j := range at {
		order[next[j]] = int32(i)
		next[j]++
	}
	send := func(j int) {
		_, _ = s.set.nodes[j].client.Pipelined(ctx, func(p redis.Pipeliner) error {
			add(p, order[start[j]:start[j+1]])
			return nil
		})
	}
	var wg sync.WaitGroup
	last := -1
	for j := range shards {
		if start[j] == start[j+1] {
			continue
		}
		if prev := last; prev >= 0 {
			wg.Add(1)
			s.pool.run(func() { defer wg.Done(); send(prev) })
		}
		last = j
	}
	send(last)
	wg.Wait()
}

// tagShard is the index of the Ring shard holding ns's set of tag, and
// whether that is a stand-in for the set's owner (tag set keys have no
// stand-in names, but they move with the routing).
func (s *Store) tagShard(ns, tag string) (at int, standIn bool) {
	at, standIn, _ = s.set.place(hashTag(s.TagKey(ns, tag)))
	return at, standIn
}
