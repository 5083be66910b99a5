package link

import (
	"net"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/udplab/udplab/internal/conntest"
)

// orderSink records the datagrams written to it, in the order the writes
// began, and holds a write of any payload in hold until release closes.
type orderSink struct {
	mu      sync.Mutex
	got     []string
	hold    map[string]bool
	entered chan string
	release chan struct{}
}

func newOrderSink(hold ...string) *orderSink {
	s := &orderSink{hold: map[string]bool{}, entered: make(chan string, 16), release: make(chan struct{})}
	for _, h := range hold {
		s.hold[h] = true
	}
	return s
}

func (s *orderSink) WriteTo(b []byte, _ net.Addr) (int, error) {
	s.mu.Lock()
	s.got = append(s.got, string(b))
	s.mu.Unlock()
	if s.hold[string(b)] {
		s.entered <- string(b)
		<-s.release
	}
	return len(b), nil
}

func (s *orderSink) written() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.got)
}

func setSpec(t *testing.T, l *Link, spec string) {
	t.Helper()
	s, err := Parse(spec)
	if err != nil {
		t.Fatal(err)
	}
	if err := l.Set(s); err != nil {
		t.Fatal(err)
	}
}

// TestOutboxBeforeLoop: a packet the delay loop delivers must not overtake
// one that went on at once before it and still waits in the caller's
// outbox. Here B, sent after A, is due already when it comes (it arrived
// long ago): the loop delivers it at once, and A must be written first.
func TestOutboxBeforeLoop(t *testing.T) {
	l := newLink(t, "", nil)
	d := l.dirs[Up]
	s := newOrderSink()
	addr := &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 9}
	ob := newOutbox()
	d.send([]byte("A"), addr, s, ob, time.Time{}) // nothing to impair: into ob
	setSpec(t, l, "delay=1ms")
	d.send([]byte("B"), addr, s, ob, time.Now().Add(-time.Second)) // held, and due
	conntest.WaitFor(t, func() bool { return slices.Contains(s.written(), "B") })
	ob.flush()
	if got := s.written(); !slices.Equal(got, []string{"A", "B"}) {
		t.Errorf("written %v, want [A B]: the loop overtook the outbox", got)
	}
}

// TestLoopBatchBeforeNew: a packet that would go on at once must not
// overtake those the delay loop has taken from its queue and is still
// writing: it waits behind them.
func TestLoopBatchBeforeNew(t *testing.T) {
	l := newLink(t, "delay=1ms", nil)
	d := l.dirs[Up]
	s := newOrderSink("B0", "B1")
	addr := &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 9}
	past := time.Now().Add(-time.Second)
	d.send([]byte("B0"), addr, s, nil, past)
	<-s.entered // the loop is writing B0: B1 and B2 wait for it, due
	d.send([]byte("B1"), addr, s, nil, past)
	d.send([]byte("B2"), addr, s, nil, past)
	s.release <- struct{}{} // B0 done: the loop takes B1 and B2 at once
	<-s.entered             // and is writing B1, with B2 still to write
	setSpec(t, l, "")
	d.send([]byte("A"), addr, s, nil, time.Time{})
	close(s.release)
	conntest.WaitFor(t, func() bool { return len(s.written()) == 4 })
	if got := s.written(); !slices.Equal(got, []string{"B0", "B1", "B2", "A"}) {
		t.Errorf("written %v, want [B0 B1 B2 A]: A overtook the loop's batch", got)
	}
	if st := l.Stats(Up); st.Delivered != 4 {
		t.Errorf("stats %+v, want 4 delivered", st)
	}
}
