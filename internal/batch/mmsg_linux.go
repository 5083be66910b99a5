package batch

import (
	"encoding/binary"
	"net"
	"net/netip"
	"os"
	"strconv"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// mmsgConn moves batches with recvmmsg and sendmmsg. Its headers, iovecs
// and address buffers are made once and point at each other for good, so
// a call only refreshes lengths and addresses.
type mmsgConn struct {
	rc    syscall.RawConn
	v6    bool // an AF_INET6 socket: IPv4 destinations go mapped
	hs    []unix.Mmsghdr
	iovs  []unix.Iovec
	names [][unix.SizeofSockaddrInet6]byte

	// The call in progress, for the callbacks bound below: a method value
	// made per call would allocate.
	lo, hi        int
	ms            []Message
	err           error
	readF, writeF func(fd uintptr) bool
}

// newMmsgConn returns nil when pc offers no file descriptor.
func newMmsgConn(pc *net.UDPConn, n int) *mmsgConn {
	rc, err := pc.SyscallConn()
	if err != nil {
		return nil
	}
	c := &mmsgConn{rc: rc, hs: make([]unix.Mmsghdr, n), iovs: make([]unix.Iovec, n),
		names: make([][unix.SizeofSockaddrInet6]byte, n)}
	_ = rc.Control(func(fd uintptr) {
		sa, err := unix.Getsockname(int(fd))
		_, c.v6 = sa.(*unix.SockaddrInet6)
		c.v6 = c.v6 && err == nil
	})
	for i := range c.hs {
		h := &c.hs[i].Hdr
		h.Name = &c.names[i][0]
		h.Iov = &c.iovs[i]
		h.SetIovlen(1)
	}
	c.readF, c.writeF = c.recv, c.send
	return c
}

// setBuffers points the iovecs at the reader's buffers, once.
func (c *mmsgConn) setBuffers(ms []Message) {
	for i := range ms {
		c.iovs[i].Base = &ms[i].Buf[0]
		c.iovs[i].SetLen(len(ms[i].Buf))
	}
}

// read fills out with the datagrams one recvmmsg call returns into bufs'
// buffers.
func (c *mmsgConn) read(bufs, out []Message) (int, error) {
	for i := range c.hs {
		c.hs[i].Hdr.Namelen = unix.SizeofSockaddrInet6
		c.hs[i].Hdr.Flags = 0
	}
	c.hi, c.err = 0, nil
	if err := c.rc.Read(c.readF); err != nil {
		return 0, err
	}
	if c.err != nil {
		return 0, c.err
	}
	for i := range c.hi {
		h := &c.hs[i]
		out[i] = Message{Buf: bufs[i].Buf[:min(int(h.Len), len(bufs[i].Buf))], Addr: parseName(c.names[i][:h.Hdr.Namelen])}
	}
	return c.hi, nil
}

// recv is the RawConn callback of read: false asks the poller to wait.
func (c *mmsgConn) recv(fd uintptr) bool {
	for {
		n, _, errno := unix.Syscall6(unix.SYS_RECVMMSG, fd, uintptr(unsafe.Pointer(&c.hs[0])), uintptr(len(c.hs)), 0, 0, 0)
		switch errno {
		case 0:
			c.hi = int(n)
			return true
		case unix.EINTR:
			continue
		case unix.EAGAIN:
			return false
		default:
			c.err = os.NewSyscallError("recvmmsg", errno)
			return true
		}
	}
}

// write sends ms, len(c.hs) at a time, setting each one's Err.
func (c *mmsgConn) write(ms []Message) {
	for len(ms) > 0 {
		k := min(len(ms), len(c.hs))
		c.writeChunk(ms[:k])
		ms = ms[k:]
	}
}

func (c *mmsgConn) writeChunk(ms []Message) {
	for i := range ms {
		m := &ms[i]
		m.Err = nil
		c.iovs[i].Base = unsafe.SliceData(m.Buf)
		c.iovs[i].SetLen(len(m.Buf))
		h := &c.hs[i].Hdr
		h.Namelen = c.putName(i, m.Addr)
		if h.Namelen == 0 {
			h.Name = nil // a connected socket's peer
		} else {
			h.Name = &c.names[i][0]
		}
	}
	c.ms, c.lo, c.hi = ms, 0, len(ms)
	err := c.rc.Write(c.writeF)
	if err != nil {
		for i := c.lo; i < c.hi; i++ {
			ms[i].Err = err
		}
	}
	c.ms = nil
	for i := range ms {
		c.iovs[i].Base = nil // no payload kept alive past the call
	}
}

// send is the RawConn callback of write: it goes on from where the
// kernel stopped, skips a message it refuses, and asks the poller to wait
// when the socket's buffer is full.
func (c *mmsgConn) send(fd uintptr) bool {
	for c.lo < c.hi {
		n, _, errno := unix.Syscall6(unix.SYS_SENDMMSG, fd, uintptr(unsafe.Pointer(&c.hs[c.lo])), uintptr(c.hi-c.lo), 0, 0, 0)
		switch errno {
		case 0:
			c.lo += int(n)
		case unix.EINTR:
		case unix.EAGAIN:
			return false
		default:
			// The first message failed; sendmmsg reports a later one's
			// error by stopping before it, so each gets its own.
			c.ms[c.lo].Err = os.NewSyscallError("sendmmsg", errno)
			c.lo++
		}
	}
	return true
}

// putName writes ap into name i as the socket's family wants it and
// returns its length; 0 for the zero AddrPort.
func (c *mmsgConn) putName(i int, ap netip.AddrPort) uint32 {
	if !ap.IsValid() {
		return 0
	}
	b := c.names[i][:]
	clear(b)
	a := ap.Addr()
	binary.BigEndian.PutUint16(b[2:4], ap.Port())
	if !c.v6 && a.Unmap().Is4() {
		binary.NativeEndian.PutUint16(b[0:2], unix.AF_INET)
		a4 := a.Unmap().As4()
		copy(b[4:8], a4[:])
		return unix.SizeofSockaddrInet4
	}
	binary.NativeEndian.PutUint16(b[0:2], unix.AF_INET6)
	a16 := a.As16() // an IPv4 address comes out mapped
	copy(b[8:24], a16[:])
	binary.NativeEndian.PutUint32(b[24:28], zoneIndex(a.Zone()))
	return unix.SizeofSockaddrInet6
}

// parseName reads a source address the kernel wrote, unmapped.
func parseName(b []byte) netip.AddrPort {
	if len(b) < 4 {
		return netip.AddrPort{}
	}
	port := binary.BigEndian.Uint16(b[2:4])
	switch binary.NativeEndian.Uint16(b[0:2]) {
	case unix.AF_INET:
		if len(b) >= 8 {
			return netip.AddrPortFrom(netip.AddrFrom4([4]byte(b[4:8])), port)
		}
	case unix.AF_INET6:
		if len(b) >= 28 {
			a := netip.AddrFrom16([16]byte(b[8:24])).Unmap()
			if id := binary.NativeEndian.Uint32(b[24:28]); id != 0 && a.Is6() {
				a = a.WithZone(strconv.FormatUint(uint64(id), 10)) // link-local only: rare, and it allocates
			}
			return netip.AddrPortFrom(a, port)
		}
	}
	return netip.AddrPort{}
}

// zoneIndex is an IPv6 zone's interface index: the zone read back from
// parseName is the number itself.
func zoneIndex(zone string) uint32 {
	if zone == "" {
		return 0
	}
	if n, err := strconv.ParseUint(zone, 10, 32); err == nil {
		return uint32(n)
	}
	if ifi, err := net.InterfaceByName(zone); err == nil {
		return uint32(ifi.Index)
	}
	return 0
}
