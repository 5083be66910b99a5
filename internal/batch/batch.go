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
}

// Reader reads datagrams in batches. Make one with NewReader.
type Reader struct {
	pc   net.PacketConn
	udp  *net.UDPConn // pc, when it is one
	msgs []Message    // one per buffer, Buf at full capacity
	out  []Message    // the last batch read
	mmsg *mmsgConn    // nil: one datagram per call
}

// NewReader reads pc up to n datagrams per call into buffers of size
// bytes each (64 KiB holds any UDP datagram; a larger one is cut to
// size). It holds n·size bytes. pc stays the caller's to close.
func NewReader(pc net.PacketConn, n, size int) *Reader {
	n, size = max(n, 1), max(size, 1)
	r := &Reader{pc: pc, msgs: make([]Message, n), out: make([]Message, n)}
	for i := range r.msgs {
		r.msgs[i].Buf = make([]byte, size)
	}
	r.udp, _ = pc.(*net.UDPConn)
	if r.udp != nil {
		r.mmsg = newMmsgConn(r.udp, n)
	}
	if r.mmsg != nil {
		r.mmsg.setBuffers(r.msgs)
	}
	return r
}

// Read blocks until at least one datagram is ready and returns those
// ready, at most n, in the order the socket had them. The messages and
// their buffers are valid until the next Read. Read honours pc's read
// deadline; after Close the error matches net.ErrClosed.
func (r *Reader) Read() ([]Message, error) {
	if r.mmsg != nil {
		k, err := r.mmsg.read(r.msgs, r.out)
		return r.out[:k], err
	}
	return r.readOne()
}

// readOne reads one datagram with the PacketConn's own calls.
func (r *Reader) readOne() ([]Message, error) {
	m := &r.out[0]
	buf := r.msgs[0].Buf
	var (
		n   int
		err error
	)
	if r.udp != nil {
		n, m.Addr, err = r.udp.ReadFromUDPAddrPort(buf)
		m.Addr, m.NetAddr = unmap(m.Addr), nil
	} else {
		n, m.NetAddr, err = r.pc.ReadFrom(buf)
		m.Addr = addrPort(m.NetAddr)
	}
	if err != nil {
		return nil, err
	}
	m.Buf = buf[:n]
	return r.out[:1], nil
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
		to = addrPort(addr)
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

func unmap(ap netip.AddrPort) netip.AddrPort {
	return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
}

// addrPort is a's unmapped address and port, or zero when a is not a UDP
// address.
func addrPort(a net.Addr) netip.AddrPort {
	if u, ok := a.(*net.UDPAddr); ok {
		return unmap(u.AddrPort())
	}
	return netip.AddrPort{}
}
