package l2

import (
	"strconv"
	"strings"
)

// This file owns the Redis key layout: every key Strata writes is listed here
// and parsed back here. With prefix P (Config.Prefix), namespace ns (at
// version N > 0 spelled ns#N) and cache key k:
//
//	P:ns:{k}           a value (the braces are the hash tag: a Cluster slot, a Ring shard)
//	P:ns:{k}:lease     its load lease, in the same slot
//	P@E:ns:{k}         a value on a stand-in shard during routing epoch E (a Ring)
//	P:ns#tag:{t}       the set of ns's keys tagged t
//	P:ns#version       ns's version counter
//	P:ns#tagfence      ns's tag-invalidation counter (tags.go)
//	P:ns#writes[:dead|:lock]  ns's write-behind stream, its dead letters and
//	                   flush lock; on a Ring one per shard (writebehind.go)
//	P#epoch            a Ring server's routing epoch
//	P#out:shardI       replicas' out markers for shard I (a hash: replica id -> expiry)
//
// Namespaces contain no '#', '{' or '}', so none of these collide. A key
// starting with '}' or '~' gets a '~' in front inside the tag (keyTag), so the
// tag of a non-empty key is never empty and the mapping stays one-to-one.

// keyTag is key as it sits inside its value key's braces.
func keyTag(key string) string {
	if key != "" && (key[0] == '}' || key[0] == '~') {
		return "~" + key
	}
	return key
}

// Key returns the Redis key of key in namespace ns: prefix:ns:{key}. The braces
// are a Redis Cluster hash tag (go-redis's Ring honours it too), so a key's
// value and its helper keys share a slot and a shard while different keys
// spread. A key starting with '}' or '~' gets a '~' in front inside the tag,
// so the tag of a non-empty key is never empty and the mapping stays
// one-to-one.
//
// While a Ring shard is out of service, its keys live on stand-in shards
// under the routing epoch's prefix (prefix@epoch:ns:{key}), so a stand-in
// copy is never read in a later outage, when it may be old.
func (s *Store) Key(ns, key string) string {
	k, _ := s.locate(ns, key)
	return k
}

// parseKey splits a value key, plain or stand-in, into its namespace
// (without a version) and key. Leases and other keys are not value keys.
func (s *Store) parseKey(full string) (ns, key string, ok bool) {
	rest, found := strings.CutPrefix(full, s.prefix)
	if !found || rest == "" {
		return "", "", false
	}
	if rest[0] == '@' { // stand-in: prefix@epoch:
		i := strings.IndexByte(rest, ':')
		if i < 0 {
			return "", "", false
		}
		rest = rest[i:]
	}
	rest, found = strings.CutPrefix(rest, ":")
	open := strings.Index(rest, ":{")
	if !found || open < 0 || !strings.HasSuffix(rest, "}") {
		return "", "", false
	}
	ns, key = rest[:open], rest[open+2:len(rest)-1]
	if strings.HasSuffix(ns, "#tag") {
		return "", "", false // a tag set
	}
	ns, _, _ = strings.Cut(ns, "#")
	if strings.HasPrefix(key, "~") {
		key = key[1:]
	}
	return ns, key, ns != "" && key != ""
}

// versionSuffix names a namespace's version counter: prefix:ns#version.
// Namespaces cannot contain '#', so it collides with no namespace's keys.
const versionSuffix = "#version"

// versionKey is the Redis key of ns's version counter.
func (s *Store) versionKey(ns string) string { return s.prefix + ":" + ns + versionSuffix }

// Lease keys sit beside their value key, in its hash slot: Key(ns, k)+":lease".
// A value key always ends in '}', a lease key never does, so they cannot
// collide.
const leaseSuffix = ":lease"

// LeaseKey returns the Redis key of key's load lease.
func (s *Store) LeaseKey(ns, key string) string { return s.Key(ns, key) + leaseSuffix }

// TagKey returns the Redis key of the set of ns's keys tagged tag:
// prefix:ns#tag:{tag}. Namespaces cannot contain '#', so it collides with no
// value key.
func (s *Store) TagKey(ns, tag string) string { return s.prefix + ":" + ns + "#tag:{" + tag + "}" }

// epochKey is the Redis key of a server's routing epoch: prefix#epoch. It
// does not start with "prefix:", so no flush or pattern deletion removes it.
func epochKey(prefix string) string { return prefix + "#epoch" }

// outKey holds the markers replicas that cannot reach shard name keep on
// the serving shards: prefix#out:name, a hash of replica id to the marker's
// expiry in the holding server's clock. While one is live, no replica routes
// to the shard, so replicas never disagree about where its keys live for
// longer than a health round. Each replica's marker is its own field: a
// replica that reaches the shard again removes its marker, never another's.
// (A plain string there, as replicas before the hash set, counts as live
// until it lapses.)
func outKey(prefix, name string) string { return prefix + "#out:" + name }

// dataKeys keeps the value and lease keys of keys, dropping tag sets
// (prefix:ns#tag:{tag}) and namespace versions (prefix:ns#version), which
// are not cached data and must survive a flush.
func dataKeys(keys []string) []string {
	out := keys[:0]
	for _, k := range keys {
		open := strings.IndexByte(k, '{')
		if open < 0 || strings.HasSuffix(k[:open], "#tag:") {
			continue
		}
		out = append(out, k)
	}
	return out
}

// hashTag returns the part of a Redis key that decides its slot or shard: the
// text between the first '{' and the next '}', when non-empty, else the key.
func hashTag(key string) string {
	if s := strings.IndexByte(key, '{'); s >= 0 {
		if e := strings.IndexByte(key[s+1:], '}'); e > 0 {
			return key[s+1 : s+1+e]
		}
	}
	return key
}

// standInPrefix is the key prefix for data written to a stand-in shard in
// routing generation epoch: prefix@epoch.
func standInPrefix(prefix string, epoch uint64) string {
	return prefix + "@" + strconv.FormatUint(epoch, 10)
}

// NamespaceAt is namespace ns as key names spell it at version v (see
// NamespaceVersion): ns itself at version 0, else ns#v. It is the name a
// writer passes as ns to the Store's methods to write under version v.
func NamespaceAt(ns string, v uint64) string {
	if v == 0 {
		return ns
	}
	return ns + "#" + strconv.FormatUint(v, 10)
}
