package reliable

import (
	"context"
	"fmt"
	"sync/atomic"
	"time"
)

// Drain timing. A draining session that has answered everything waits
// for its replies to be acknowledged, at least minSettle after its last
// reply (the peer's acknowledgement may be on its way) and at most
// maxSettle (a peer that has gone acknowledges nothing).
const (
	minSettle = 100 * time.Millisecond
	maxSettle = 2 * time.Second
)

// drainState is what Shutdown watches: whether a drain is on, and how many
// sessions are open.
type drainState struct {
	on   atomic.Bool
	open atomic.Int64
}

// activity is one session's: when it last answered a request, and
// whether it is answering one now.
type activity struct {
	last      atomic.Int64 // UnixNano
	answering atomic.Bool
}

func (d *drainState) track() *activity {
	a := &activity{}
	a.last.Store(time.Now().UnixNano())
	d.open.Add(1)
	return a
}

func (d *drainState) untrack() { d.open.Add(-1) }

// touch records that sess answered a request now: its idle time, and its
// drain's settling, count from here.
func (s *session) touch() {
	now := time.Now()
	s.act.last.Store(now.UnixNano())
	s.mu.Lock()
	s.active = now
	s.mu.Unlock()
}

// settle waits, draining, until everything sess sent is acknowledged, at
// least minSettle after its last reply and at most maxSettle.
func (s *Server) settle(sess *session) {
	last := time.Unix(0, sess.act.last.Load())
	t := time.NewTimer(time.Until(last.Add(minSettle)))
	defer t.Stop()
	select {
	case <-t.C:
	case <-s.closing:
		return
	}
	t.Reset(time.Until(last.Add(maxSettle)))
	for !sess.settled() {
		select {
		case <-t.C:
			return
		case <-s.closing:
			return
		case <-sess.writable: // an acknowledgement came
		case <-sess.die:
			return
		}
	}
}

// Shutdown drains the server. The gate validates no new source and drops
// every packet carrying a data segment or an FEC shard that could rebuild
// one, so no new request is taken (KCP acknowledges a request on arrival:
// these were never acknowledged). Each session, including one opened for
// a source validated just before, answers the requests KCP holds for it,
// waits for its replies to be acknowledged (see settle), and closes. Once every session has, or ctx ends, Shutdown closes the server;
// the error then says how many sessions were cut off.
func (s *Server) Shutdown(ctx context.Context) error {
	s.drain.on.Store(true)
	s.gate.drain()
	s.l.drain()
	// A session opened as the drain began is served as it opens; the
	// first count waits a moment for it.
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	select {
	case <-time.After(minSettle):
	case <-ctx.Done():
	}
	for s.drain.open.Load() > 0 {
		select {
		case <-ctx.Done():
			n := s.unsettled()
			s.Close()
			if n == 0 {
				return nil
			}
			return fmt.Errorf("reliable: %d sessions cut off with requests or replies in flight: %w", n, context.Cause(ctx))
		case <-tick.C:
		}
	}
	return s.Close()
}

// unsettled counts the sessions with requests or replies in flight:
// messages KCP holds unread, a request being answered, replies not yet
// acknowledged. One that is only waiting out minSettle is not.
func (s *Server) unsettled() (n int) {
	for _, sess := range s.l.sessions() {
		sess.mu.Lock()
		if !sess.closed && (sess.kcp.WaitSnd() > 0 || sess.kcp.PeekSize() > 0 || len(sess.rest) > 0 || sess.act.answering.Load()) {
			n++
		}
		sess.mu.Unlock()
	}
	return n
}
