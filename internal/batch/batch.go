// Package batch reads and writes UDP datagrams many at a time: with
// recvmmsg and sendmmsg on a Linux *net.UDPConn, so that one system call
// moves a whole batch, and one datagram per call on any other platform or
// PacketConn (an impaired one from the link package, say). Either way the
// caller sees the same batches of Messages, and neither path allocates in
// steady state.
//
// Where the kernel has UDP GSO (UDP_SEGMENT, Linux 4.18), a Writer sends a
// run of datagrams of one size to one address (the last may be shorter)
// as one datagram the kernel cuts into the run's datagrams: the stack is
// crossed once for the run. The receiver sees the same datagrams as
// without; a run the kernel refuses goes again one datagram at a time.
//
// The system calls are made here rather than through golang.org/x/net's
// ipv4/ipv6 ReadBatch and WriteBatch, which do the same on Linux but
// allocate a *net.UDPAddr (and its IP) per datagram read, and keep their
// headers in a sync.Pool, which the race detector empties at random: a
// zero-allocation path could be neither kept nor tested with them.
//
// A Reader or a Writer belongs to one goroutine at a time; several may
// share a socket.
package batch

import (
	"net"
	"net/netip"
	"sync"
	"time"

	"github.com/udplab/udplab/internal/udpsock"
)

// Message is one datagram of a batch.
type Message struct {
	// Buf is the payload: what was read (valid until the next Read), or
	// what is to be written (not copied: keep it until Flush returns).
	Buf []byte
	// Addr is the source of a datagram read, with any IPv4-in-IPv6 mapping
	// removed, or the destination of one to write (an IPv4 address goes
	// to an IPv6 socket mapped). It is zero for a datagram read from a
	// PacketConn whose addresses are not UDP addresses; to write on a
	// connected socket, leave it and NetAddr zero.
	Addr netip.AddrPort
	// NetAddr is the source as the PacketConn gave it, set only by a
	// Reader's one-at-a-time path over a PacketConn that is not a
	// *net.UDPConn; on a write it is the destination used when Addr is
	// zero.
	NetAddr net.Addr
	// Err is why a write failed, set by Flush; nil when it was sent.
	Err error
	// At is when a datagram read arrived: as the kernel stamped it where
	// the Reader has timestamps on (see EnableTimestamps), otherwise when
	// Read returned. It reads the monotonic clock, as time.Now does.
	At time.Time
}

// Reader reads datagrams in batches. Make one with NewReader or
// NewPooledReader.
type Reader struct {
	pc   net.PacketConn
	udp  *net.UDPConn // pc, when it is one
	msgs []Message    // one per buffer, Buf at full capacity
	out  []Message    // the last batch read
	mmsg *mmsgConn    // nil: one datagram per call
	gro  bool         // the kernel coalesces runs, which Read cuts again

	last time.Time // the latest At given: no datagram read later came earlier

	// The buffers of a pooled Reader: size bytes each, out of one []byte
	// of n·size borrowed from pool, held in arena while borrowed.
	n, size int
	pool    *sync.Pool
	arena   *[]byte
}

// NewReader reads pc up to n datagrams per call into buffers of size
// bytes each (64 KiB holds any UDP datagram; a larger one is cut to
// size). It holds n·size bytes. pc stays the caller's to close.
func NewReader(pc net.PacketConn, n, size int) *Reader {
	r := newReader(pc, n, size, nil)
	r.setArena(make([]byte, r.n*r.size))
	return r
}

// NewPooledReader is NewReader, but its buffers are borrowed from pool,
// whose New must return a *[]byte of n·size bytes or more, only while
// datagrams are ready: Read takes them once the socket is readable (on a
// Linux *net.UDPConn; elsewhere, before it waits), and Release gives them
// back. A socket that is mostly idle then costs no buffer.
func NewPooledReader(pc net.PacketConn, n, size int, pool *sync.Pool) *Reader {
	return newReader(pc, n, size, pool)
}

func newReader(pc net.PacketConn, n, size int, pool *sync.Pool) *Reader {
	r := &Reader{pc: pc, n: max(n, 1), size: max(size, 1), pool: pool}
	r.msgs, r.out = make([]Message, r.n), make([]Message, 0, r.n)
	r.udp, _ = pc.(*net.UDPConn)
	if r.udp != nil {
		r.mmsg = newMmsgConn(r.udp, r.n)
	}
	return r
}

// setArena cuts the buffers out of b.
func (r *Reader) setArena(b []byte) {
	for i := range r.msgs {
		r.msgs[i].Buf = b[i*r.size : (i+1)*r.size : (i+1)*r.size]
	}
	if r.mmsg != nil {
		r.mmsg.setBuffers(r.msgs)
	}
}

// borrow takes a pooled Reader's buffers, if it has none.
func (r *Reader) borrow() {
	if r.pool == nil || r.arena != nil {
		return
	}
	r.arena = r.pool.Get().(*[]byte)
	r.setArena(*r.arena)
}

// Release gives a pooled Reader's buffers back to its pool, once the
// caller is done with the last batch read; a Reader that owns its
// buffers ignores it.
func (r *Reader) Release() {
	if r.arena == nil {
		return
	}
	r.pool.Put(r.arena)
	r.arena = nil
	for i := range r.msgs {
		r.msgs[i].Buf = nil
	}
	if r.mmsg != nil {
		r.mmsg.setBuffers(r.msgs)
	}
}

// EnableGRO asks the kernel to coalesce runs of datagrams from one source
// into one (UDP_GRO, Linux 5.0), as a UDP GSO sender makes them, and Read
// cuts them again, so a run crosses the stack once. It reports whether
// GRO is on: only on a Linux *net.UDPConn, and only with buffers of 64
// KiB or more, which hold any coalesced run. Every reader of the socket
// must then be such a Reader: anything else would read a run as one
// datagram. The socket's drop counter then counts runs, not datagrams: a
// run its buffer cannot hold is dropped whole and counted once, so a
// socket whose drops are reported per datagram must not have GRO.
func (r *Reader) EnableGRO() bool {
	if r.mmsg == nil || r.size < 64<<10 {
		return false
	}
	r.gro = r.mmsg.enableGRO()
	return r.gro
}

// GRO reports whether GRO is on (see EnableGRO).
func (r *Reader) GRO() bool { return r.gro }

// EnableTimestamps asks the kernel to stamp each datagram with the time
// it reached the socket (SO_TIMESTAMPNS), for Message.At: then the time a
// datagram waited in the socket's buffer for the reader does not count
// as the network's. It reports whether it is on: only on a Linux
// *net.UDPConn. The first socket of the system to ask has the kernel turn
// stamping on from a work queue: until it has, the kernel stamps a
// datagram as it is read, as if there were no stamps.
func (r *Reader) EnableTimestamps() bool {
	return r.mmsg != nil && r.mmsg.enableTimestamps()
}

// Read blocks until at least one datagram is ready and returns those
// ready, in the order the socket had them: at most n datagrams, or more
// where GRO coalesced them. The messages and their buffers are valid
// until the next Read (or Release). Read honours pc's read deadline;
// after Close the error matches net.ErrClosed.
func (r *Reader) Read() ([]Message, error) {
	if r.mmsg != nil {
		var err error
		r.out, err = r.mmsg.read(r, r.out[:0])
		return r.out, err
	}
	r.borrow()
	return r.readOne()
}

// notBefore is at, or the At of a datagram read before if that is later.
// A socket queues datagrams in the order they came, so an earlier stamp
// is a wrong one: the kernel stamps a datagram when it is read, not when
// it came, until stamping is on for the system (see EnableTimestamps), so
// the first datagrams can seem to have come after the next ones.
func (r *Reader) notBefore(at time.Time) time.Time {
	if at.Before(r.last) {
		return r.last
	}
	r.last = at
	return at
}

// readOne reads one datagram with the PacketConn's own calls.
func (r *Reader) readOne() ([]Message, error) {
	buf := r.msgs[0].Buf
	var (
		m   Message
		n   int
		err error
	)
	if r.udp != nil {
		n, m.Addr, err = r.udp.ReadFromUDPAddrPort(buf)
		m.Addr = udpsock.Unmap(m.Addr)
	} else {
		n, m.NetAddr, err = r.pc.ReadFrom(buf)
		m.Addr = udpsock.AddrPort(m.NetAddr)
	}
	if err != nil {
		return nil, err
	}
	m.Buf, m.At = buf[:n], time.Now()
	r.out = append(r.out[:0], m)
	return r.out, nil
}

// Writer writes datagrams in batches. Make one with NewWriter.
type Writer struct {
	pc   net.PacketConn
	udp  *net.UDPConn // pc, when it is one
	msgs []Message    // queued since the last Flush
	mmsg *mmsgConn    // nil: one datagram per call
}

// NewWriter writes to pc up to n datagrams per system call. pc stays the
// caller's to close.
func NewWriter(pc net.PacketConn, n int) *Writer {
	n = max(n, 1)
	w := &Writer{pc: pc, msgs: make([]Message, 0, n)}
	w.udp, _ = pc.(*net.UDPConn)
	if w.udp != nil {
		w.mmsg = newMmsgConn(w.udp, n)
	}
	return w
}

// Add queues b for to (or, when to is zero, for addr; with both zero, for
// a connected socket's peer) and reports whether the batch has room for
// more: once it returns false, Flush. (Adding past n still works, at the
// cost of growing the queue.) b is not copied.
func (w *Writer) Add(b []byte, to netip.AddrPort, addr net.Addr) bool {
	if !to.IsValid() {
		to = udpsock.AddrPort(addr)
	}
	w.msgs = append(w.msgs, Message{Buf: b, Addr: to, NetAddr: addr})
	return len(w.msgs) < cap(w.msgs)
}

// Len is how many datagrams wait for Flush.
func (w *Writer) Len() int { return len(w.msgs) }

// Flush writes the queued datagrams, in order, and returns them with Err
// set on each that failed, and the first such error. A message that fails
// does not stop the ones after it; a closed socket or a write deadline
// fails all that were not sent. The messages are valid until the next Add.
func (w *Writer) Flush() ([]Message, error) {
	ms := w.msgs
	w.msgs = w.msgs[:0]
	if len(ms) == 0 {
		return ms, nil
	}
	if w.mmsg != nil {
		w.mmsg.write(ms)
	} else {
		for i := range ms {
			ms[i].Err = w.writeOne(&ms[i])
		}
	}
	for i := range ms {
		if ms[i].Err != nil {
			return ms, ms[i].Err
		}
	}
	return ms, nil
}

// writeOne writes m with the PacketConn's own calls.
func (w *Writer) writeOne(m *Message) error {
	var err error
	switch {
	case w.udp != nil && m.Addr.IsValid():
		_, err = w.udp.WriteToUDPAddrPort(m.Buf, m.Addr)
	case m.NetAddr != nil:
		_, err = w.pc.WriteTo(m.Buf, m.NetAddr)
	case m.Addr.IsValid():
		_, err = w.pc.WriteTo(m.Buf, net.UDPAddrFromAddrPort(m.Addr))
	case w.udp != nil:
		_, err = w.udp.Write(m.Buf) // connected
	default:
		_, err = w.pc.WriteTo(m.Buf, nil)
	}
	return err
}
