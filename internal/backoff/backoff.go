// Package backoff paces a serving loop whose socket call keeps failing, as
// net/http paces a failing Accept, so that a broken socket (or a process
// out of file descriptors) cannot spin a core.
package backoff

import (
	"log/slog"
	"time"
)

// The first wait and the longest, net/http's.
const (
	first = 5 * time.Millisecond
	most  = time.Second
)

// Backoff is the wait before a failed call is tried again. The zero value
// is ready; one goroutine at a time.
type Backoff struct{ d time.Duration }

// Next returns the wait after one more failure: 5ms, doubling with each
// failure in a row, up to 1s.
func (b *Backoff) Next() time.Duration {
	b.d = min(max(2*b.d, first), most)
	return b.d
}

// Reset starts over after a call that succeeded.
func (b *Backoff) Reset() { b.d = 0 }

// Wait waits d, or until done is closed; it reports whether d passed.
func Wait(d time.Duration, done <-chan struct{}) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-done:
		return false
	}
}

// Retry paces a serving loop after its socket call failed with err: it
// logs msg at warn level with the error and the wait, then waits. It
// reports whether the loop should try again: false once done is closed.
func (b *Backoff) Retry(log *slog.Logger, msg string, err error, done <-chan struct{}, attrs ...any) bool {
	wait := b.Next()
	log.Warn(msg, append(attrs, "err", err, "retry_in", wait)...)
	return Wait(wait, done)
}
