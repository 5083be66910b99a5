// Package sockstat reads what the kernel knows about the UDP sockets udplab
// owns: how many datagrams each dropped because its receive buffer was full
// (or, rarely, for a bad checksum), and sizes those buffers.
//
// A datagram that reaches a full receive buffer is discarded by the kernel
// and never seen by the program, so a measuring tool that does not read
// this counter reports such losses as nobody's. On Linux the counter is the
// drops column of /proc/net/udp and /proc/net/udp6, found by the socket's
// inode; elsewhere it is unknown, and callers must say so rather than
// report zero.
package sockstat

import (
	"net"
	"sync"
	"syscall"
)

// BufferSize is the receive and send buffer udplab asks for on every socket
// it owns: kcptun's 4 MiB, which holds a full KCP window at 1400-byte
// segments and several milliseconds of a loopback flood.
const BufferSize = 4 << 20

// Socket names one socket for Read. The zero Socket is unknown.
type Socket struct{ inode uint64 }

// Of returns the Socket behind c, which must expose its file descriptor
// (as *net.UDPConn does); anything else gives the zero Socket. Call it
// while c is open: a closed socket has no counter.
func Of(c any) Socket {
	sc, ok := c.(syscall.Conn)
	if !ok {
		return Socket{}
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return Socket{}
	}
	var ino uint64
	_ = rc.Control(func(fd uintptr) { ino = inode(fd) })
	return Socket{ino}
}

// Known reports whether s can be read on this platform.
func (s Socket) Known() bool { return s.inode != 0 }

// Table is one reading of every UDP socket's drop counter.
type Table struct{ drops map[uint64]uint64 }

// Read takes one reading. ok is false where the platform has no counter or
// it could not be read; then every Drops call reports unknown.
func Read() (t Table, ok bool) {
	m, err := readProc()
	if err != nil {
		return Table{}, false
	}
	return Table{m}, true
}

// Drops returns s's drop count in t, and false when it is unknown: s is
// the zero Socket, the table could not be read, or s was closed before t
// was taken.
func (t Table) Drops(s Socket) (uint64, bool) {
	if !s.Known() || t.drops == nil {
		return 0, false
	}
	n, ok := t.drops[s.inode]
	return n, ok
}

// Drops reads s's drop count now: Read followed by Table.Drops, for one
// socket.
func Drops(s Socket) (uint64, bool) {
	if !s.Known() {
		return 0, false
	}
	t, _ := Read()
	return t.Drops(s)
}

// SetBuffers gives pc receive and send buffers of BufferSize bytes where it
// can: past the system's limit (net.core.rmem_max) it forces the size when
// the process may (root or CAP_NET_ADMIN), and otherwise keeps what the
// kernel granted. Anything but a *net.UDPConn is left as it is.
func SetBuffers(pc net.PacketConn) {
	u, ok := pc.(*net.UDPConn)
	if !ok {
		return
	}
	_ = u.SetReadBuffer(BufferSize)
	_ = u.SetWriteBuffer(BufferSize)
	force(u)
}

// A Counter reads one socket's drop counter for its owner, and keeps the
// last reading once the socket is closed, when the kernel has forgotten it.
// Its methods may be called from several goroutines at once.
type Counter struct {
	s Socket

	mu     sync.Mutex
	closed bool
	n      uint64 // the reading Close took
	ok     bool
}

// NewCounter returns the Counter of c's socket, as Of finds it: call it
// while c is open.
func NewCounter(c any) *Counter { return &Counter{s: Of(c)} }

// Drops returns the socket's drop count now, or the one Close took; ok is
// false when the count is unknown.
func (c *Counter) Drops() (n uint64, ok bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return c.n, c.ok
	}
	return Drops(c.s)
}

// Close takes the last reading. Call it just before closing the socket;
// calls after the first do nothing.
func (c *Counter) Close() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.closed {
		c.n, c.ok = Drops(c.s)
		c.closed = true
	}
}
