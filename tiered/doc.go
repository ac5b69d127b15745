// Package tiered is Strata's public API: a two-tier cache for a service that
// runs several replicas. Each replica keeps decoded values in an in-process
// L1 (ristretto) over a shared L2 in Redis, with the caller's loader behind
// both; writes and invalidations on one replica reach the L1 of every other.
//
// # The types and how they fit
//
// A [Client] is one per process. It owns the Redis connections (configured
// by [Config].Redis, an [l2.Config]), the invalidation channels (Redis
// pub/sub whenever L2 is configured and, with [Config].Gossip, memberlist
// gossip) and the background work. [NewClient] makes it; [Client.Close]
// ends it.
//
// A [Cache] is one namespace of values of one type V on a Client, made by
// [NewCache] with its [Options]: TTLs, stale windows, tags, codec, L1 size,
// write-through ([Options].Writer) or write-behind ([WriteBehind]). Caches
// with the same namespace on different replicas share L2 entries and
// invalidate each other's L1.
//
// A [Loader] (or a [BatchLoader] for [Cache.GetMany]) reads the source of
// truth on a miss and returns [ErrNotFound] for "no such record".
//
//	client, err := tiered.NewClient(ctx, tiered.Config{
//		Redis: l2.Config{Addrs: []string{"redis-1:6379", "redis-2:6379"}}, // or ClusterAddrs, or Client
//	})
//	if err != nil {
//		return err
//	}
//	defer client.Close()
//
//	users, err := tiered.NewCache(client, "users", tiered.Options[*User]{
//		TTL:         10 * time.Minute,
//		NegativeTTL: time.Minute, // remember ErrNotFound this long
//	})
//	if err != nil {
//		return err
//	}
//	u, err := users.Get(ctx, "42", loadUser) // L1, else L2, else one load
//	err = users.Set(ctx, "42", updated)      // L2, then L1; the other replicas drop their copy
//	err = users.Delete(ctx, "42")            // both tiers, every replica
//
// The zero [Config].Redis means no L2: L1 and the loader only, which is how
// the examples run without a server.
//
// NOTE: values in L1 are shared. Every caller that hits L1 gets the same V;
// a pointer, slice or map value must be treated as read-only, or copied
// before it is changed.
//
// # Reads
//
// [Cache.Get] answers from L1 if the value is fresh there, else from L2,
// else from the loader, and caches what it loaded in both tiers. Concurrent
// Gets of one key on a replica share one L2 read and one load; across
// replicas a load lease in L2 lets one replica load while the others wait
// for its fill ([Options].LeaseTTL, LeaseWait). Near expiry a hit may
// refresh the value in the background (XFetch, [Options].EarlyRefreshBeta);
// past expiry a stale value may be served while a refresh runs
// ([Options].StaleWhileRevalidate) or while the loader fails
// ([Options].StaleIfError). [Cache.GetWithInfo] says which tier answered and
// whether the value was stale, with the loader's error ([Info].Cause).
// [Cache.GetMany] does the same for many keys: L1, one L2 pipeline, then one
// BatchLoader call for the keys still missing. A nil loader makes Get and
// GetMany lookups.
//
// # Writes
//
// [Cache.Set] writes L2, then L1: once it returns, Gets on this replica see
// the new value. [WithTTL] and [WithTags] change one Set. [Cache.Delete]
// removes keys from both tiers. With [Options].Writer, Set calls it first
// and caches v only if it succeeds (write-through); with
// [Options].WriteBehind, writes are recorded durably in Redis and flushed to
// the database in the background (see Write-behind below).
//
// # Invalidation
//
// Every Set, Delete and invalidation is published to the other replicas,
// which drop their L1 copy. Besides keys, a cache can invalidate by tag
// ([Options].Tags, [WithTags], [Cache.InvalidateTags]), by pattern
// ([Cache.InvalidatePattern]) or as a whole ([Cache.Clear]). A process
// without a Cache (a change-data-capture consumer, a script) uses
// [Client.Invalidate] and [Client.InvalidateTags]. Under a [WithAck]
// context a write or invalidation returns only once every live replica has
// applied it. Replicas send heartbeats every 500 ms; a replica that finds
// a message lost drops its whole L1, and while no channel vouches for the
// flow of invalidations its reads bypass L1. The wire format, for
// producers in other languages, is in package coherence.
//
// # Defaults that matter
//
// Every field of [Config] and [Options] documents its zero value. The ones
// most services touch:
//
//   - TTL: [DefaultTTL] (5 minutes), spread by [DefaultJitter] (±10%).
//   - L1: [DefaultL1MaxCost] (64 MiB) per cache, and an L1 copy is served
//     without looking at L2 for at most [DefaultL1MaxTTL] (a minute): the
//     bound on staleness if an invalidation is missed.
//   - Values: at most [DefaultMaxValueSize] (1 MiB) encoded; encoded as JSON
//     ([JSONCodec]) except []byte and string, which are stored as they are.
//   - Load lease: [DefaultLeaseTTL] (5 s); it should exceed the p99 load time.
//   - Negative caching, stale windows, sliding expiration: off.
//   - Redis commands time out after 100 ms (l2.DefaultTimeout) and are never
//     retried; a server that fails three commands in a row is skipped for
//     a second (its circuit breaker).
//   - A Redis or a gossip seed that is down at start does not fail
//     NewClient, unless [Config].RequireL2 or RequireGossip.
//
// # Errors
//
// Compare errors with errors.Is: [ErrNotFound], [ErrInvalidKey],
// [ErrInvalidNamespace], [ErrValueTooLarge], [ErrClosed],
// [ErrBackpressure], [ErrVersionUnknown], and l2.ErrUnavailable for a
// Redis server out of service. A loader's error reaches the caller
// (errors.Is and errors.As see it); a panic in a loader or another
// callback comes back as a [*PanicError].
// An L2 failure on a read is not an error: the read goes on without L2
// (counted in [Stats].L2Errors).
//
// A write or invalidation whose ctx has already ended does nothing and
// returns ctx's error. Once begun it finishes even if ctx ends, its Redis
// commands each bounded by l2.Config.Timeout: half of one would leave a
// Redis server to be cleaned before it serves again, and an invalidation
// not sent makes every replica drop its L1. A Writer and a Block wait for
// write-behind room still see the caller's ctx.
//
// # Watching it
//
// [Cache.Stats] and [Client.Stats] count hits per tier, loads, errors and
// more; [Client.Health] reports each Redis server, each channel and the
// gossip members (package debughttp serves it as JSON). An [Observer] in
// [Config].Observer hears events as they happen; package otelcache (its own
// module) turns them into OpenTelemetry spans and metrics. [Config].Audit
// samples L1 hits and checks them against L2 in the background: the share
// found inconsistent, as [AuditStats].Nines, measures the guarantees in
// production.
//
// # Changing a cached type
//
// Every L2 entry carries a fingerprint of its writer's V and codec (or of
// [Options].Schema). Replicas that disagree on it, in a rolling deploy that
// changes V, share the namespace: each treats the other's entries as misses
// it loads around and leaves in place ([Stats].TypeMismatches), and every
// write and invalidation still reaches both. Keep the namespace; change
// Options.Schema when the encoding changes under the same type name.
//
// # Write-behind
//
// With Options.WriteBehind, Set and Delete update L2 and L1 as always and
// record the write (a Delete as a tombstone) in a Redis Stream of the
// namespace; they return once Redis acknowledged both. Flushers on every
// replica hand the recorded writes to WriteBehind.Flush in batches, and
// delete them only once Flush succeeded.
//
//   - Delivery is at least once: a replica killed after its Flush wrote
//     the batch but before the acknowledgement has it flushed again by
//     another. Flush must be idempotent, or keep per key only a newer
//     Write.Version than the one stored: that is correct under every
//     failure.
//   - Per-key order: one replica at a time flushes a stream (a flush lock
//     in Redis), one batch at a time, and a batch left unacknowledged by a
//     dead replica is taken over (once WriteBehind.ClaimIdle old) before
//     any newer write is read. Within a batch a key's writes are coalesced
//     into its last one. Where two streams can hold writes of one key (a
//     Ring key served by a stand-in shard during an outage), only the
//     versions order them.
//   - Where the streams live: on a single node, one stream, written in one
//     script with the value (atomic). On a Ring, one stream per shard with
//     the writes of the keys it serves, atomic with them too. On a Redis
//     Cluster or a caller's own Ring or Cluster client, one stream per
//     namespace in its own slot, written in the same pipeline as the value
//     (one round trip when both are on one master, not atomic: an append
//     that fails after its write undoes the write).
//   - Durability is Redis's: a write is as safe as the stream's server.
//     Run it with appendonly yes and appendfsync everysec (at most a
//     second of acknowledged writes lost if that server crashes); without
//     AOF, a crash loses what was not flushed since the last RDB snapshot.
//   - Redis down: a write-behind Set or Delete fails with the L2 error. It
//     cannot acknowledge durability without Redis, and there is no silent
//     fallback to a queue in memory.
//   - Back-pressure: MaxPending bounds each stream's unflushed writes;
//     past it Set and Delete return ErrBackpressure (or, with Block, wait).
//     Streams are never trimmed: a write leaves its stream when it was
//     flushed or moved to the dead letters, so none is lost to trimming.
//   - After MaxAttempts failed flushes a batch's writes go to a dead-letter
//     stream (counted, logged): Cache.DeadLetters lists them, Cache.Redrive
//     sends them back. Nothing is dropped silently.
//   - Client.Close flushes what is pending (at most DrainTimeout) before
//     it returns.
//
// Write-behind needs Redis 6.2 or later (XAUTOCLAIM); NewCache fails on an
// older server.
//
// # Where the code is
//
// Every exported method of Client and Cache is declared in client.go and
// cache.go, a few lines each; the work is in files by job (read.go,
// getmany.go, lease.go, write.go, writebehind.go, tags.go, clear.go,
// coherence.go, retry.go).
package tiered
