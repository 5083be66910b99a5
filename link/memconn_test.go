package link

import (
	"net"
	"sync"
	"time"
)

// memNet is an in-memory datagram network for tests under testing/synctest:
// its conns block on channels, which a synctest bubble can see through, so
// virtual time advances exactly when every goroutine waits on the link.
type memNet struct {
	mu    sync.Mutex
	conns map[string]*memConn
}

type memAddr string

func (a memAddr) Network() string { return "mem" }
func (a memAddr) String() string  { return string(a) }

type memPacket struct {
	b    []byte
	from net.Addr
	at   time.Time
}

type memConn struct {
	net       *memNet
	addr      memAddr
	in        chan memPacket
	closeOnce sync.Once
	closed    chan struct{}
}

func newMemNet() *memNet { return &memNet{conns: map[string]*memConn{}} }

func (n *memNet) listen(name string) *memConn {
	c := &memConn{net: n, addr: memAddr(name), in: make(chan memPacket, 1<<17), closed: make(chan struct{})}
	n.mu.Lock()
	n.conns[name] = c
	n.mu.Unlock()
	return c
}

func (c *memConn) WriteTo(b []byte, addr net.Addr) (int, error) {
	select {
	case <-c.closed:
		return 0, net.ErrClosed
	default:
	}
	c.net.mu.Lock()
	peer := c.net.conns[addr.String()]
	c.net.mu.Unlock()
	if peer != nil {
		select {
		case peer.in <- memPacket{append([]byte(nil), b...), c.addr, time.Now()}:
		default: // a full buffer drops, as a socket's does
		}
	}
	return len(b), nil
}

func (c *memConn) ReadFrom(b []byte) (int, net.Addr, error) {
	select {
	case p := <-c.in:
		return copy(b, p.b), p.from, nil
	case <-c.closed:
		return 0, nil, net.ErrClosed
	}
}

// recv returns the next packet with its arrival time, or false if none is
// waiting.
func (c *memConn) recv() (memPacket, bool) {
	select {
	case p := <-c.in:
		return p, true
	default:
		return memPacket{}, false
	}
}

func (c *memConn) Close() error {
	c.closeOnce.Do(func() { close(c.closed) })
	return nil
}
func (c *memConn) LocalAddr() net.Addr                { return c.addr }
func (c *memConn) SetDeadline(t time.Time) error      { return nil }
func (c *memConn) SetReadDeadline(t time.Time) error  { return nil }
func (c *memConn) SetWriteDeadline(t time.Time) error { return nil }
