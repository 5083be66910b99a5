// Package logrl rate-limits log lines by kind, for errors that packets
// cause: a flood must not turn into a flood of lines. Each kind writes at
// most one line per interval; the next line it writes says how many it
// suppressed in between.
package logrl

import (
	"context"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"
)

// DefaultEvery is the interval when New is given none: a line a second per
// kind is enough to see that something keeps happening, and what.
const DefaultEvery = time.Second

// maxKinds bounds the kinds a Logger tracks. Keys are meant to be a few
// fixed strings, one per call site; should a caller build them from
// packets, the kinds past this share one entry, so memory stays bounded.
const maxKinds = 64

// overflowKey is the entry the kinds past maxKinds share.
const overflowKey = "\x00overflow"

// Logger wraps a *slog.Logger, writing at most one line per kind per
// interval. Its methods are safe for concurrent use, and a suppressed line
// costs no allocation (given arguments that are already interfaces or
// constants, as errors, net.Addrs and literals are).
type Logger struct {
	l     *slog.Logger
	every time.Duration

	mu    sync.Mutex
	kinds map[string]*kind
}

// kind is one key's state.
type kind struct {
	next       time.Time // when its next line may be written
	suppressed uint64    // lines dropped since the last one written
	level      slog.Level
	msg        string // the last suppressed line's message, for Flush
}

// New returns a Logger writing to l at most one line per kind every
// every; zero means DefaultEvery, and a nil l means slog.Default().
func New(l *slog.Logger, every time.Duration) *Logger {
	if l == nil {
		l = slog.Default()
	}
	if every <= 0 {
		every = DefaultEvery
	}
	return &Logger{l: l, every: every, kinds: map[string]*kind{}}
}

// Warn logs msg with args at warning level, unless a line of kind key was
// written less than the interval ago; then it only counts it.
func (l *Logger) Warn(key, msg string, args ...any) { l.log(slog.LevelWarn, key, msg, args) }

// Error is Warn at error level.
func (l *Logger) Error(key, msg string, args ...any) { l.log(slog.LevelError, key, msg, args) }

// Debug is Warn at debug level. Nothing is counted while debug lines are
// off.
func (l *Logger) Debug(key, msg string, args ...any) { l.log(slog.LevelDebug, key, msg, args) }

func (l *Logger) log(level slog.Level, key, msg string, args []any) {
	ctx := context.Background()
	if !l.l.Enabled(ctx, level) {
		return
	}
	now := time.Now()
	l.mu.Lock()
	k := l.kind(key)
	if now.Before(k.next) {
		k.suppressed++
		k.level, k.msg = level, msg
		l.mu.Unlock()
		return
	}
	n := k.suppressed
	k.suppressed, k.next = 0, now.Add(l.every)
	l.mu.Unlock()
	if n > 0 {
		args = append(args[:len(args):len(args)], "suppressed", n)
	}
	l.l.Log(ctx, level, msg, args...)
}

// kind returns, with l.mu held, key's state, creating it on first use.
func (l *Logger) kind(key string) *kind {
	if k, ok := l.kinds[key]; ok {
		return k
	}
	if len(l.kinds) >= maxKinds {
		key = overflowKey
		if k, ok := l.kinds[key]; ok {
			return k
		}
	}
	k := &kind{}
	l.kinds[key] = k
	return k
}

// Flush writes, for every kind with lines suppressed since its last one,
// a line with its last message and the count, so that the count is not
// lost when the program ends.
func (l *Logger) Flush() {
	type pending struct {
		level slog.Level
		msg   string
		n     uint64
	}
	var out []pending
	l.mu.Lock()
	for _, k := range l.kinds {
		if k.suppressed > 0 {
			out = append(out, pending{k.level, k.msg, k.suppressed})
			k.suppressed = 0
		}
	}
	l.mu.Unlock()
	slices.SortFunc(out, func(a, b pending) int { return strings.Compare(a.msg, b.msg) })
	for _, p := range out {
		l.l.Log(context.Background(), p.level, p.msg, "suppressed", p.n)
	}
}
