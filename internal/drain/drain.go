// Package drain is the wait every server's Shutdown makes: for the
// requests it has accepted to be answered, until its context ends, and
// what it tells its caller when the context ends first.
package drain

import (
	"context"
	"fmt"
	"sync"
)

// CutOff is Shutdown's error when its context ended before every request
// the server had accepted was answered. Callers read it with errors.As to
// log what was cut off; it matches the context's error too.
type CutOff struct {
	Requests int64 // requests accepted and not answered
	Cause    error // the context's cause
}

func (e *CutOff) Error() string {
	return fmt.Sprintf("%d requests cut off: %v", e.Requests, e.Cause)
}

func (e *CutOff) Unwrap() error { return e.Cause }

// Wait waits until done is closed or ctx ends. If ctx ends first and
// pending (how many requests the server holds unanswered, read then)
// is above 0, it returns a *CutOff; otherwise nil.
func Wait(ctx context.Context, done <-chan struct{}, pending func() int64) error {
	select {
	case <-done:
		return nil
	case <-ctx.Done():
	}
	if n := pending(); n > 0 {
		return &CutOff{Requests: n, Cause: context.Cause(ctx)}
	}
	return nil
}

// Done returns a channel closed once wg's count is zero, from a goroutine
// that lives until then: the caller must see the server's goroutines end
// (its Close does) and wait on the channel before returning.
func Done(wg *sync.WaitGroup) <-chan struct{} {
	done := make(chan struct{})
	go func() {
		wg.Wait()
		close(done)
	}()
	return done
}
