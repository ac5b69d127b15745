package cluster

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"testing"
	"time"
	"unsafe"

	"github.com/hashicorp/memberlist"
)

// crash stops n as a killed process would: memberlist shut down without a
// leave, so the others find out by probing. A later Close does nothing.
func crash(n *Node) {
	n.impl.closeOnce.Do(func() {
		n.impl.closed.Store(true)
		n.impl.closeErr = n.impl.ml.Shutdown()
		n.impl.stopGoroutines()
	})
}

// stateOf returns name's entry in n's MemberStates.
func stateOf(n *Node, name string) (Member, bool) {
	for _, m := range n.MemberStates() {
		if m.Name == name {
			return m, true
		}
	}
	return Member{}, false
}

// A member that closes is shown as left, one that crashes as dead, each with
// its address and when; one that rejoins under its name is alive again.
func TestMemberStatesLeftDeadRejoined(t *testing.T) {
	start := time.Now()
	nodes, _ := startCluster(t, 4, testKey)
	for _, m := range nodes[0].MemberStates() {
		if m.State != MemberAlive || m.Since.Before(start) || m.Addr == "" {
			t.Errorf("member %+v: want alive, with an address, since the start", m)
		}
	}
	if got := len(nodes[0].MemberStates()); got != 4 {
		t.Fatalf("%d members, want 4", got)
	}
	left, dead := nodes[3].Addr(), nodes[1].Addr()
	if err := nodes[3].Close(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "n3 shown as left", func() bool {
		m, _ := stateOf(nodes[0], "n3")
		return m.State == MemberLeft && m.Addr == left
	})
	// memberlist declares a member dead sooner when another member (n2)
	// confirms the suspicion.
	crash(nodes[1])
	waitFor(t, "n1 shown as dead", func() bool {
		m, _ := stateOf(nodes[0], "n1")
		return m.State == MemberDead && m.Addr == dead
	})
	if m, _ := stateOf(nodes[0], "n3"); m.State != MemberLeft {
		t.Errorf("n3 after n1's death: %+v, want still left", m)
	}
	if got := nodes[0].Members(); len(got) != 2 {
		t.Errorf("Members = %v, want n0 and n2", got)
	}

	// n3 rejoins: it left through Close, so it may at once.
	before := time.Now()
	back := startNode(t, localConfig(testKey, nodes[0].Addr()), "n3", func([]byte) {})
	waitFor(t, "n3 alive again", func() bool {
		m, _ := stateOf(nodes[0], "n3")
		return m.State == MemberAlive && m.Addr == back.Addr() && !m.Since.Before(before)
	})
	count := 0
	for _, m := range nodes[0].MemberStates() {
		if m.Name == "n3" {
			count++
		}
	}
	if count != 1 {
		t.Errorf("n3 listed %d times, want once", count)
	}
}

// A member whose leave arrives without its announcement (here: memberlist's
// Leave with no metadata set) is shown as left: memberlist's own record says
// the dead message came from the member itself.
func TestLeaveWithoutAnnouncementIsLeft(t *testing.T) {
	nodes, _ := startCluster(t, 2, testKey)
	addr := nodes[1].Addr()
	if err := nodes[1].impl.ml.Leave(time.Second); err != nil {
		t.Fatalf("Leave: %v", err)
	}
	waitFor(t, "n1 shown as left", func() bool {
		m, _ := stateOf(nodes[0], "n1")
		return m.State == MemberLeft && m.Addr == addr
	})
}

// memberlistNodeState matches memberlist's record of a member: the Nodes
// Members() returns are the first fields of those records, and the mirror
// reads an alive member's state, incarnation and time of its state change
// where memberlist keeps them.
func TestNodeStateMirror(t *testing.T) {
	before := time.Now()
	nodes, _ := startCluster(t, 2, testKey)
	for _, m := range nodes[0].impl.ml.Members() {
		s := (*memberlistNodeState)(unsafe.Pointer(m))
		if s.State != memberlist.StateAlive || s.StateChange.Before(before) || s.StateChange.After(time.Now()) || s.Incarnation > 10 {
			t.Errorf("%s: mirror reads state %d, incarnation %d, changed %v; want alive, a small incarnation, since %v",
				m.Name, s.State, s.Incarnation, s.StateChange, before)
		}
	}
	if leftItself(nodes[0].impl.ml.LocalNode()) {
		t.Error("an alive member reads as left")
	}
}

// Departed members are kept for departedFor, and at most maxDeparted.
func TestMemberStatesDepartedBounded(t *testing.T) {
	now := time.Unix(1000, 0)
	r := newRoster()
	r.now = func() time.Time { return now }
	node := func(i int) *memberlist.Node {
		return &memberlist.Node{Name: fmt.Sprint("m", i), Addr: net.IPv4(127, 0, 0, 1), Port: uint16(7000 + i)}
	}
	for i := range maxDeparted + 5 {
		r.joined(node(i))
	}
	for i := range maxDeparted + 5 {
		r.left(node(i), false)
		now = now.Add(time.Second)
	}
	ms := r.members()
	if len(ms) != maxDeparted {
		t.Fatalf("%d departed kept, want %d", len(ms), maxDeparted)
	}
	for _, m := range ms {
		if m.Name == "m0" || m.Name == "m4" {
			t.Errorf("%s kept: the oldest go first", m.Name)
		}
		if m.State != MemberDead {
			t.Errorf("%+v: want dead (no leaving metadata)", m)
		}
	}
	now = time.Unix(1000+30, 0).Add(departedFor) // m30 left departedFor ago
	if got := r.members(); len(got) != 7 || got[0].Name != "m30" {
		t.Errorf("%v after m30 left: %v kept, want m30..m36", departedFor, got)
	}
	now = now.Add(time.Hour)
	if got := r.members(); len(got) != 0 {
		t.Errorf("an hour later: %v kept, want none", got)
	}
	leaver := node(99)
	leaver.Meta = []byte(metaLeaving)
	r.joined(leaver)
	r.left(leaver, false)
	if ms := r.members(); len(ms) != 1 || ms[0].State != MemberLeft || ms[0].Addr != "127.0.0.1:7099" {
		t.Errorf("members %+v, want m99 left at 127.0.0.1:7099", ms)
	}
}

// Two nodes started with one name: the conflict is counted on both, with
// both addresses, and logged as a warning.
func TestConflictRecordedAndLogged(t *testing.T) {
	var out lockedBuffer
	cfg := localConfig(testKey)
	cfg.Logger = slog.New(slog.NewTextHandler(&out, nil))
	first := startNode(t, cfg, "dup", func([]byte) {})
	if c := first.Conflicts(); c.Count != 0 || c.Last != nil {
		t.Fatalf("conflicts before any: %+v", c)
	}
	// The newcomer sees its name at the first's address while joining, and
	// refuses to start.
	second, err := Start(localConfig(testKey, first.Addr()), "dup", func([]byte) {}, nil)
	if !errors.Is(err, ErrNameTaken) || !strings.Contains(err.Error(), first.Addr()) {
		if second != nil {
			_ = second.Close()
		}
		t.Fatalf("Start of a second dup: %v, want ErrNameTaken naming %s", err, first.Addr())
	}
	waitFor(t, "a conflict on the first", func() bool { return first.Conflicts().Count > 0 })
	c := first.Conflicts()
	if c.Last == nil || c.Last.Name != "dup" || c.Last.Existing != first.Addr() || c.Last.Other == first.Addr() || c.Last.At.IsZero() {
		t.Errorf("last conflict %+v, want dup claimed from elsewhere", c.Last)
	}
	logs := out.String()
	want := fmt.Sprintf("name=dup existing=%s other=%s", first.Addr(), c.Last.Other)
	if !strings.Contains(logs, "level=WARN") || !strings.Contains(logs, want) {
		t.Errorf("logs lack a warning with %q:\n%s", want, logs)
	}
}
