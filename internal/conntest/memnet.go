package conntest

import (
	"encoding/binary"
	"net"
	"net/netip"
	"os"
	"sync"
	"time"
)

// memQueue is how many datagrams a MemConn holds unread; past it, as a
// full socket buffer does, it drops what arrives.
const memQueue = 1 << 14

// MemNet is an in-memory datagram network for servers fed by hand: a
// datagram sent to an address arrives at the MemConn listening there, or
// vanishes, and Inject delivers a datagram from any source address at
// all, as a forger on the path could. Addresses are *net.UDPAddr. Its
// conns block only on channels and timers, which a testing/synctest bubble
// sees through, so it serves tests in virtual time too. Its methods may be
// called from many goroutines at once.
type MemNet struct {
	mu    sync.Mutex
	conns map[netip.AddrPort]*MemConn
}

// NewMemNet returns an empty network.
func NewMemNet() *MemNet { return &MemNet{conns: make(map[netip.AddrPort]*MemConn)} }

// Listen returns a PacketConn at addr ("10.0.0.1:1"), replacing any
// other there. Its caller, or the server it is handed to, closes it.
func (n *MemNet) Listen(addr string) *MemConn {
	ap := netip.MustParseAddrPort(addr)
	c := &MemConn{net: n, ap: ap, in: make(chan MemPacket, memQueue),
		changed: make(chan struct{}), closed: make(chan struct{})}
	n.mu.Lock()
	n.conns[ap] = c
	n.mu.Unlock()
	return c
}

// Inject delivers a copy of b to the conn at to as if from from, and
// reports whether a conn took it.
func (n *MemNet) Inject(to net.Addr, from netip.AddrPort, b []byte) bool {
	n.mu.Lock()
	c := n.conns[to.(*net.UDPAddr).AddrPort()]
	n.mu.Unlock()
	return c != nil && c.deliver(b, net.UDPAddrFromAddrPort(from))
}

// MemPacket is a datagram as it waits at a MemConn.
type MemPacket struct {
	B    []byte
	From net.Addr
	At   time.Time // when it was sent, and so arrived
}

// MemConn is one address on a MemNet. It implements net.PacketConn; write
// deadlines are ignored, since a write never blocks.
type MemConn struct {
	net *MemNet
	ap  netip.AddrPort
	in  chan MemPacket

	// Fate, if set before the conn is used, says how many copies of its
	// n-th datagram (from 0) reach the receiver: 0 drops it, 2
	// duplicates it.
	Fate func(n int) int
	sent int // guarded by mu
	// claim, when valid, is the source its datagrams say they come from
	// (see Claim).
	claim netip.AddrPort

	mu      sync.Mutex
	rdl     time.Time     // the read deadline; zero for none
	changed chan struct{} // closed when rdl changes

	closeOnce sync.Once
	closed    chan struct{}
}

func (c *MemConn) deliver(b []byte, from net.Addr) bool {
	select {
	case <-c.closed:
		return false
	default:
	}
	select {
	case c.in <- MemPacket{append([]byte(nil), b...), from, time.Now()}:
		return true
	default:
		return false // the queue is full: dropped
	}
}

// WriteTo sends b to addr, a *net.UDPAddr; it vanishes if nothing listens
// there.
func (c *MemConn) WriteTo(b []byte, addr net.Addr) (int, error) {
	select {
	case <-c.closed:
		return 0, net.ErrClosed
	default:
	}
	copies := 1
	if c.Fate != nil {
		c.mu.Lock()
		n := c.sent
		c.sent++
		c.mu.Unlock()
		copies = c.Fate(n)
	}
	src := c.ap
	if c.claim.IsValid() {
		src = c.claim
	}
	for range copies {
		c.net.Inject(addr, src, b)
	}
	return len(b), nil
}

// ReadFrom returns the next datagram, cut to b's length as a socket cuts
// it. A datagram already waiting is returned even past the deadline, so a
// deadline in the past reads what is queued without waiting.
func (c *MemConn) ReadFrom(b []byte) (int, net.Addr, error) {
	for {
		select {
		case p := <-c.in: // a datagram waiting wins over a past deadline
			return copy(b, p.B), p.From, nil
		default:
		}
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
func (c *MemConn) wait(b []byte, dl time.Time, changed <-chan struct{}) (int, net.Addr, bool, error) {
	var expired <-chan time.Time
	if !dl.IsZero() {
		t := time.NewTimer(time.Until(dl))
		defer t.Stop()
		expired = t.C
	}
	select {
	case p := <-c.in:
		return copy(b, p.B), p.From, true, nil
	case <-c.closed:
		return 0, nil, true, net.ErrClosed
	case <-expired:
		return 0, nil, true, os.ErrDeadlineExceeded
	case <-changed:
		return 0, nil, false, nil
	}
}

// Claim makes the datagrams c sends say they come from addr, as a forged
// source's would: replies go to whoever listens at addr, or nowhere. Call
// it before c is used.
func (c *MemConn) Claim(addr string) { c.claim = netip.MustParseAddrPort(addr) }

// Closed is closed when c is.
func (c *MemConn) Closed() <-chan struct{} { return c.closed }

// Recv returns the next datagram waiting, or false if none is.
func (c *MemConn) Recv() (MemPacket, bool) {
	select {
	case p := <-c.in:
		return p, true
	default:
		return MemPacket{}, false
	}
}

// Close wakes any blocked ReadFrom; later calls fail with net.ErrClosed.
func (c *MemConn) Close() error {
	c.closeOnce.Do(func() {
		close(c.closed)
		c.net.mu.Lock()
		if c.net.conns[c.ap] == c {
			delete(c.net.conns, c.ap)
		}
		c.net.mu.Unlock()
	})
	return nil
}

// LocalAddr returns the conn's address.
func (c *MemConn) LocalAddr() net.Addr { return net.UDPAddrFromAddrPort(c.ap) }

// SetDeadline sets the read deadline.
func (c *MemConn) SetDeadline(t time.Time) error { return c.SetReadDeadline(t) }

// SetReadDeadline sets when a waiting or later ReadFrom gives up.
func (c *MemConn) SetReadDeadline(t time.Time) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.rdl = t
	close(c.changed)
	c.changed = make(chan struct{})
	return nil
}

// SetWriteDeadline does nothing: a write never blocks.
func (c *MemConn) SetWriteDeadline(time.Time) error { return nil }

// Forged reads a fuzz target's input as datagrams from forged sources:
// each a source byte, a big-endian 16-bit length and that many bytes
// (fewer at the end of in). It calls fn with each source byte and
// datagram, which fn must copy to keep. Batch writes such input.
func Forged(in []byte, fn func(src byte, d []byte)) {
	for len(in) > 2 {
		n := min(int(binary.BigEndian.Uint16(in[1:])), len(in)-3)
		fn(in[0], in[3:3+n])
		in = in[3+n:]
	}
}

// Batch lays datagrams out as Forged reads them, all from src.
func Batch(src byte, datagrams ...[]byte) []byte {
	var out []byte
	for _, d := range datagrams {
		out = append(out, src)
		out = binary.BigEndian.AppendUint16(out, uint16(len(d)))
		out = append(out, d...)
	}
	return out
}

// ForgedSources is how many source addresses ForgedAddr makes of a
// source byte: more than the session tables the fuzz targets give their
// servers, so that those fill and refuse.
const ForgedSources = 24

// ForgedAddr is the address of source byte src: 10.2.0.(src mod
// ForgedSources), port 40000, above the ports servers refuse to answer
// (guard.LowPorts).
func ForgedAddr(src byte) netip.AddrPort {
	return netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, 2, 0, src % ForgedSources}), 40000)
}
