package strata_test

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/strata-cache/strata/internal/redistest"
	"github.com/strata-cache/strata/internal/wbsink"
	"github.com/strata-cache/strata/l2"
	"github.com/strata-cache/strata/tiered"
)

// sinkDelay is what the benchmarks' database takes per call.
const sinkDelay = time.Millisecond

// benchSetWith measures Set on a single Redis with opts: compare
// BenchmarkSetWriteBehind and BenchmarkSetWriteThrough with BenchmarkSet.
func benchSetWith(b *testing.B, opts tiered.Options[*benchUser]) {
	srv := redistest.Start(b)
	ctx := context.Background()
	client, err := tiered.NewClient(ctx, tiered.Config{Redis: l2.Config{Addrs: []string{srv.Addr()}}})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = client.Close() })
	opts.TTL = time.Hour
	cache, err := tiered.NewCache(client, "bench", opts)
	if err != nil {
		b.Fatal(err)
	}
	keys := benchKeyList()
	users := make([]*benchUser, len(keys))
	for i, k := range keys {
		users[i] = &benchUser{ID: i, Name: k, Email: k + "@example.com"}
	}
	run(b, false, func(i int) {
		if err := cache.Set(ctx, keys[i%benchKeys], users[i%benchKeys]); err != nil {
			b.Fatal(err)
		}
	})
}

// BenchmarkSetWriteBehind: a Set that records its write for a database
// taking 1 ms per call, flushed in the background.
func BenchmarkSetWriteBehind(b *testing.B) {
	benchSetWith(b, tiered.Options[*benchUser]{WriteBehind: &tiered.WriteBehind[*benchUser]{
		Flush:      func(context.Context, []tiered.Write[*benchUser]) error { time.Sleep(sinkDelay); return nil },
		MaxPending: 1 << 30, // the benchmark measures the Set, not the sink's pace
	}})
}

// BenchmarkSetWriteThrough: a Set that writes the same database first.
func BenchmarkSetWriteThrough(b *testing.B) {
	benchSetWith(b, tiered.Options[*benchUser]{Writer: func(context.Context, string, *benchUser) error {
		time.Sleep(sinkDelay)
		return nil
	}})
}

// BenchmarkWriteBehindFlush measures the flushers' throughput: b.N writes
// recorded (not timed), then flushed in batches of 100 into a no-op sink;
// it reports writes/s.
func BenchmarkWriteBehindFlush(b *testing.B) {
	benchFlush(b, func(*redistest.Server) func(context.Context, []tiered.Write[[]byte]) error {
		return func(context.Context, []tiered.Write[[]byte]) error { return nil }
	})
}

// BenchmarkWriteBehindFlushRedisSink is BenchmarkWriteBehindFlush into the
// crash test's database (internal/wbsink: a Redis hash on another server,
// one versioned upsert per write, pipelined per batch).
func BenchmarkWriteBehindFlushRedisSink(b *testing.B) {
	benchFlush(b, func(*redistest.Server) func(context.Context, []tiered.Write[[]byte]) error {
		db := redistest.Start(b)
		sink := wbsink.New(db.Client(b), "bench")
		return func(ctx context.Context, ws []tiered.Write[[]byte]) error {
			s := make([]tiered.Write[string], len(ws))
			for i, w := range ws {
				s[i] = tiered.Write[string]{Key: w.Key, Value: string(w.Value), Deleted: w.Deleted, Version: w.Version, At: w.At}
			}
			return sink.Flush(ctx, s)
		}
	})
}

func benchFlush(b *testing.B, sinkOf func(*redistest.Server) func(context.Context, []tiered.Write[[]byte]) error) {
	srv := redistest.Start(b)
	sink := sinkOf(srv)
	ctx := context.Background()
	client, err := tiered.NewClient(ctx, tiered.Config{Redis: l2.Config{Addrs: []string{srv.Addr()}}})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = client.Close() })
	var flushed atomic.Int64
	var open atomic.Bool
	gate := make(chan struct{})
	cache, err := tiered.NewCache(client, "bench", tiered.Options[[]byte]{TTL: time.Hour, WriteBehind: &tiered.WriteBehind[[]byte]{
		Flush: func(ctx context.Context, ws []tiered.Write[[]byte]) error {
			if !open.Load() {
				<-gate
			}
			if err := sink(ctx, ws); err != nil {
				return err
			}
			flushed.Add(int64(len(ws)))
			return nil
		},
		BatchSize: 100, MaxPending: 1 << 30, Interval: time.Millisecond,
	}})
	if err != nil {
		b.Fatal(err)
	}
	keys := make([]string, b.N)
	for i := range keys {
		keys[i] = "k" + string(rune('a'+i%26)) + time.Duration(i).String()
	}
	if err := cache.Set(ctx, "warm", []byte("v")); err != nil { // holds the flusher at the gate
		b.Fatal(err)
	}
	for _, k := range keys {
		if err := cache.Set(ctx, k, []byte("v")); err != nil {
			b.Fatal(err)
		}
	}
	b.ResetTimer()
	start := time.Now()
	open.Store(true)
	close(gate)
	for flushed.Load() < int64(b.N)+1 {
		time.Sleep(100 * time.Microsecond) // polling the flushed count
	}
	b.StopTimer()
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "writes/s")
}
