package cluster

import (
	"cmp"
	"slices"
	"sync"
	"time"
	"unsafe"

	"github.com/hashicorp/memberlist"
)

// MemberState is a member's state as this node knows it.
//
// NOTE: there is no suspect state. memberlist reports no suspicion (no
// event; and memberlist.Node.State, which looks like it would, is never set:
// memberlist keeps the state in a field of its own that shadows it), so a
// suspected member reads as alive until it is declared dead.
type MemberState string

const (
	// MemberAlive is a member that joined and has not been declared dead or
	// left (a suspected one included).
	MemberAlive MemberState = "alive"
	// MemberLeft is a member that left through Close, which announces it.
	MemberLeft MemberState = "left"
	// MemberDead is a member that stopped answering probes and was declared
	// dead, or that left but this node heard of it only from members that
	// took it for dead (its leave and its announcement both missed).
	MemberDead MemberState = "dead"
)

// Departed members (left or dead) are kept in MemberStates for
// departedFor, and at most maxDeparted of them (the latest): long enough for
// a dashboard polled every minute to show a departure several times, and
// enough for a rolling restart of a few dozen replicas, whose members rejoin
// under their names and leave the list at once; bounded so a churning
// cluster cannot grow it.
const (
	departedFor = 10 * time.Minute
	maxDeparted = 32
)

// Member is one member of the cluster as this node knows it.
type Member struct {
	// Name is the member's name (its NodeID in Strata).
	Name string `json:"name"`
	// Addr is the member's gossip address, "ip:port".
	Addr string `json:"addr"`
	// State is alive, left or dead.
	State MemberState `json:"state"`
	// Since is when this node learned of the member's current state: its
	// join (or rejoin), or its departure.
	Since time.Time `json:"since"`
}

// Conflict is a node that claimed a member's name from another address:
// memberlist refuses it, so the two do not see each other (see Conflicts).
type Conflict struct {
	// Name is the name both claim.
	Name string `json:"name"`
	// Existing is the address of the member known by the name.
	Existing string `json:"existing"`
	// Other is the address of the node that claimed it too.
	Other string `json:"other"`
	// At is when this node noticed.
	At time.Time `json:"at"`
}

// Conflicts counts the name conflicts this node has seen since Start.
type Conflicts struct {
	// Count is how many there were (one newcomer may count once per
	// message that carries its claim).
	Count uint64 `json:"count"`
	// Last is the latest, or nil.
	Last *Conflict `json:"last,omitempty"`
}

// roster keeps the members with their states, from memberlist's join and
// leave events, the departed ones for a while, and the name conflicts.
type roster struct {
	now func() time.Time

	mu        sync.Mutex
	alive     map[string]Member
	departed  []Member // oldest first
	conflicts Conflicts
	// peers are the alive members' addresses for sends, copied under
	// memberlist's node lock: memberlist rewrites its own Node (Addr, Port,
	// Meta) on an alive message of a higher incarnation (a member refuting
	// a suspicion, or announcing its departure), so the nodes Members()
	// returns must not be read without that lock, which sends would.
	peers map[string]*memberlist.Node
}

func newRoster() *roster {
	return &roster{now: time.Now, alive: map[string]Member{}, peers: map[string]*memberlist.Node{}}
}

// joined records m as alive. memberlist holds its node lock: m may be read.
func (r *roster) joined(m *memberlist.Node) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.forget(m.Name)
	r.alive[m.Name] = Member{Name: m.Name, Addr: m.Address(), State: MemberAlive, Since: r.now()}
	r.peers[m.Name] = peerOf(m)
}

// updated records m's new address, if it moved. memberlist holds its node
// lock: m may be read.
func (r *roster) updated(m *memberlist.Node) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, ok := r.peers[m.Name]; ok {
		r.peers[m.Name] = peerOf(m)
	}
}

// peerOf copies what a send reads of m.
func peerOf(m *memberlist.Node) *memberlist.Node {
	return &memberlist.Node{Name: m.Name, Addr: slices.Clone(m.Addr), Port: m.Port}
}

// sendTargets returns the alive members to send to (copies of theirs:
// see peers), but self.
func (r *roster) sendTargets(self string) []*memberlist.Node {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]*memberlist.Node, 0, len(r.peers))
	for name, p := range r.peers {
		if name != self {
			out = append(out, p)
		}
	}
	return out
}

// left records m as left (it sent its own leave, or its metadata says it
// announced leaving) or dead. memberlist holds its node lock: m may be read.
func (r *roster) left(m *memberlist.Node, itself bool) {
	state := MemberDead
	if itself || leaving(m.Meta) {
		state = MemberLeft
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	delete(r.alive, m.Name)
	delete(r.peers, m.Name)
	r.forget(m.Name)
	r.departed = append(r.departed, Member{Name: m.Name, Addr: m.Address(), State: state, Since: r.now()})
	r.prune()
}

// forget drops name from the departed. r.mu is held.
func (r *roster) forget(name string) {
	r.departed = slices.DeleteFunc(r.departed, func(m Member) bool { return m.Name == name })
}

// prune drops the departed kept too long or beyond maxDeparted. r.mu is
// held.
func (r *roster) prune() {
	cut := max(0, len(r.departed)-maxDeparted)
	for cut < len(r.departed) && r.now().Sub(r.departed[cut].Since) > departedFor {
		cut++
	}
	r.departed = slices.Delete(r.departed, 0, cut)
}

// members returns every member, alive and departed, by name.
func (r *roster) members() []Member {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.prune()
	out := make([]Member, 0, len(r.alive)+len(r.departed))
	for _, m := range r.alive {
		out = append(out, m)
	}
	out = append(out, r.departed...)
	slices.SortFunc(out, func(a, b Member) int { return cmp.Compare(a.Name, b.Name) })
	return out
}

// conflict records a name conflict and returns it.
func (r *roster) conflict(existing, other *memberlist.Node) Conflict {
	c := Conflict{Name: existing.Name, Existing: existing.Address(), Other: other.Address(), At: r.now()}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.conflicts.Count++
	r.conflicts.Last = &c
	return c
}

func (r *roster) conflictsSeen() Conflicts {
	r.mu.Lock()
	defer r.mu.Unlock()
	c := r.conflicts
	if c.Last != nil {
		last := *c.Last
		c.Last = &last
	}
	return c
}

// metaLeaving is the node metadata of a member that is leaving: Close sets
// it, and gossips it, before memberlist's leave, so that the others can
// tell a departure from a death where they hear of it without the leave
// itself (by push-pull; see leftItself). The announcement is gossiped to a
// few members (RetransmitMult·⌈log10(n+1)⌉ sends), which pass it on, so a
// member may get the leave before it. Members carry no other metadata.
const metaLeaving = "leaving"

func leaving(meta []byte) bool { return string(meta) == metaLeaving }

// memberlistNodeState mirrors memberlist's unexported nodeState (v0.7.0),
// the record of a member whose first field is the Node that NotifyLeave is
// handed a pointer to (memberlist's deadNode: NotifyLeave(&state.Node)).
// TestNodeStateMirror checks the layout against memberlist's own records;
// go test -race's pointer checks fail the conversion if memberlist's record
// is smaller.
type memberlistNodeState struct {
	memberlist.Node
	Incarnation uint32
	State       memberlist.NodeStateType
	StateChange time.Time
}

// leftItself reports whether memberlist recorded m's departure as its own
// leave (a dead message from m itself: StateLeft) rather than a death
// declared by probing (StateDead). memberlist says it nowhere else:
// memberlist.Node.State is never set, as nodeState.State shadows it
// (hashicorp/memberlist#293; the fix, #321, is not merged). The leave
// reaches every member that hears of the departure from m, so this, unlike
// metaLeaving alone, does not depend on the order gossip delivers the two
// in. m must be the Node NotifyLeave was called with. A state that is
// neither left nor dead (a memberlist whose record no longer matches the
// mirror) reads as not left, leaving the announcement to decide.
func leftItself(m *memberlist.Node) bool {
	return (*memberlistNodeState)(unsafe.Pointer(m)).State == memberlist.StateLeft
}
