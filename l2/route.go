package l2

import (
	"sync/atomic"

	"github.com/strata-cache/strata/l2/internal/rendezvous"
)

// shardSet routes keys over the shards of a Ring. go-redis's Ring sends each
// command where shardSet says (it is the Ring's ConsistentHash), so Strata,
// not the Ring's own heartbeat, decides which shards serve: a shard that
// answers again is kept out until it is safe (see watch).
type shardSet struct {
	nodes []*node
	all   *rendezvous.Hash
	live  atomic.Pointer[liveShards]
	// epoch numbers the routing generations that moved keys to stand-in
	// shards; stand-in keys carry it, so copies from an earlier outage are
	// never read again.
	epoch atomic.Uint64
}

// liveShards is one routing generation: a rendezvous over the serving shards,
// and the epoch that names its stand-in keys.
type liveShards struct {
	r     *rendezvous.Hash
	idx   []int // index into shardSet.nodes per rendezvous name
	epoch uint64
}

func newShardSet(nodes []*node) *shardSet {
	names := make([]string, len(nodes))
	for i, n := range nodes {
		names[i] = n.name
	}
	s := &shardSet{nodes: nodes, all: rendezvous.New(names)}
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
	s.live.Store(&liveShards{r: rendezvous.New(names), idx: idx, epoch: s.epoch.Load()})
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
	owner := s.all.Get(tag)
	if len(l.idx) == len(s.nodes) || len(l.idx) == 0 {
		return owner, false
	}
	at = l.idx[l.r.Get(tag)]
	return at, at != owner
}

// Get implements redis.ConsistentHash: the name of the shard serving key,
// which the Ring has already reduced to its hash tag.
func (s *shardSet) Get(key string) string {
	at, _, _ := s.place(key)
	return s.nodes[at].name
}
