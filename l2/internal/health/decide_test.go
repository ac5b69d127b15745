package health

import (
	"errors"
	"fmt"
	"reflect"
	"testing"
)

var errTimeout = errors.New("i/o timeout")

// Probes.
var (
	fail = Probe{Err: errTimeout}
	// answers is a good check of a single node.
	answers = Probe{RunID: "run"}
)

// ok is a good check of a server at epoch e, holding live out markers for
// the servers out names.
func ok(e uint64, out ...int) Probe {
	p := Probe{Epoch: e, RunID: "run", Out: make([]bool, 3)}
	for _, i := range out {
		p.Out[i] = true
	}
	return p
}

// Servers.
var (
	// up serves, and answered its last checks.
	up = Server{Serving: true, OKs: 3, RunID: "run"}
	// failing serves, and failed its last check.
	failing = Server{Serving: true, Fails: 1, RunID: "run"}
	// gone is a Ring shard out since it stopped answering: fenced, its data
	// forgotten, marked out by this replica.
	gone = Server{Fails: 2, Dirt: DirtyAll, RunID: "run", Marked: true}
)

func with(s Server, f func(*Server)) Server { f(&s); return s }

func single(s Server) State {
	s.Name = "redis"
	return State{Servers: []Server{s}}
}

func ring(epoch uint64, ss ...Server) State {
	for i := range ss {
		ss[i].Name = fmt.Sprint("shard", i)
	}
	return State{Ring: true, Epoch: epoch, Servers: ss}
}

// Calls.
func round(first bool, probes ...Probe) func(State) (State, []Action) {
	return func(st State) (State, []Action) { return Decide(st, probes, first) }
}

func writeFailed(i int) func(State) (State, []Action) {
	return func(st State) (State, []Action) { return WriteFailed(st, i) }
}

func cleaned(i int, e uint64) func(State) (State, []Action) {
	return func(st State) (State, []Action) { return Cleaned(st, i, e) }
}

// Every transition of the health state machine: from a state, one call,
// the actions in order and what changed in the state.
func TestDecide(t *testing.T) {
	back := func(name, why string) Report { return Report{Reason: name + " back in service: " + why} }
	for _, tc := range []struct {
		name  string
		st    State
		call  func(State) (State, []Action)
		want  []Action
		after func(*State) // the changes to st; nil for none
	}{
		// A single node.
		{
			name: "first round: a server that answers serves at once",
			st:   single(Server{}), call: round(true, answers),
			want:  []Action{Join{0}},
			after: func(st *State) { s := &st.Servers[0]; s.Serving, s.OKs, s.RunID = true, 1, "run" },
		},
		{
			name: "later: one good check does not return a server",
			st:   single(Server{Fails: 4, RunID: "run"}), call: round(false, answers),
			after: func(st *State) { st.Servers[0].Fails, st.Servers[0].OKs = 0, 1 },
		},
		{
			name: "two good checks in a row return a clean server",
			st:   single(Server{OKs: 1, RunID: "run"}), call: round(false, answers),
			want:  []Action{Join{0}},
			after: func(st *State) { st.Servers[0].Serving, st.Servers[0].OKs = true, 2 },
		},
		{
			name: "one failed check is not a strike out",
			st:   single(up), call: round(false, fail),
			after: func(st *State) { st.Servers[0].Fails, st.Servers[0].OKs = 1, 0 },
		},
		{
			name: "two failed checks in a row take it out",
			st:   single(failing), call: round(false, fail),
			want:  []Action{Fence{0, "unreachable: i/o timeout"}},
			after: func(st *State) { st.Servers[0].Serving, st.Servers[0].Fails = false, 2 },
		},
		{
			name: "a failed write the check finds takes it out",
			st:   single(with(up, func(s *Server) { s.Dirt = DirtyKeys })), call: round(false, answers),
			want:  []Action{Fence{0, "a write failed"}},
			after: func(st *State) { st.Servers[0].Serving, st.Servers[0].OKs = false, 4 },
		},
		{
			name: "a failed write reported between rounds takes it out",
			st:   single(up), call: writeFailed(0),
			want:  []Action{Fence{0, "a write failed"}},
			after: func(st *State) { st.Servers[0].Serving = false },
		},
		{
			name: "a failed write on a server already out changes nothing",
			st:   single(Server{Fails: 2, Dirt: DirtyKeys}), call: writeFailed(0),
		},
		{
			name: "rejoin with replay: the keys whose writes failed are known",
			st:   single(Server{OKs: 1, Dirt: DirtyKeys, RunID: "run"}), call: round(false, answers),
			want:  []Action{Clean{Server: 0, Epoch: 0, Flush: false}},
			after: func(st *State) { st.Servers[0].OKs, st.Servers[0].Cleaning = 2, true },
		},
		{
			name: "rejoin with flush: the keys are not all known",
			st:   single(Server{OKs: 1, Dirt: DirtyAll, RunID: "run"}), call: round(false, answers),
			want:  []Action{Clean{Server: 0, Epoch: 0, Flush: true}},
			after: func(st *State) { st.Servers[0].OKs, st.Servers[0].Cleaning = 2, true },
		},
		{
			name: "while a cleaning runs, nothing more",
			st:   single(Server{OKs: 5, Dirt: DirtyKeys, Cleaning: true, RunID: "run"}), call: round(false, answers),
			after: func(st *State) { st.Servers[0].OKs = 6 },
		},
		{
			name: "a cleaning done returns it",
			st:   single(Server{OKs: 5, Cleaning: true, RunID: "run"}), call: cleaned(0, 0),
			want:  []Action{Join{0}},
			after: func(st *State) { st.Servers[0].Serving = true },
		},
		{
			name: "a new run ID (restart) takes it out, flushed at once when it never stopped answering",
			st:   single(up), call: round(false, Probe{RunID: "new"}),
			want: []Action{Forget{0}, Fence{0, "restarted"}, Clean{Server: 0, Epoch: 0, Flush: true}},
			after: func(st *State) {
				s := &st.Servers[0]
				s.Serving, s.OKs, s.RunID, s.Dirt, s.Cleaning = false, 4, "new", DirtyAll, true
			},
		},
		{
			name: "a restart seen as it answers again: forgotten, flushed after a second check",
			st:   single(Server{Fails: 3, RunID: "run"}), call: round(false, Probe{RunID: "new"}),
			want: []Action{Forget{0}},
			after: func(st *State) {
				s := &st.Servers[0]
				s.Fails, s.OKs, s.RunID, s.Dirt = 0, 1, "new", DirtyAll
			},
		},
		{
			name: "a server without INFO gives no run ID: no restart",
			st:   single(up), call: round(false, Probe{}),
			after: func(st *State) { st.Servers[0].OKs = 4 },
		},
		{
			name: "a single node has no routing epoch",
			st:   single(up), call: round(false, Probe{Epoch: 9, RunID: "run"}),
			after: func(st *State) { st.Servers[0].OKs = 4 },
		},

		// A Ring of three shards.
		{
			name: "first round on a Ring: clean shards join (the watch tells no one at start)",
			st:   ring(0, Server{}, Server{}, Server{}), call: round(true, ok(0), ok(0), ok(0)),
			want: []Action{
				Join{0}, Reroute{}, back("shard0", "answering again"),
				Join{1}, Reroute{}, back("shard1", "answering again"),
				Join{2}, Reroute{}, back("shard2", "answering again"),
			},
			after: func(st *State) {
				for i := range st.Servers {
					st.Servers[i].Serving, st.Servers[i].OKs, st.Servers[i].RunID = true, 1, "run"
				}
			},
		},
		{
			name: "first round: a shard another replica marks out stays out",
			st:   ring(0, Server{}, Server{}, Server{}), call: round(true, ok(0), ok(0, 0), ok(0)),
			want: []Action{
				Join{1}, Reroute{}, back("shard1", "answering again"),
				Join{2}, Reroute{}, back("shard2", "answering again"),
			},
			after: func(st *State) {
				for i := range st.Servers {
					st.Servers[i].Serving, st.Servers[i].OKs, st.Servers[i].RunID = i > 0, 1, "run"
				}
			},
		},
		{
			name: "two failed checks take a shard out: new epoch stamped on the serving shards, marker set",
			st:   ring(5, failing, up, up), call: round(false, fail, ok(5), ok(5)),
			want: []Action{
				Fence{0, "unreachable: i/o timeout"}, Forget{0}, SetEpoch{6}, Reroute{}, Stamp{[]int{1, 2}, 6},
				HoldOut{Mark: []int{0}, Epoch: 6},
			},
			after: func(st *State) {
				st.Epoch = 6
				st.Servers[0] = with(gone, func(s *Server) { s.Name = "shard0" })
				st.Servers[1].OKs, st.Servers[2].OKs = 4, 4
			},
		},
		{
			name: "two shards failing in one round open an epoch each",
			st:   ring(5, failing, failing, up), call: round(false, fail, fail, ok(5)),
			want: []Action{
				Fence{0, "unreachable: i/o timeout"}, Forget{0}, SetEpoch{6}, Reroute{}, Stamp{[]int{1, 2}, 6},
				Fence{1, "unreachable: i/o timeout"}, Forget{1}, SetEpoch{7}, Reroute{}, Stamp{[]int{2}, 7},
				HoldOut{Mark: []int{0, 1}, Epoch: 7},
			},
			after: func(st *State) {
				st.Epoch = 7
				for i := range 2 {
					st.Servers[i] = with(gone, func(s *Server) { s.Name = fmt.Sprint("shard", i) })
				}
				st.Servers[2].OKs = 4
			},
		},
		{
			name: "the last shard to go opens no epoch: no key has a stand-in",
			st:   ring(5, failing, gone, gone), call: round(false, fail, fail, fail),
			want: []Action{
				Fence{0, "unreachable: i/o timeout"}, Forget{0}, Reroute{},
				HoldOut{Mark: []int{0, 1, 2}, Epoch: 5},
			},
			after: func(st *State) {
				st.Servers[0] = with(gone, func(s *Server) { s.Name = "shard0" })
				st.Servers[1].Fails, st.Servers[2].Fails = 3, 3
			},
		},
		{
			name: "a shard this replica cannot reach stays marked out, every round",
			st:   ring(6, gone, up, up), call: round(false, fail, ok(6), ok(6)),
			want: []Action{HoldOut{Mark: []int{0}, Epoch: 6}},
			after: func(st *State) {
				st.Servers[0].Fails = 3
				st.Servers[1].OKs, st.Servers[2].OKs = 4, 4
			},
		},
		{
			name: "reached again: this replica removes its marker at once, and waits for a second check",
			st:   ring(6, gone, up, up), call: round(false, ok(6), ok(6), ok(6)),
			want: []Action{HoldOut{Unmark: []int{0}, Epoch: 6}},
			after: func(st *State) {
				st.Servers[0].Fails, st.Servers[0].OKs, st.Servers[0].Marked = 0, 1, false
				st.Servers[1].OKs, st.Servers[2].OKs = 4, 4
			},
		},
		{
			name: "a Ring shard always returns through a flush",
			st:   ring(6, with(gone, func(s *Server) { s.Fails, s.OKs, s.Marked = 0, 1, false }), up, up),
			call: round(false, ok(6), ok(6), ok(6)),
			want: []Action{Clean{Server: 0, Epoch: 6, Flush: true}},
			after: func(st *State) {
				st.Servers[0].OKs, st.Servers[0].Cleaning = 2, true
				st.Servers[1].OKs, st.Servers[2].OKs = 4, 4
			},
		},
		{
			name: "its cleaning done, the shard is back, rerouted, and the change reported",
			st:   ring(6, Server{OKs: 4, Cleaning: true, RunID: "run"}, up, up), call: cleaned(0, 6),
			want:  []Action{Join{0}, Reroute{}, back("shard0", "cleaned")},
			after: func(st *State) { st.Servers[0].Serving = true },
		},
		{
			name: "a cleaning done after the epoch moved on: a later round decides",
			st:   ring(7, Server{OKs: 4, Cleaning: true, RunID: "run"}, up, up), call: cleaned(0, 6),
		},
		{
			name: "another replica's live marker takes a serving shard out, in the epoch it opened",
			st:   ring(5, up, up, up), call: round(false, ok(5), ok(5, 0), ok(5)),
			want: []Action{Fence{0, "another replica cannot reach it"}, Forget{0}, Reroute{}},
			after: func(st *State) {
				st.Servers[0].Serving, st.Servers[0].Dirt = false, DirtyAll
				st.Servers[0].OKs, st.Servers[1].OKs, st.Servers[2].OKs = 4, 4, 4
			},
		},
		{
			name: "another replica's live marker holds a shard out, however long it answers",
			st:   ring(5, Server{OKs: 7, Dirt: DirtyAll, RunID: "run"}, up, up), call: round(false, ok(5), ok(5), ok(5, 0)),
			after: func(st *State) {
				st.Servers[0].OKs, st.Servers[1].OKs, st.Servers[2].OKs = 8, 4, 4
			},
		},
		{
			name: "a failed write the check finds takes a shard out under a new epoch",
			st:   ring(5, with(up, func(s *Server) { s.Dirt = DirtyKeys }), up, up), call: round(false, ok(5), ok(5), ok(5)),
			want: []Action{Fence{0, "a write failed"}, Forget{0}, SetEpoch{6}, Reroute{}, Stamp{[]int{1, 2}, 6}},
			after: func(st *State) {
				st.Epoch = 6
				st.Servers[0].Serving, st.Servers[0].Dirt = false, DirtyAll
				st.Servers[0].OKs, st.Servers[1].OKs, st.Servers[2].OKs = 4, 4, 4
			},
		},
		{
			name: "a failed write reported between rounds: out under a new epoch",
			st:   ring(5, up, up, up), call: writeFailed(1),
			want: []Action{Fence{1, "a write failed"}, Forget{1}, SetEpoch{6}, Reroute{}, Stamp{[]int{0, 2}, 6}},
			after: func(st *State) {
				st.Epoch = 6
				st.Servers[1].Serving, st.Servers[1].Dirt = false, DirtyAll
			},
		},
		{
			name: "a restart on a Ring: out under a new epoch, and a flush against the epoch read",
			st:   ring(5, up, up, up), call: round(false, Probe{Epoch: 5, RunID: "new", Out: make([]bool, 3)}, ok(5), ok(5)),
			want: []Action{
				Forget{0}, Fence{0, "restarted"}, SetEpoch{6}, Reroute{}, Stamp{[]int{1, 2}, 6},
				Clean{Server: 0, Epoch: 5, Flush: true},
			},
			after: func(st *State) {
				st.Epoch = 6
				s := &st.Servers[0]
				s.Serving, s.OKs, s.RunID, s.Dirt, s.Cleaning = false, 4, "new", DirtyAll, true
				st.Servers[1].OKs, st.Servers[2].OKs = 4, 4
			},
		},
		{
			name: "a later epoch another replica opened is adopted and reported",
			st:   ring(5, up, up, up), call: round(false, ok(7), ok(7), ok(5)),
			want: []Action{SetEpoch{7}, Reroute{}, Report{"routing epoch advanced"}},
			after: func(st *State) {
				st.Epoch = 7
				st.Servers[2].Behind = 1
				st.Servers[0].OKs, st.Servers[1].OKs, st.Servers[2].OKs = 4, 4, 4
			},
		},
		{
			name: "a serving shard behind the epoch once is left: stamps may be on their way",
			st:   ring(5, up, up, up), call: round(false, ok(4), ok(5), ok(5)),
			after: func(st *State) {
				st.Servers[0].Behind = 1
				st.Servers[0].OKs, st.Servers[1].OKs, st.Servers[2].OKs = 4, 4, 4
			},
		},
		{
			name: "behind twice in a row: it missed a routing change, out and forgotten without a new epoch",
			st:   ring(5, with(up, func(s *Server) { s.Behind = 1 }), up, up), call: round(false, ok(4), ok(5), ok(5)),
			want: []Action{Forget{0}, Fence{0, "missed a routing change"}, Reroute{}},
			after: func(st *State) {
				st.Servers[0].Serving, st.Servers[0].Behind, st.Servers[0].Dirt = false, 0, DirtyAll
				st.Servers[0].OKs, st.Servers[1].OKs, st.Servers[2].OKs = 4, 4, 4
			},
		},
		{
			name: "back at the epoch, the count of checks behind starts again",
			st:   ring(5, with(up, func(s *Server) { s.Behind = 1 }), up, up), call: round(false, ok(5), ok(5), ok(5)),
			after: func(st *State) {
				st.Servers[0].Behind = 0
				st.Servers[0].OKs, st.Servers[1].OKs, st.Servers[2].OKs = 4, 4, 4
			},
		},
		{
			name: "a clean shard behind the epoch as it returns is flushed",
			st:   ring(5, Server{OKs: 1, RunID: "run"}, up, up), call: round(false, ok(3), ok(5), ok(5)),
			want: []Action{Clean{Server: 0, Epoch: 5, Flush: true}},
			after: func(st *State) {
				st.Servers[0].OKs, st.Servers[0].Dirt, st.Servers[0].Cleaning = 2, DirtyAll, true
				st.Servers[1].OKs, st.Servers[2].OKs = 4, 4
			},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := tc.st.clone()
			want := tc.st.clone()
			if tc.after != nil {
				tc.after(&want)
			}
			got, acts := tc.call(tc.st)
			if !reflect.DeepEqual(acts, tc.want) {
				t.Errorf("actions:\n got %#v\nwant %#v", acts, tc.want)
			}
			if !reflect.DeepEqual(got, want) {
				t.Errorf("state:\n got %+v\nwant %+v", got, want)
			}
			if !reflect.DeepEqual(tc.st, before) {
				t.Errorf("the call changed its input state: %+v, was %+v", tc.st, before)
			}
		})
	}
}
