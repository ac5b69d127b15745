// Package l2 is Strata's shared tier: Redis as a single node, consistent-hashed
// shards or a Redis Cluster, behind one [Store] with a binary entry envelope.
//
// Most programs never use it directly: they put a [Config] in
// tiered.Config.Redis and package tiered opens the store, runs the lease
// protocol and keeps replicas coherent. Use l2 itself for what sits beside
// a cache: a tool that inspects or deletes what Strata wrote, a check of the
// Redis deployment, a port that must read the same entries.
//
// # Deployments
//
// A [Config] names exactly one deployment; the zero Config means no L2
// ([Config.Enabled]):
//
//   - Addrs with one address: a single node.
//   - Addrs with several: independent shards, keys spread over them by
//     rendezvous hashing (go-redis's Ring carries the commands; Strata routes).
//   - ClusterAddrs: a Redis Cluster.
//   - Client: a go-redis client of the caller's, which Strata does not close.
//
// Every server must run Redis 7.0 or later: tag sets get their TTLs through
// PEXPIRE's NX and GT options, and write-behind's streams need XAUTOCLAIM
// ([Store.StreamsSupported] checks 6.2).
//
// [Open] connects and returns the store; a server that is down at start is
// not an error (it serves once it answers).
//
//	s, err := l2.Open(l2.Config{Addrs: []string{"localhost:6379"}})
//	if err != nil {
//		return err
//	}
//	defer s.Close()
//	v, err := s.NamespaceVersion(ctx, "users") // 0 until the first Clear
//	raw, err := s.Get(ctx, l2.NamespaceAt("users", v), "42")
//	if raw != nil {
//		e, err := l2.Decode(raw) // e.Payload is the cache's encoded value
//	}
//
// # Defaults that matter
//
// Every Config field documents its zero value. Cache commands time out
// after [DefaultTimeout] (100 ms), and the clients Strata makes never retry
// them: a cache read slower than that falls back to the loader. Each server has a circuit breaker that
// opens after [DefaultBreakerFailures] (3) failures in a row and lets one
// probe through after [DefaultBreakerCoolDown] (1 s). Every key starts with
// [DefaultPrefix] ("strata").
//
// # Keys
//
// [Store.Key] names a value in Redis: prefix:ns:{key}, where ns is the
// namespace at its version ([NamespaceAt]: "users" at version 0, before
// any Clear, "users#3" at version 3) and the braces are the hash tag that keeps a key's
// value and its lease ([Store.LeaseKey]) on one Cluster slot or Ring shard.
// [Store.TagKey] and [Store.StreamKey] name a tag's set and a namespace's
// write-behind stream; keys.go lists every key Strata writes.
//
// # Entries
//
// Each value is stored as an [Envelope] (its binary layout is documented on
// [FormatVersion]): the cache's encoded value with its writer's type
// fingerprint, version, creation
// time, freshness and stale windows, last load duration and tags, closed by a
// CRC-32C. [Decode] rejects anything else with [ErrCorrupt] and never panics;
// [Envelope.Encode] writes one.
//
// # Commands
//
// Reads: [Store.Get], [Store.GetMany]. Writes that end any load lease on the
// key, so an older load cannot fill over them: [Store.WriteSeeing],
// [Store.Delete], [Store.DeleteMatching]. The load lease, one loader per key
// for the whole cluster: [Store.GetOrLease], then [Store.Fill] (which stores
// only if the lease still holds) or [Store.Release]. Namespaces:
// [Store.NamespaceVersion], [Store.BumpVersion]. Tags: [Store.AddTags],
// [Store.PopTags] and the tag fence. Write-behind streams: [Store.Streams]
// and the [Stream] methods. A multi-key command that fails for some keys
// returns a [*PartialError]; [KeyFailed] reads it.
//
// # Health
//
// Cache commands to a server out of service are not sent: they fail at once
// with an error wrapping [ErrUnavailable]. For a single node or shards
// (Config.Addrs) a health watch checks each server every
// [DefaultHealthInterval] (100 ms), takes a server out of service when it
// stops answering or a write to it fails, routes its keys to stand-in shards
// (with a short time to live, [DefaultStandInTTL]), and lets it serve again
// only once the keys written while it was away are deleted from it (replay),
// or everything under the prefix is (flush): a returning server never serves
// a value that was overwritten meanwhile. [Store.Health] reports each
// server ([ServerHealth]); a [Watcher] given to [OpenWatched] hears of
// routing changes and repairs. A Redis Cluster has the breakers but no
// watch; a caller's own client has neither.
package l2
