package reliable

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	kcp "github.com/xtaci/kcp-go/v5"
)

// Drain timing. kcp-go says nothing of what its peer has acknowledged, so
// a draining session that has answered everything waits two of its
// retransmission timeouts after its last reply, at least minSettle and at
// most maxSettle, for the reply (or its one retransmission) to arrive.
const (
	minSettle = 100 * time.Millisecond
	maxSettle = 2 * time.Second
)

// drainState is what Shutdown watches: whether a drain is on, and each
// session's activity.
type drainState struct {
	on       atomic.Bool
	mu       sync.Mutex
	sessions map[*kcp.UDPSession]*activity
}

// activity is one session's: when it last answered a request.
type activity struct {
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

// open is how many tracked sessions there are.
func (d *drainState) open() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return len(d.sessions)
}

// wake makes every session's blocked read return what kcp-go holds for it,
// then time out.
func (d *drainState) wake() {
	d.mu.Lock()
	defer d.mu.Unlock()
	for sess := range d.sessions {
		sess.SetReadDeadline(time.Now())
	}
}

// setReadDeadline sets sess's deadline for its next request: the idle
// timeout, or, draining, now, so that the read returns what kcp-go holds
// (it returns data before it checks the deadline) and then times out. The
// drain flag is read after the deadline is set: Shutdown sets the flag
// before it wakes the sessions, so one of the two sees the other.
func (s *Server) setReadDeadline(sess *kcp.UDPSession) {
	sess.SetReadDeadline(time.Now().Add(s.cfg.Idle))
	if s.drain.on.Load() {
		sess.SetReadDeadline(time.Now())
	}
}

// settle waits, draining, for sess's last replies to be acknowledged.
func (s *Server) settle(sess *kcp.UDPSession, act *activity) {
	wait := min(max(minSettle, 2*time.Duration(sess.GetRTO())*time.Millisecond), maxSettle)
	left := time.Until(time.Unix(0, act.last.Load()).Add(wait))
	if left <= 0 {
		return
	}
	t := time.NewTimer(left)
	defer t.Stop()
	select {
	case <-t.C:
	case <-s.closing:
	}
}

// Shutdown drains the server. The gate validates no new source and drops
// every packet carrying a data segment or an FEC shard that could rebuild
// one, so no new request is taken (KCP acknowledges a request on arrival:
// these were never acknowledged). Each session, including one kcp-go
// opened for a source validated just before, answers the requests kcp-go
// holds for it, waits for its replies to be acknowledged (see settle), and
// closes. Once every session has, or ctx ends, Shutdown closes the server;
// the error then says how many sessions were cut off.
func (s *Server) Shutdown(ctx context.Context) error {
	s.drain.on.Store(true)
	s.gate.drain()
	s.drain.wake()
	// A session kcp-go has opened but the accept loop not yet taken
	// would be missed by the first count: give the loop a moment.
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	select {
	case <-time.After(minSettle):
	case <-ctx.Done():
	}
	for {
		n := s.drain.open()
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
