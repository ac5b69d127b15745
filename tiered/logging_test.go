package tiered_test

import (
	"context"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/strata-cache/strata/cluster"
	"github.com/strata-cache/strata/internal/redistest"
	"github.com/strata-cache/strata/l2"
	"github.com/strata-cache/strata/tiered"
)

// logRecorder is a slog.Handler that keeps every record's level and message.
type logRecorder struct {
	mu   sync.Mutex
	recs []slog.Record
}

func (r *logRecorder) Enabled(context.Context, slog.Level) bool { return true }
func (r *logRecorder) WithAttrs([]slog.Attr) slog.Handler       { return r }
func (r *logRecorder) WithGroup(string) slog.Handler            { return r }

func (r *logRecorder) Handle(_ context.Context, rec slog.Record) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.recs = append(r.recs, rec.Clone())
	return nil
}

// has reports whether a record at level with msg was logged.
func (r *logRecorder) has(level slog.Level, msg string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, rec := range r.recs {
		if rec.Level == level && rec.Message == msg {
			return true
		}
	}
	return false
}

// atLeast returns the messages logged at level or above.
func (r *logRecorder) atLeast(level slog.Level) []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []string
	for _, rec := range r.recs {
		if rec.Level >= level {
			out = append(out, rec.Message)
		}
	}
	return out
}

// One logger: a server's outage and its return reach Config.Logger, a
// warning and an info line, through the health watch's own logger, which
// tiered wires to it.
func TestOutageAndRecoveryAreLogged(t *testing.T) {
	rec := &logRecorder{}
	srv := redistest.Start(t)
	c := newClient(t, tiered.Config{Logger: slog.New(rec), Redis: l2.Config{Addrs: []string{srv.Addr()}}})
	_ = newCache(t, c, "logs", tiered.Options[string]{})

	srv.Pause()
	redistest.WaitFor(t, 10*time.Second, func() bool { return rec.has(slog.LevelWarn, "strata: L2 server out of service") },
		"a warning that the server went out of service")
	srv.Resume()
	redistest.WaitFor(t, 10*time.Second, func() bool { return rec.has(slog.LevelInfo, "strata: L2 server back in service") },
		"an info line that the server returned")
}

// A clean Close of two gossiping replicas logs nothing at ERROR. memberlist's
// complaint about the sockets its own shutdown closed comes only when a probe
// is in flight at that moment, which this cannot force: cluster's
// TestMemberlistLinesAreDebugOnceClosing shows those lines are demoted.
func TestCleanCloseLogsNoError(t *testing.T) {
	rec := &logRecorder{}
	srv := redistest.Start(t)
	redisCfg := l2.Config{Addrs: []string{srv.Addr()}}
	a, err := tiered.NewClient(context.Background(), tiered.Config{NodeID: "a", Logger: slog.New(rec), Redis: redisCfg,
		Gossip: &cluster.Config{BindAddr: "127.0.0.1:0", Profile: cluster.ProfileLocal}})
	if err != nil {
		t.Fatal(err)
	}
	b, err := tiered.NewClient(context.Background(), tiered.Config{NodeID: "b", Logger: slog.New(rec), Redis: redisCfg,
		Gossip: &cluster.Config{BindAddr: "127.0.0.1:0", Profile: cluster.ProfileLocal, Join: []string{a.GossipAddr()}}})
	if err != nil {
		t.Fatal(err)
	}
	cache, err := tiered.NewCache(a, "logs", tiered.Options[string]{})
	if err != nil {
		t.Fatal(err)
	}
	if err := cache.Set(context.Background(), "k", "v"); err != nil {
		t.Fatal(err)
	}
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	if errs := rec.atLeast(slog.LevelError); len(errs) > 0 {
		t.Errorf("a clean Close logged at ERROR: %s", strings.Join(errs, "; "))
	}
}
