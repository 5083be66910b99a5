package reliable

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/udplab/udplab/internal/conntest"
	"github.com/udplab/udplab/message"
)

// TestShutdownCountsOnlyUnsettled cuts two drains short: one whose only
// session has everything acknowledged and is waiting out minSettle after
// its last reply, which is not cut off (Shutdown returns nil), and one
// whose session's reply is never acknowledged (its client went), which
// is: one session.
func TestShutdownCountsOnlyUnsettled(t *testing.T) {
	t.Run("settling", func(t *testing.T) {
		cfg := Config{NoFEC: true, Idle: time.Hour}
		s := startServer(t, "udp4", "127.0.0.1:0", message.Greet, cfg)
		conntest.RoundTrip(t, dial(t, s.Addr(), cfg), "Alice")
		sess := onlySession(t, s)
		conntest.WaitFor(t, sess.quiet)
		sess.act.last.Store(time.Now().Add(time.Hour).UnixNano()) // its last reply: still to settle
		ctx, cancel := context.WithTimeout(context.Background(), time.Millisecond)
		defer cancel()
		if err := s.Shutdown(ctx); err != nil {
			t.Errorf("Shutdown = %v, want nil: nothing was in flight", err)
		}
	})
	t.Run("unacknowledged", func(t *testing.T) {
		s, _ := unackedSession(t)
		ctx, cancel := context.WithTimeout(context.Background(), time.Millisecond)
		defer cancel()
		if err := s.Shutdown(ctx); err == nil || !strings.Contains(err.Error(), "1 sessions cut off") {
			t.Errorf("Shutdown = %v, want 1 session cut off", err)
		}
	})
}
