package cluster

import (
	"context"
	"log/slog"
	"strings"
	"sync/atomic"
)

// logSink routes memberlist's log.Logger lines to a slog.Logger, keeping
// memberlist's level, and carries this package's own few log lines. A nil
// logger discards everything. Once closing is set, memberlist's lines are
// debug: its complaints about the sockets Close just shut ("use of closed
// network connection") are not errors of a clean shutdown.
type logSink struct {
	logger  *slog.Logger
	closing *atomic.Bool
}

// levels maps memberlist's line prefixes to slog levels.
var levels = []struct {
	prefix string
	level  slog.Level
}{
	{"[DEBUG] ", slog.LevelDebug},
	{"[INFO] ", slog.LevelInfo},
	{"[WARN] ", slog.LevelWarn},
	{"[ERR] ", slog.LevelError},
	{"[ERROR] ", slog.LevelError},
}

// Write logs one memberlist line; lines without a known prefix are debug.
func (s logSink) Write(p []byte) (int, error) {
	if s.logger == nil {
		return len(p), nil
	}
	line := strings.TrimRight(string(p), "\n")
	level := slog.LevelDebug
	for _, l := range levels {
		if rest, ok := strings.CutPrefix(line, l.prefix); ok {
			line, level = rest, l.level
			break
		}
	}
	if s.closing != nil && s.closing.Load() {
		level = slog.LevelDebug
	}
	s.logger.Log(context.Background(), level, line)
	return len(p), nil
}

func (s logSink) warn(msg string, args ...any) {
	if s.logger != nil {
		s.logger.Warn(msg, args...)
	}
}

func (s logSink) error(msg string, args ...any) {
	if s.logger != nil {
		s.logger.Error(msg, args...)
	}
}

func (s logSink) info(msg string, args ...any) {
	if s.logger != nil {
		s.logger.Info(msg, args...)
	}
}
