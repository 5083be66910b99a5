package fec

import (
	"net"
	"net/netip"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/udplab/udplab/message"
)

// memNet is an in-memory datagram network for tests under testing/synctest:
// its conns block on channels and timers, which a synctest bubble sees
// through, so virtual time moves exactly when every goroutine waits. Its
// addresses are *net.UDPAddr, as a real socket's are.
type memNet struct {
	mu    sync.Mutex
	conns map[netip.AddrPort]*memConn
}

type memPacket struct {
	b    []byte
	from net.Addr
	at   time.Time // when it was sent, and so arrived
}

type memConn struct {
	net  *memNet
	addr *net.UDPAddr
	in   chan memPacket

	// fate, if set, says how many copies of this conn's n-th datagram
	// (from 0) reach the receiver: 0 drops it, 2 duplicates it.
	fate func(n int) int

	mu      sync.Mutex
	sent    int
	rdl     time.Time     // the read deadline
	changed chan struct{} // closed when rdl changes

	closeOnce sync.Once
	closed    chan struct{}
}

func newMemNet() *memNet { return &memNet{conns: map[netip.AddrPort]*memConn{}} }

// listen returns a conn at addr ("10.0.0.1:4000").
func (n *memNet) listen(addr string) *memConn {
	ap := netip.MustParseAddrPort(addr)
	c := &memConn{net: n, addr: net.UDPAddrFromAddrPort(ap), in: make(chan memPacket, 1<<14),
		changed: make(chan struct{}), closed: make(chan struct{})}
	n.mu.Lock()
	n.conns[ap] = c
	n.mu.Unlock()
	return c
}

func (c *memConn) WriteTo(b []byte, addr net.Addr) (int, error) {
	select {
	case <-c.closed:
		return 0, net.ErrClosed
	default:
	}
	c.mu.Lock()
	n := c.sent
	c.sent++
	c.mu.Unlock()
	copies := 1
	if c.fate != nil {
		copies = c.fate(n)
	}
	c.net.mu.Lock()
	peer := c.net.conns[addr.(*net.UDPAddr).AddrPort()]
	c.net.mu.Unlock()
	for range copies {
		if peer != nil {
			peer.in <- memPacket{append([]byte(nil), b...), c.addr, time.Now()}
		}
	}
	return len(b), nil
}

func (c *memConn) ReadFrom(b []byte) (int, net.Addr, error) {
	for {
		c.mu.Lock()
		dl, changed := c.rdl, c.changed
		c.mu.Unlock()
		if !dl.IsZero() && !time.Now().Before(dl) {
			return 0, nil, os.ErrDeadlineExceeded
		}
		if n, from, ok, err := c.wait(b, dl, changed); ok {
			return n, from, err
		}
	}
}

// wait waits for a datagram, Close or the deadline dl (none if zero); ok
// is false when the deadline changed first.
func (c *memConn) wait(b []byte, dl time.Time, changed <-chan struct{}) (int, net.Addr, bool, error) {
	var expired <-chan time.Time
	if !dl.IsZero() {
		t := time.NewTimer(time.Until(dl))
		defer t.Stop()
		expired = t.C
	}
	select {
	case p := <-c.in:
		return copy(b, p.b), p.from, true, nil
	case <-c.closed:
		return 0, nil, true, net.ErrClosed
	case <-expired:
		return 0, nil, true, os.ErrDeadlineExceeded
	case <-changed:
		return 0, nil, false, nil
	}
}

// recv returns the next datagram waiting, or false if none is.
func (c *memConn) recv() (memPacket, bool) {
	select {
	case p := <-c.in:
		return p, true
	default:
		return memPacket{}, false
	}
}

func (c *memConn) SetReadDeadline(t time.Time) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.rdl = t
	close(c.changed)
	c.changed = make(chan struct{})
	return nil
}

func (c *memConn) Close() error {
	c.closeOnce.Do(func() { close(c.closed) })
	return nil
}

func (c *memConn) LocalAddr() net.Addr                { return c.addr }
func (c *memConn) SetDeadline(t time.Time) error      { return c.SetReadDeadline(t) }
func (c *memConn) SetWriteDeadline(t time.Time) error { return nil }

// newClient returns a Conn over pc to remote, closed as t ends.
func newClient(t testing.TB, pc net.PacketConn, remote net.Addr, cfg *Config) *Conn {
	t.Helper()
	c, err := NewConn(pc, remote, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// newServer returns a Server of h over pc, closed as t ends.
func newServer(t testing.TB, pc net.PacketConn, h message.Handler, cfg *Config) *Server {
	t.Helper()
	s, err := NewServer(pc, h, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}
