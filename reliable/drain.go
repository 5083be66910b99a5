package reliable

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	kcp "github.com/xtaci/kcp-go/v5"

	"github.com/udplab/udplab/internal/connset"
)

// minSettle is the least time a session must be quiet, with nothing
// unanswered, before a drain counts its replies as acknowledged: kcp-go
// says nothing of what its peer has acknowledged, so the drain waits two
// retransmission timeouts, and at least this long, after the session's
// last packet or reply.
const minSettle = 100 * time.Millisecond

// drainState is what Shutdown watches: whether a drain is on, and each
// session's activity.
type drainState struct {
	on       atomic.Bool
	mu       sync.Mutex
	sessions map[*kcp.UDPSession]*activity
}

// activity is one session's: whether a request is being answered, and
// when it last answered one.
type activity struct {
	busy atomic.Bool
	last atomic.Int64 // UnixNano
}

func (d *drainState) track(sess *kcp.UDPSession) *activity {
	a := &activity{}
	a.last.Store(time.Now().UnixNano())
	d.mu.Lock()
	if d.sessions == nil {
		d.sessions = make(map[*kcp.UDPSession]*activity)
	}
	d.sessions[sess] = a
	d.mu.Unlock()
	return a
}

func (d *drainState) untrack(sess *kcp.UDPSession) {
	d.mu.Lock()
	delete(d.sessions, sess)
	d.mu.Unlock()
}

// admitSession adds sess to the server's sessions, unless a drain is on.
func (s *Server) admitSession(sess *kcp.UDPSession) connset.Outcome {
	if s.drain.on.Load() {
		sess.Close()
		return connset.Closed
	}
	return s.sessions.Add(sess)
}

// unsettled counts the sessions that may still have a request to answer
// or a reply not yet acknowledged.
func (s *Server) unsettled(now time.Time) int {
	s.drain.mu.Lock()
	defer s.drain.mu.Unlock()
	n := 0
	for sess, a := range s.drain.sessions {
		last := time.Unix(0, a.last.Load())
		if seen := s.gate.lastSeen(sess.RemoteAddr()); seen.After(last) {
			last = seen
		}
		settle := max(minSettle, 2*time.Duration(sess.GetRTO())*time.Millisecond)
		if a.busy.Load() || now.Sub(last) < settle {
			n++
		}
	}
	return n
}

// Shutdown drains the server: it opens no new session, goes on answering
// the sessions it has (KCP acknowledges a request on arrival, so every
// request that arrives is answered), and once every session has been quiet
// long enough for its replies to be acknowledged, or ctx ends, closes the
// server. The error says how many sessions were cut off with work in
// flight.
func (s *Server) Shutdown(ctx context.Context) error {
	s.drain.on.Store(true)
	s.gate.drain()
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for {
		n := s.unsettled(time.Now())
		if n == 0 {
			return s.Close()
		}
		select {
		case <-ctx.Done():
			s.Close()
			return fmt.Errorf("reliable: %d sessions cut off with requests or replies in flight: %w", n, context.Cause(ctx))
		case <-tick.C:
		}
	}
}
