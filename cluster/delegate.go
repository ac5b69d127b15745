package cluster

import (
	"bytes"

	"github.com/hashicorp/memberlist"
)

// delegate is the node as memberlist's Delegate. memberlist calls it from
// its packet and gossip goroutines, concurrently, and none of its methods
// may block.
type delegate node

// NodeMeta is unused: members carry no metadata.
func (d *delegate) NodeMeta(limit int) []byte { return nil }

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

// NotifyJoin relays a join.
func (e *eventDelegate) NotifyJoin(m *memberlist.Node) { e.events.notify(m.Name, true) }

// NotifyLeave relays a departure or death.
func (e *eventDelegate) NotifyLeave(m *memberlist.Node) { e.events.notify(m.Name, false) }

// NotifyUpdate is unused: members carry no metadata to update.
func (e *eventDelegate) NotifyUpdate(m *memberlist.Node) {}

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
