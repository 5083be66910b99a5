// Package deadline maps a context onto a socket deadline, so that blocking
// socket calls honour both the context's deadline and its cancellation. Both
// transports use it; it exists once so that they report timeouts alike.
package deadline

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"time"
)

// past is a deadline already gone, used to wake a blocked call at once.
var past = time.Unix(1, 0)

// farFuture stands in for "no deadline" when ctx can still be cancelled.
// kcp-go's Read and Write look at a deadline set during the call only if one
// was set when the call began; a far deadline keeps them on that path, so
// cancellation still wakes them. About a century: within time.Duration.
const farFuture = 100 * 365 * 24 * time.Hour

// Watch sets the deadline from ctx with set, and arranges for set(past) when
// ctx is cancelled before stop is called. stop waits for that callback, if it
// started, so a later Watch on the same socket cannot be overwritten by it.
func Watch(ctx context.Context, set func(time.Time) error) (stop func()) {
	dl, ok := ctx.Deadline()
	if ctx.Done() == nil {
		_ = set(time.Time{}) // nothing can wake the call but Close
		return func() {}
	}
	if !ok {
		dl = time.Now().Add(farFuture)
	}
	_ = set(dl)
	fired := make(chan struct{})
	cancel := context.AfterFunc(ctx, func() {
		_ = set(past)
		close(fired)
	})
	return func() {
		if !cancel() {
			<-fired
		}
	}
}

// Err translates err from a socket call made under Watch. When ctx is done,
// or the call timed out at ctx's deadline (the socket's timer can fire a
// moment before the context's), it returns an error matching ctx's cause, and
// also os.ErrDeadlineExceeded when that cause is a passed deadline. Otherwise
// err is returned unchanged.
func Err(ctx context.Context, err error) error {
	if err == nil {
		return nil
	}
	if ctx.Err() == nil {
		dl, ok := ctx.Deadline()
		var ne net.Error
		if !ok || !errors.As(err, &ne) || !ne.Timeout() || time.Now().Before(dl) {
			return err
		}
		return fmt.Errorf("%w (%w)", os.ErrDeadlineExceeded, context.DeadlineExceeded)
	}
	cause := context.Cause(ctx)
	if errors.Is(cause, context.DeadlineExceeded) {
		return fmt.Errorf("%w (%w)", os.ErrDeadlineExceeded, cause)
	}
	return cause
}
