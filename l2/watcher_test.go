package l2_test

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/strata-cache/strata/internal/redistest"
	"github.com/strata-cache/strata/l2"
)

// watcher records what a store's health watch tells it.
type watcher struct {
	routes   chan string
	repaired chan []string // namespace, then its keys
}

func newWatcher() *watcher {
	return &watcher{routes: make(chan string, 100), repaired: make(chan []string, 100)}
}

func (w *watcher) RouteChanged(reason string) { w.routes <- reason }

func (w *watcher) Repaired(ns string, keys []string) { w.repaired <- append([]string{ns}, keys...) }

// next returns the next value on c, failing the test after a while.
func next[T any](t *testing.T, c <-chan T, what string) T {
	t.Helper()
	select {
	case v := <-c:
		return v
	case <-time.After(10 * time.Second):
		t.Fatalf("no %s", what)
		panic("unreachable")
	}
}

// A returning single node's repair names the namespace and the keys whose
// writes failed, or were refused, while it was away.
func TestWatcherHearsRepairs(t *testing.T) {
	ctx := context.Background()
	srv := redistest.Start(t)
	w := newWatcher()
	s, err := l2.OpenWatched(l2.Config{Addrs: []string{srv.Addr()}, Timeout: testTimeout}, w)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	srv.Pause()
	short, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
	defer cancel()
	if err := s.Write(short, "ns", "a", []byte("v"), time.Minute); err == nil {
		t.Fatal("Write to a paused server succeeded")
	}
	if err := s.Delete(ctx, "ns", "b", "c"); err == nil {
		t.Fatal("Delete on a paused server succeeded") // refused: it is out by now
	}
	srv.Resume()
	got := next(t, w.repaired, "repair reported")
	if slices.Sort(got[1:]); !slices.Equal(got, []string{"ns", "a", "b", "c"}) {
		t.Errorf("repaired %v, want ns a b c (a refused delete did not happen either)", got)
	}
	if len(w.routes) > 0 {
		t.Errorf("a single node reported a route change: %q", <-w.routes)
	}
}

// A Ring shard's return to service is a route change; the joins of the first
// check at Open are not.
func TestWatcherHearsRouteChanges(t *testing.T) {
	servers := redistest.StartShards(t, 3)
	w := newWatcher()
	s, err := l2.OpenWatched(l2.Config{Addrs: addrsOf(servers)}, w)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	servers[0].Pause()
	redistest.WaitFor(t, 10*time.Second, func() bool { return !s.Health()[0].Serving }, "shard0 leaves")
	servers[0].Resume()
	if got, want := next(t, w.routes, "route change reported"), "shard0 back in service: cleaned"; got != want {
		t.Errorf("first route change %q, want %q", got, want)
	}
}
