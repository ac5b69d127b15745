package cluster

import (
	"context"
	"log/slog"
	"sync"
	"sync/atomic"
	"testing"
)

type levelLog struct {
	mu  sync.Mutex
	got []slog.Level
}

func (l *levelLog) Enabled(context.Context, slog.Level) bool { return true }
func (l *levelLog) WithAttrs([]slog.Attr) slog.Handler       { return l }
func (l *levelLog) WithGroup(string) slog.Handler            { return l }
func (l *levelLog) Handle(_ context.Context, r slog.Record) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.got = append(l.got, r.Level)
	return nil
}

// memberlist's lines keep their level until Close begins; then they are
// debug, so its complaints about the sockets its shutdown closed ("Failed to
// send UDP ping: ... use of closed network connection", at [ERR]) are no
// error lines of a clean Close.
func TestMemberlistLinesAreDebugOnceClosing(t *testing.T) {
	h := &levelLog{}
	var closing atomic.Bool
	sink := logSink{logger: slog.New(h), closing: &closing}
	_, _ = sink.Write([]byte("[ERR] memberlist: Failed to send UDP ping: write udp: use of closed network connection\n"))
	closing.Store(true)
	_, _ = sink.Write([]byte("[ERR] memberlist: Failed to send UDP ping: write udp: use of closed network connection\n"))
	_, _ = sink.Write([]byte("[WARN] memberlist: something\n"))
	want := []slog.Level{slog.LevelError, slog.LevelDebug, slog.LevelDebug}
	if len(h.got) != len(want) {
		t.Fatalf("levelLog %v, want %v", h.got, want)
	}
	for i := range want {
		if h.got[i] != want[i] {
			t.Errorf("levelLog %v, want %v", h.got, want)
		}
	}
}
