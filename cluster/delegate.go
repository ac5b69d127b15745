package cluster

import (
	"bytes"

	"github.com/hashicorp/memberlist"
)

// delegate is the node as memberlist's Delegate. memberlist calls it from
// its packet and gossip goroutines, concurrently, and none of its methods
// may block.
type delegate node

// NodeMeta is empty but while Close announces the departure: see
// metaLeaving.
func (d *delegate) NodeMeta(limit int) []byte {
	if (*node)(d).leaving.Load() {
		return []byte(metaLeaving)
	}
	return nil
}

// NotifyMsg copies the message (memberlist reuses b) and queues it without
// blocking; a full queue drops it.
func (d *delegate) NotifyMsg(b []byte) {
	n := (*node)(d)
	n.received.Add(1)
	if !n.deliver.offer(bytes.Clone(b)) {
		n.dropped.Add(1)
	}
}

// GetBroadcasts hands memberlist the queued catch-up copies of broadcasts to
// piggyback on gossip and probes.
func (d *delegate) GetBroadcasts(overhead, limit int) [][]byte {
	return d.gossip.GetBroadcasts(overhead, limit)
}

// LocalState is unused: there is no state to sync on join.
func (d *delegate) LocalState(join bool) []byte { return nil }

// MergeRemoteState is unused, like LocalState.
func (d *delegate) MergeRemoteState(buf []byte, join bool) {}

// eventDelegate is the node as memberlist's EventDelegate. memberlist calls
// it with its node lock held, one call at a time.
type eventDelegate node

// NotifyJoin records and relays a join.
func (e *eventDelegate) NotifyJoin(m *memberlist.Node) {
	e.roster.joined(m)
	e.events.notify(m.Name, true)
}

// NotifyLeave records and relays a departure or death.
func (e *eventDelegate) NotifyLeave(m *memberlist.Node) {
	e.roster.left(m, leftItself(m))
	e.events.notify(m.Name, false)
}

// NotifyUpdate records a member's new address; its only metadata,
// metaLeaving, is read at the departure.
func (e *eventDelegate) NotifyUpdate(m *memberlist.Node) { e.roster.updated(m) }

// conflictDelegate is the node as memberlist's ConflictDelegate, called with
// memberlist's node lock held.
type conflictDelegate node

// NotifyConflict records and logs a node claiming a member's name from
// another address, which memberlist refuses: in Strata, two replicas with
// one NodeID, which also ignore each other's invalidations as their own.
func (c *conflictDelegate) NotifyConflict(existing, other *memberlist.Node) {
	n := (*node)(c)
	conflict := n.roster.conflict(existing, other)
	n.logger.warn("cluster: two nodes claim one name; the newcomer is refused (duplicate NodeID?)",
		"name", conflict.Name, "existing", conflict.Existing, "other", conflict.Other)
}

// broadcast is one message in the gossip catch-up queue. It is unique:
// receivers de-duplicate, so nothing queued is ever superseded, and marking
// it so spares the queue a scan on every insert.
type broadcast struct {
	msg []byte
}

func (b *broadcast) Invalidates(memberlist.Broadcast) bool { return false }
func (b *broadcast) Message() []byte                       { return b.msg }
func (b *broadcast) Finished()                             {}
func (b *broadcast) UniqueBroadcast()                      {}
