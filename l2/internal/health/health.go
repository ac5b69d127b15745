// Package health decides which Redis servers of a single node or a Ring
// serve: the state machine of l2's health watch, without its I/O.
//
// The watch checks every server each round (Probe), asks Decide what follows
// from the checks and what it knew before (State), and carries out the
// Actions in order. Its other events go through WriteFailed and Cleaned (a
// cleaning finished). Every function here is pure: it returns a
// new State and touches nothing else.
package health

// Dirt says what must be deleted from a server before it may serve again.
type Dirt uint8

// Dirt values.
const (
	// NoDirt: no write failed on the server.
	NoDirt Dirt = iota
	// DirtyKeys: writes of known keys failed; they are deleted (replay).
	DirtyKeys
	// DirtyAll: what the server holds is unknown (too many keys logged, a
	// restart, a missed routing change, any outage of a Ring shard); every
	// data key under the prefix is deleted (flush).
	DirtyAll
)

// Server is one server as the decisions see it.
type Server struct {
	// Name is the server's name in reasons ("shard0").
	Name string

	// Serving, Dirt and Cleaning are owned elsewhere (the server's fence,
	// its log of failed writes, the cleaning goroutine): the watch reads
	// them into the State before each decision.
	Serving  bool // takes cache traffic
	Dirt     Dirt
	Cleaning bool // a cleaning runs; it ends with Cleaned

	// The rest is kept by the decisions from one to the next.
	Fails  int    // failed checks in a row
	OKs    int    // good checks in a row
	Behind int    // good checks in a row, while serving, that found it behind the routing epoch
	RunID  string // the run ID the last check read ("" before any, or from a server without INFO)
	Marked bool   // this replica keeps an out marker for it on the serving servers
}

// State is what the watch knows between decisions.
type State struct {
	// Ring: the servers are shards with a routing epoch and out markers;
	// else there is one server, a single node.
	Ring bool
	// Epoch is a Ring's routing epoch in force; it stays 0 for a single node.
	Epoch   uint64
	Servers []Server
}

// clone returns a copy of st that shares nothing with it.
func (st State) clone() State {
	st.Servers = append([]Server(nil), st.Servers...)
	return st
}

// Probe is one check of one server: what it answered, or why it did not.
type Probe struct {
	Err   error  // not nil: the check failed, and the rest is unset
	Epoch uint64 // the routing epoch it holds (a Ring)
	RunID string // its run ID; "" when it gives none
	Out   []bool // per server (a Ring): it holds a live out marker for that one
}

// Action is one step of a decision, for the watch to carry out in order, on
// the server of index Server where there is one.
type Action interface{ action() }

// Fence takes a server out of service: cache commands to it fail fast.
type Fence struct {
	Server int
	Reason string
}

// Forget marks a server's data unknown: it is flushed whole before it
// serves again, whatever keys were logged.
type Forget struct{ Server int }

// SetEpoch routes with Epoch from now on: keys of servers out of service go
// to stand-ins under that epoch's names.
type SetEpoch struct{ Epoch uint64 }

// Reroute recomputes a Ring's routing from the servers' serving flags.
type Reroute struct{}

// Stamp raises the routing epoch held by each of Servers to Epoch, so other
// replicas see a server behind it as behind (in the background).
type Stamp struct {
	Servers []int
	Epoch   uint64
}

// Report tells the store's watcher of a routing change. (The watch tells no
// one of the joins of its first round: starting is no change.)
type Report struct{ Reason string }

// Clean starts making a server out of service safe, in the background: it
// deletes the keys logged (replay), or everything with Flush (the watch
// forgets the keys first), then on a Ring stamps it with Epoch, and ends with
// Cleaned. Without Flush, a log that overflowed meanwhile is flushed too.
type Clean struct {
	Server int
	Epoch  uint64
	Flush  bool
}

// Join returns a server to service (with a closed breaker).
type Join struct{ Server int }

// HoldOut sets this replica's out markers for the servers Mark and removes
// them for Unmark, on every serving server, after raising the epoch those
// hold to Epoch (in the background).
type HoldOut struct {
	Mark, Unmark []int
	Epoch        uint64
}

func (Fence) action()    {}
func (Forget) action()   {}
func (SetEpoch) action() {}
func (Reroute) action()  {}
func (Stamp) action()    {}
func (Report) action()   {}
func (Clean) action()    {}
func (Join) action()     {}
func (HoldOut) action()  {}
