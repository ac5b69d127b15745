package cluster

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/memberlist"
	"go.uber.org/goleak"
)

// TestMain checks that no goroutine outlives the tests. Close stops this
// package's goroutines and waits for them. memberlist's own (its packet
// handler, tickers, a gossip round in progress) end shortly after Shutdown
// without being waited for; goleak's default retries (about 0.4s) cover
// that, except for a probe in flight to a member that stopped answering (one
// that crashed or just left), which waits out the probe interval (1s in
// ProfileLocal): it is ignored, as in package tiered.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m, goleak.IgnoreTopFunction("github.com/hashicorp/memberlist.(*Memberlist).probeNode"))
}

var (
	testKey  = []byte("0123456789abcdef0123456789abcdef")
	otherKey = []byte("fedcba9876543210fedcba9876543210")
)

// waitTimeout bounds every wait for a condition; conditions normally hold
// within a few gossip rounds (100ms each in ProfileLocal).
const waitTimeout = 10 * time.Second

// waitFor polls cond until it holds, failing the test at the deadline.
func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(waitTimeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", waitTimeout, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// recorder collects the messages a node receives.
type recorder struct {
	mu   sync.Mutex
	msgs [][]byte
}

func (r *recorder) handle(msg []byte) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.msgs = append(r.msgs, msg)
}

// count returns how many received messages equal msg.
func (r *recorder) count(msg string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	c := 0
	for _, m := range r.msgs {
		if string(m) == msg {
			c++
		}
	}
	return c
}

func (r *recorder) all() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]string, len(r.msgs))
	for i, m := range r.msgs {
		out[i] = string(m)
	}
	return out
}

// localConfig is a loopback config in the fast profile, joining seeds.
func localConfig(key []byte, seeds ...string) Config {
	return Config{BindAddr: "127.0.0.1:0", Join: seeds, SecretKey: key, Profile: ProfileLocal}
}

// startNode starts a node closed at the end of the test.
func startNode(t testing.TB, cfg Config, name string, handle func([]byte)) *Node {
	t.Helper()
	n, err := Start(cfg, name, handle, nil)
	if err != nil {
		t.Fatalf("Start(%s): %v", name, err)
	}
	t.Cleanup(func() { _ = n.Close() })
	return n
}

// startCluster starts size nodes "n0".. and waits until every one sees all
// of them. Each joins through every node before it: a join is a TCP state
// exchange with each seed, so every member hears of it there and then.
// Joined through n0 alone, the others would hear of it by gossip, which
// sends a change to only RetransmitMult·⌈log10(n+1)⌉ members (2 of 3 in the
// local profile, probes included), leaving the rest to push-pull every 15 s:
// a member missed both n2 and n3 for 10 s in CI.
func startCluster(t testing.TB, size int, key []byte) ([]*Node, []*recorder) {
	t.Helper()
	nodes := make([]*Node, size)
	recs := make([]*recorder, size)
	var seeds []string
	for i := range nodes {
		recs[i] = &recorder{}
		nodes[i] = startNode(t, localConfig(key, seeds...), fmt.Sprintf("n%d", i), recs[i].handle)
		seeds = append(seeds, nodes[i].Addr())
	}
	for _, n := range nodes {
		waitForMembers(t, n, size)
	}
	return nodes, recs
}

func waitForMembers(t testing.TB, n *Node, want int) {
	t.Helper()
	deadline := time.Now().Add(waitTimeout)
	for len(n.Members()) != want {
		if time.Now().After(deadline) {
			// The states say whether a member was never heard of or was
			// taken for dead (a probe missed under load).
			t.Fatalf("timed out after %v waiting for %s to see %d members; it sees %+v", waitTimeout, n.Name(), want, n.MemberStates())
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestMembersConverge(t *testing.T) {
	nodes, _ := startCluster(t, 3, testKey)
	for _, n := range nodes {
		got := n.Members()
		sort.Strings(got)
		if want := []string{"n0", "n1", "n2"}; !slices.Equal(got, want) {
			t.Errorf("%s.Members() = %v, want %v", n.Name(), got, want)
		}
	}
}

func TestBroadcastReachesOthers(t *testing.T) {
	nodes, recs := startCluster(t, 3, testKey)
	const sent = "invalidate:user:42"
	buf := []byte(sent)
	if err := nodes[0].Broadcast(buf); err != nil {
		t.Fatalf("Broadcast: %v", err)
	}
	copy(buf, "XXXXXXXXXX") // Broadcast must not have retained buf.
	for i := 1; i < 3; i++ {
		waitFor(t, fmt.Sprintf("n%d to receive the broadcast", i), func() bool { return recs[i].count(sent) > 0 })
	}
	for i, r := range recs {
		for _, m := range r.all() {
			if m != sent {
				t.Errorf("n%d received %q, want only %q", i, m, sent)
			}
		}
	}
	if got := nodes[0].Stats().Sent; got != 2 {
		t.Errorf("Stats().Sent = %d, want 2", got)
	}
}

// TestBroadcastGossipCatchUp makes every direct send fail and checks the
// gossip copies still reach every member, including one of the largest size
// gossiped, which must fit an encrypted gossip packet.
func TestBroadcastGossipCatchUp(t *testing.T) {
	nodes, recs := startCluster(t, 3, testKey)
	lost := errors.New("simulated loss")
	nodes[0].impl.sendDirect = func(*memberlist.Node, []byte) error { return lost }
	small := "invalidate:gossip-only"
	largest := string(bytes.Repeat([]byte("L"), nodes[0].impl.maxPacket))
	for _, msg := range []string{small, largest} {
		if err := nodes[0].Broadcast([]byte(msg)); !errors.Is(err, lost) {
			t.Fatalf("Broadcast error = %v, want the simulated loss", err)
		}
	}
	for i := 1; i < 3; i++ {
		waitFor(t, fmt.Sprintf("n%d to receive the gossiped copies", i), func() bool {
			return recs[i].count(small) > 0 && recs[i].count(largest) > 0
		})
	}
	if s := nodes[0].Stats(); s.SendErrors != 4 || s.Sent != 0 {
		t.Errorf("Stats() = %+v, want SendErrors 4, Sent 0", s)
	}
}

// TestMaxPacketIsTheDatagramLimit: MaxPacket reports the size up to which
// a send is a best-effort datagram (the bus sends those before PUBLISH):
// memberlist's UDPBufferSize of 1400 less the framing.
func TestMaxPacketIsTheDatagramLimit(t *testing.T) {
	nodes, _ := startCluster(t, 1, testKey)
	if got := nodes[0].MaxPacket(); got != 1400-packetFraming || got != nodes[0].impl.maxPacket {
		t.Errorf("MaxPacket() = %d, want %d", got, 1400-packetFraming)
	}
}

func TestSendToReachesOnlyTarget(t *testing.T) {
	nodes, recs := startCluster(t, 3, testKey)
	if err := nodes[0].SendTo("n1", []byte("for-n1")); err != nil {
		t.Fatalf("SendTo(n1): %v", err)
	}
	waitFor(t, "n1 to receive its message", func() bool { return recs[1].count("for-n1") == 1 })
	// A later message to n2, on the same path, shows n2 has processed
	// what was sent before it.
	if err := nodes[0].SendTo("n2", []byte("marker")); err != nil {
		t.Fatalf("SendTo(n2): %v", err)
	}
	waitFor(t, "n2 to receive the marker", func() bool { return recs[2].count("marker") == 1 })
	if got := recs[2].all(); !slices.Equal(got, []string{"marker"}) {
		t.Errorf("n2 received %q, want only the marker", got)
	}
	if got := recs[0].all(); len(got) != 0 {
		t.Errorf("sender received %q", got)
	}
	if err := nodes[0].SendTo("nobody", []byte("x")); !errors.Is(err, ErrUnknownMember) {
		t.Errorf("SendTo(nobody) = %v, want ErrUnknownMember", err)
	}
}

// TestLargeMessageTakesReliablePath sends a message larger than one UDP
// packet, which must arrive whole over the TCP stream.
func TestLargeMessageTakesReliablePath(t *testing.T) {
	nodes, recs := startCluster(t, 2, testKey)
	big := bytes.Repeat([]byte("0123456789"), 1000)
	if err := nodes[0].Broadcast(big); err != nil {
		t.Fatalf("Broadcast: %v", err)
	}
	waitFor(t, "n1 to receive the large message", func() bool { return recs[1].count(string(big)) == 1 })
}

func TestOutsiderRejected(t *testing.T) {
	for _, tc := range []struct {
		name string
		key  []byte
	}{
		{"wrong key", otherKey},
		{"no key", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			nodes, recs := startCluster(t, 2, testKey)
			// Sample the keyed members while the outsider tries to join.
			var seen atomic.Bool
			stop := make(chan struct{})
			sampled := make(chan struct{})
			go func() {
				defer close(sampled)
				for {
					for _, n := range nodes {
						if slices.Contains(n.Members(), "outsider") {
							seen.Store(true)
						}
					}
					select {
					case <-stop:
						return
					case <-time.After(5 * time.Millisecond):
					}
				}
			}()
			cfg := localConfig(tc.key, nodes[0].Addr())
			cfg.JoinTimeout = 500 * time.Millisecond
			out, err := Start(cfg, "outsider", func([]byte) {}, nil)
			close(stop)
			<-sampled
			if err == nil {
				_ = out.Close()
				t.Fatal("outsider joined the keyed cluster")
			}
			if !errors.Is(err, ErrJoin) {
				t.Errorf("Start error = %v, want ErrJoin", err)
			}
			if seen.Load() {
				t.Error("keyed cluster listed the outsider as a member")
			}
			checkPacketRejected(t, tc.key, nodes, recs[0])
		})
	}
}

// checkPacketRejected sends a user message packet straight to nodes[0]
// from a node holding key, then a marker from nodes[1] (both over UDP to the
// same socket), and checks only the marker is delivered.
func checkPacketRejected(t *testing.T, key []byte, nodes []*Node, rec *recorder) {
	t.Helper()
	out := startNode(t, localConfig(key), "outsider", func([]byte) {})
	target := memberlist.Address{Addr: nodes[0].Addr(), Name: nodes[0].Name()}
	if err := out.impl.ml.SendToAddress(target, []byte("forged")); err != nil {
		t.Fatalf("outsider send: %v", err)
	}
	if err := nodes[1].SendTo(nodes[0].Name(), []byte("marker")); err != nil {
		t.Fatalf("SendTo: %v", err)
	}
	waitFor(t, "the marker", func() bool { return rec.count("marker") == 1 })
	if rec.count("forged") != 0 {
		t.Error("message from outside the keyed cluster was delivered")
	}
}

func TestInvalidConfig(t *testing.T) {
	handle := func([]byte) {}
	for _, tc := range []struct {
		name   string
		cfg    Config
		node   string
		handle func([]byte)
	}{
		{"short key", Config{BindAddr: "127.0.0.1:0", SecretKey: []byte("short")}, "a", handle},
		{"17-byte key", Config{BindAddr: "127.0.0.1:0", SecretKey: make([]byte, 17)}, "a", handle},
		{"bind not host:port", Config{BindAddr: "nonsense"}, "a", handle},
		{"bind host name", Config{BindAddr: "localhost:0"}, "a", handle},
		{"bind port range", Config{BindAddr: "127.0.0.1:70000"}, "a", handle},
		{"advertise unspecified", Config{BindAddr: "127.0.0.1:0", AdvertiseAddr: "0.0.0.0:1"}, "a", handle},
		{"advertise host name", Config{BindAddr: "127.0.0.1:0", AdvertiseAddr: "example.com:1"}, "a", handle},
		{"empty join", Config{BindAddr: "127.0.0.1:0", Join: []string{""}}, "a", handle},
		{"profile", Config{BindAddr: "127.0.0.1:0", Profile: 7}, "a", handle},
		{"negative join timeout", Config{BindAddr: "127.0.0.1:0", JoinTimeout: -time.Second}, "a", handle},
		{"negative queue", Config{BindAddr: "127.0.0.1:0", QueueSize: -1}, "a", handle},
		{"empty name", Config{BindAddr: "127.0.0.1:0"}, "", handle},
		{"nil handle", Config{BindAddr: "127.0.0.1:0"}, "a", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			n, err := Start(tc.cfg, tc.node, tc.handle, nil)
			if !errors.Is(err, ErrInvalidConfig) {
				t.Errorf("Start error = %v, want ErrInvalidConfig", err)
			}
			if n != nil {
				t.Error("Start returned a node with its error")
				_ = n.Close()
			}
		})
	}
}

func TestBindAddrInUse(t *testing.T) {
	ln, err := net.ListenTCP("tcp", &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	n, err := Start(Config{BindAddr: ln.Addr().String()}, "a", func([]byte) {}, nil)
	if err == nil {
		_ = n.Close()
		t.Fatal("Start on a port in use succeeded")
	}
}

func TestJoinUnreachableTimesOut(t *testing.T) {
	cfg := localConfig(nil, freeAddr(t)) // Nothing listens there.
	cfg.JoinTimeout = 300 * time.Millisecond
	begin := time.Now()
	_, err := Start(cfg, "a", func([]byte) {}, nil)
	if !errors.Is(err, ErrJoin) {
		t.Fatalf("Start error = %v, want ErrJoin", err)
	}
	if took := time.Since(begin); took < cfg.JoinTimeout {
		t.Errorf("Start gave up after %v, before JoinTimeout %v", took, cfg.JoinTimeout)
	}
}

// TestJoinOwnAddress checks that a seed list naming the replica itself, as
// one list shared by every replica would, lets the first replica start.
func TestJoinOwnAddress(t *testing.T) {
	addr := freeAddr(t)
	cfg := localConfig(nil, addr)
	cfg.BindAddr = addr
	cfg.JoinTimeout = time.Second
	n := startNode(t, cfg, "first", func([]byte) {})
	if got := n.Members(); !slices.Equal(got, []string{"first"}) {
		t.Errorf("Members() = %v, want just itself", got)
	}
}

// freeAddr returns a loopback address whose port was free a moment ago.
func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.ListenTCP("tcp", &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// lockedBuffer is a bytes.Buffer safe for memberlist's concurrent logging.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func TestLoggerReceivesMemberlistLines(t *testing.T) {
	var out lockedBuffer
	cfg := localConfig(nil, freeAddr(t))
	cfg.JoinTimeout = 150 * time.Millisecond
	cfg.Logger = slog.New(slog.NewTextHandler(&out, &slog.HandlerOptions{Level: slog.LevelDebug}))
	if _, err := Start(cfg, "a", func([]byte) {}, nil); !errors.Is(err, ErrJoin) {
		t.Fatalf("Start error = %v, want ErrJoin", err)
	}
	logs := out.String()
	for _, want := range []string{
		`level=DEBUG msg="memberlist: failed to join`, // memberlist's line, level parsed
		`level=WARN msg="cluster: join failed, retrying"`,
	} {
		if !strings.Contains(logs, want) {
			t.Errorf("logs lack %q:\n%s", want, logs)
		}
	}
}

func TestOverflowDropsWithoutBlocking(t *testing.T) {
	sender := startNode(t, localConfig(testKey), "sender", func([]byte) {})
	entered := make(chan struct{})
	release := make(chan struct{})
	var handled, overflows atomic.Int64
	handle := func([]byte) {
		if handled.Add(1) == 1 {
			close(entered)
			<-release
		}
	}
	cfg := localConfig(testKey, sender.Addr())
	cfg.QueueSize = 2
	recv, err := Start(cfg, "receiver", handle, func() { overflows.Add(1) })
	if err != nil {
		t.Fatal(err)
	}
	defer recv.Close()
	defer close(release) // Before Close, which waits for the handler.
	waitForMembers(t, sender, 2)

	send := func(i int) {
		if err := sender.SendTo("receiver", fmt.Appendf(nil, "m%d", i)); err != nil {
			t.Fatalf("SendTo: %v", err)
		}
	}
	send(0)
	<-entered // The handler now blocks, holding m0.
	const total = 50
	for i := 1; i < total; i++ {
		send(i)
	}
	// memberlist handed over every message while the handler was blocked:
	// NotifyMsg never waited.
	waitFor(t, "all messages received", func() bool { return recv.Stats().Received == total })
	if got, want := recv.Stats().Dropped, uint64(total-1-cfg.QueueSize); got != want {
		t.Errorf("Dropped = %d, want %d", got, want)
	}
	release <- struct{}{} // Unblocks m0; the handler does not block again.
	waitFor(t, "onOverflow", func() bool { return overflows.Load() > 0 })
	waitFor(t, "the queued messages", func() bool { return handled.Load() == int64(1+cfg.QueueSize) })
}

func TestCallbackPanicRecovered(t *testing.T) {
	nodes, _ := startCluster(t, 1, nil)
	rec := &recorder{}
	handle := func(msg []byte) {
		if string(msg) == "boom" {
			panic("boom")
		}
		rec.handle(msg)
	}
	n := startNode(t, localConfig(nil, nodes[0].Addr()), "victim", handle)
	waitForMembers(t, nodes[0], 2)
	for _, m := range []string{"boom", "after"} {
		if err := nodes[0].SendTo("victim", []byte(m)); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, "the message after the panic", func() bool { return rec.count("after") == 1 })
	if got := n.Stats().Panics; got != 1 {
		t.Errorf("Stats().Panics = %d, want 1", got)
	}
}

func TestCloseLeavesAndIsIdempotent(t *testing.T) {
	nodes, _ := startCluster(t, 3, testKey)
	type event struct {
		name   string
		joined bool
	}
	events := make(chan event, 16)
	nodes[0].OnMembership(func(name string, joined bool) {
		events <- event{name, joined}
		_ = nodes[0].Members() // Callbacks may use the Node: no lock is held.
	})
	for range 2 {
		if err := nodes[2].Close(); err != nil {
			t.Fatalf("Close: %v", err)
		}
	}
	waitForMembers(t, nodes[0], 2)
	waitForMembers(t, nodes[1], 2)
	select {
	case ev := <-events:
		if ev != (event{"n2", false}) {
			t.Errorf("OnMembership got %+v, want n2 leaving", ev)
		}
	case <-time.After(waitTimeout):
		t.Fatal("no membership event for n2 leaving")
	}
	if err := nodes[2].Broadcast([]byte("x")); !errors.Is(err, ErrClosed) {
		t.Errorf("Broadcast after Close = %v, want ErrClosed", err)
	}
	if err := nodes[2].SendTo("n0", []byte("x")); !errors.Is(err, ErrClosed) {
		t.Errorf("SendTo after Close = %v, want ErrClosed", err)
	}
}

// BenchmarkDirectSend measures send→handler latency between two nodes on
// loopback for each direct-send transport; the result chose
// directSendReliable. Run it without -race:
//
//	go test -run '^$' -bench DirectSend -benchtime 3000x ./cluster/
func BenchmarkDirectSend(b *testing.B) {
	for _, tc := range []struct {
		name     string
		reliable bool
	}{
		{"best-effort", false},
		{"reliable", true},
	} {
		b.Run(tc.name, func(b *testing.B) {
			got := make(chan struct{}, 1)
			handle := func([]byte) { got <- struct{}{} }
			a := startNode(b, localConfig(testKey), "a", func([]byte) {})
			startNode(b, localConfig(testKey, a.Addr()), "b", handle)
			waitForMembers(b, a, 2)
			var to *memberlist.Node
			for _, m := range a.impl.ml.Members() {
				if m.Name == "b" {
					to = m
				}
			}
			send := a.impl.ml.SendBestEffort
			if tc.reliable {
				send = a.impl.ml.SendReliable
			}
			msg := bytes.Repeat([]byte("k"), 100) // A typical invalidation.
			lat := make([]time.Duration, 0, b.N)
			lost := 0
			b.ResetTimer()
			for range b.N {
				begin := time.Now()
				if err := send(to, msg); err != nil {
					b.Fatal(err)
				}
				select {
				case <-got:
					lat = append(lat, time.Since(begin))
				case <-time.After(time.Second):
					lost++
				}
			}
			b.StopTimer()
			slices.Sort(lat)
			if len(lat) > 0 {
				b.ReportMetric(float64(lat[len(lat)/2])/1e3, "p50-µs")
				b.ReportMetric(float64(lat[len(lat)*99/100])/1e3, "p99-µs")
			}
			b.ReportMetric(float64(lost), "lost")
		})
	}
}
