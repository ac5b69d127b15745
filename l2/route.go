package l2

import (
	"sync/atomic"

	"github.com/cespare/xxhash/v2"
)

// rendezvous is highest-random-weight hashing over a fixed list of names: a
// key goes to the name whose mixed hash with the key's hash is largest, so
// removing a name moves only that name's keys, evenly onto the others.
type rendezvous struct {
	hashes []uint64
}

func newRendezvous(names []string) *rendezvous {
	r := &rendezvous{hashes: make([]uint64, len(names))}
	for i, n := range names {
		r.hashes[i] = xxhash.Sum64String(n)
	}
	return r
}

// get returns the index of key's name, or -1 when there are no names.
func (r *rendezvous) get(key string) int {
	kh := xxhash.Sum64String(key)
	best, at := uint64(0), -1
	for i, h := range r.hashes {
		if s := mix64(kh ^ h); at < 0 || s > best {
			best, at = s, i
		}
	}
	return at
}

// mix64 is xorshift-multiply, the mixer of dgryski/go-rendezvous.
func mix64(x uint64) uint64 {
	x ^= x >> 12
	x ^= x << 25
	x ^= x >> 27
	return x * 2685821657736338717
}

// shardSet routes keys over the shards of a Ring. go-redis's Ring sends each
// command where shardSet says (it is the Ring's ConsistentHash), so Strata,
// not the Ring's own heartbeat, decides which shards serve: a shard that
// answers again is kept out until it is safe (see health).
type shardSet struct {
	nodes []*node
	all   *rendezvous
	live  atomic.Pointer[liveShards]
	// epoch numbers the routing generations that moved keys to stand-in
	// shards; stand-in keys carry it, so copies from an earlier outage are
	// never read again.
	epoch atomic.Uint64
}

// liveShards is one routing generation: a rendezvous over the serving shards,
// and the epoch that names its stand-in keys.
type liveShards struct {
	r     *rendezvous
	idx   []int // index into shardSet.nodes per rendezvous name
	epoch uint64
}

func newShardSet(nodes []*node) *shardSet {
	names := make([]string, len(nodes))
	for i, n := range nodes {
		names[i] = n.name
	}
	s := &shardSet{nodes: nodes, all: newRendezvous(names)}
	s.rebuild()
	return s
}

// rebuild recomputes the routing from the nodes' serving flags.
func (s *shardSet) rebuild() {
	var names []string
	var idx []int
	for i, n := range s.nodes {
		if n.serving() {
			names = append(names, n.name)
			idx = append(idx, i)
		}
	}
	s.live.Store(&liveShards{r: newRendezvous(names), idx: idx, epoch: s.epoch.Load()})
}

// place returns the shard that serves tag now, whether it is a stand-in for
// the tag's owner (the shard that serves it when all are up), and the epoch
// of this routing. With no shard serving, the owner is returned; it refuses
// the command at once.
func (s *shardSet) place(tag string) (at int, standIn bool, epoch uint64) {
	l := s.live.Load()
	at, standIn = s.placeIn(l, tag)
	return at, standIn, l.epoch
}

// placeIn is place in the routing generation l.
func (s *shardSet) placeIn(l *liveShards, tag string) (at int, standIn bool) {
	owner := s.all.get(tag)
	if len(l.idx) == len(s.nodes) || len(l.idx) == 0 {
		return owner, false
	}
	at = l.idx[l.r.get(tag)]
	return at, at != owner
}

// Get implements redis.ConsistentHash: the name of the shard serving key,
// which the Ring has already reduced to its hash tag.
func (s *shardSet) Get(key string) string {
	at, _, _ := s.place(key)
	return s.nodes[at].name
}
