package batch

import (
	"encoding/binary"
	"net"
	"net/netip"
	"os"
	"strconv"
	"syscall"
	"time"
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

	gso    bool // UDP_SEGMENT works: runs to one address go as one datagram
	gro    bool // UDP_GRO is on: reads may come coalesced
	stamps bool // SO_TIMESTAMPNS is on: reads come stamped
	oob    [][oobSize]byte
	groups []group // the messages each header sends

	// The call in progress, for the callbacks bound below: a method value
	// made per call would allocate.
	lo, hi        int
	split         int     // a GSO header the kernel refused, or -1
	r             *Reader // the reader whose buffers a read fills
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
		names: make([][unix.SizeofSockaddrInet6]byte, n), oob: make([][oobSize]byte, n), groups: make([]group, n)}
	_ = rc.Control(func(fd uintptr) {
		sa, err := unix.Getsockname(int(fd))
		_, c.v6 = sa.(*unix.SockaddrInet6)
		c.v6 = c.v6 && err == nil
		_, err = unix.GetsockoptInt(int(fd), unix.SOL_UDP, unix.UDP_SEGMENT)
		c.gso = err == nil
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

// setBuffers points the iovecs at the reader's buffers.
func (c *mmsgConn) setBuffers(ms []Message) {
	for i := range ms {
		c.iovs[i].Base = unsafe.SliceData(ms[i].Buf)
		c.iovs[i].SetLen(len(ms[i].Buf))
	}
}

// enableGRO turns UDP_GRO on, reporting whether the kernel has it.
func (c *mmsgConn) enableGRO() bool {
	c.gro = c.setOpt(unix.SOL_UDP, unix.UDP_GRO)
	return c.gro
}

// enableTimestamps turns SO_TIMESTAMPNS on, reporting whether it is.
func (c *mmsgConn) enableTimestamps() bool {
	c.stamps = c.setOpt(unix.SOL_SOCKET, unix.SO_TIMESTAMPNS)
	return c.stamps
}

// setOpt sets the socket option level, opt to 1 and reports whether it
// took.
func (c *mmsgConn) setOpt(level, opt int) bool {
	var err error
	cerr := c.rc.Control(func(fd uintptr) { err = unix.SetsockoptInt(int(fd), level, opt, 1) })
	return cerr == nil && err == nil
}

// read appends to out the datagrams one recvmmsg call returns into r's
// buffers, cutting coalesced runs.
func (c *mmsgConn) read(r *Reader, out []Message) ([]Message, error) {
	control := c.gro || c.stamps
	for i := range c.hs {
		h := &c.hs[i].Hdr
		h.Namelen = unix.SizeofSockaddrInet6
		h.Flags = 0
		if control {
			h.Control = &c.oob[i][0]
			h.SetControllen(oobSize)
		}
	}
	c.r, c.hi, c.err = r, 0, nil
	err := c.rc.Read(c.readF)
	c.r = nil
	if err == nil {
		err = c.err
	}
	if err != nil {
		return out, err
	}
	now := time.Now()
	for i := range c.hi {
		h := &c.hs[i]
		buf := r.msgs[i].Buf[:min(int(h.Len), len(r.msgs[i].Buf))]
		ap := parseName(c.names[i][:h.Hdr.Namelen])
		seg, at := len(buf), now
		if control {
			seg, at = parseControl(c.oob[i][:h.Hdr.Controllen], len(buf), now)
			at = r.notBefore(at)
		}
		for len(buf) > seg {
			out = append(out, Message{Buf: buf[:seg:seg], Addr: ap, At: at})
			buf = buf[seg:]
		}
		out = append(out, Message{Buf: buf, Addr: ap, At: at})
	}
	return out, nil
}

// maxAge bounds how long ago a kernel timestamp may say a datagram came:
// past it (a clock stepped back), the read's own time is taken.
const maxAge = time.Second

// parseControl reads a datagram's control messages: the size of the
// datagrams a coalesced run of n bytes was made of (UDP_GRO), or n; and
// when it arrived (SCM_TIMESTAMPNS), as a time on now's monotonic clock,
// or now.
func parseControl(oob []byte, n int, now time.Time) (seg int, at time.Time) {
	seg, at = n, now
	for len(oob) >= unix.CmsgLen(0) {
		cm := (*unix.Cmsghdr)(unsafe.Pointer(&oob[0]))
		l := int(cm.Len)
		if l < unix.CmsgLen(0) || l > len(oob) {
			break
		}
		data := oob[unix.CmsgLen(0):l]
		switch {
		case cm.Level == unix.SOL_UDP && cm.Type == unix.UDP_GRO && len(data) >= 4:
			if k := int(binary.NativeEndian.Uint32(data)); k > 0 {
				seg = k
			}
		case cm.Level == unix.SOL_SOCKET && cm.Type == unix.SCM_TIMESTAMPNS && len(data) >= int(unsafe.Sizeof(unix.Timespec{})):
			ts := (*unix.Timespec)(unsafe.Pointer(&data[0]))
			// The kernel's clock is the wall clock: its distance from now
			// moves to the monotonic one, which no clock step shifts.
			if age := now.Sub(time.Unix(int64(ts.Sec), int64(ts.Nsec))); age >= 0 && age < maxAge {
				at = now.Add(-age)
			}
		}
		oob = oob[min(len(oob), unix.CmsgSpace(l-unix.CmsgLen(0))):]
	}
	return seg, at
}

// recv is the RawConn callback of read: false asks the poller to wait. A
// pooled reader borrows its buffers here, once there is something to
// read, and gives them back if there was not.
func (c *mmsgConn) recv(fd uintptr) bool {
	c.r.borrow()
	for {
		n, _, errno := unix.Syscall6(unix.SYS_RECVMMSG, fd, uintptr(unsafe.Pointer(&c.hs[0])), uintptr(len(c.hs)), 0, 0, 0)
		switch errno {
		case 0:
			c.hi = int(n)
			return true
		case unix.EINTR:
			continue
		case unix.EAGAIN:
			c.r.Release() // idle: hold nothing while the poller waits
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

// writeChunk sends ms (no more than there are headers). Where the kernel
// refuses a segmented message, the datagrams it held go again one by one,
// so that each gets its own fate.
func (c *mmsgConn) writeChunk(ms []Message) {
	for i := range ms {
		ms[i].Err = nil
	}
	from, singles := 0, 0 // ms[from:singles] go one per header
	for from < len(ms) {
		rest := ms[from:]
		c.ms, c.lo, c.hi, c.split = rest, 0, c.pack(rest, singles-from), -1
		if err := c.rc.Write(c.writeF); err != nil {
			for _, g := range c.groups[c.lo:c.hi] {
				for i := range g.count {
					rest[g.first+i].Err = err
				}
			}
			break
		}
		if c.split < 0 {
			break
		}
		g := c.groups[c.split]
		from, singles = from+g.first, from+g.first+g.count
	}
	c.ms = nil
	for i := range ms {
		c.iovs[i].Base = nil // no payload kept alive past the call
	}
}

// group is the run of messages one header sends: count of them from
// first, as segments of one GSO datagram when count > 1.
type group struct{ first, count int }

// pack fills a header per group of ms, the first singles messages alone,
// and returns how many headers it filled.
func (c *mmsgConn) pack(ms []Message, singles int) int {
	h := 0
	for i := 0; i < len(ms); h++ {
		n := 1
		if c.gso && i >= singles {
			n = segments(ms[i:])
		}
		for j := range n {
			c.iovs[i+j].Base = unsafe.SliceData(ms[i+j].Buf)
			c.iovs[i+j].SetLen(len(ms[i+j].Buf))
		}
		hdr := &c.hs[h].Hdr
		hdr.Iov = &c.iovs[i]
		hdr.SetIovlen(n)
		hdr.Name, hdr.Namelen = &c.names[h][0], c.putName(h, ms[i].Addr)
		if hdr.Namelen == 0 {
			hdr.Name = nil // a connected socket's peer
		}
		hdr.Control = nil
		hdr.SetControllen(0)
		if n > 1 {
			c.putSegment(h, len(ms[i].Buf))
		}
		c.groups[h] = group{first: i, count: n}
		i += n
	}
	return h
}

// oobSize holds the control messages a datagram comes or goes with: on
// 64-bit Linux, UDP_SEGMENT or UDP_GRO take 24 bytes, SCM_TIMESTAMPNS 32.
const oobSize = 64

// GSO's limits: the kernel's segments per send (UDP_MAX_SEGMENTS, 64
// before Linux 6.9), and the bytes of one datagram before segmentation,
// which must fit an IP packet.
const (
	maxSegments     = 64
	maxSegmentBytes = 65000
)

// segments is how many of ms, from the first, can go as one GSO datagram:
// those of the first's size to the same address, and one shorter to end
// the run. An empty datagram goes alone.
func segments(ms []Message) int {
	size := len(ms[0].Buf)
	if size == 0 {
		return 1
	}
	n, total := 1, size
	for n < len(ms) && n < maxSegments && ms[n].Addr == ms[0].Addr {
		k := len(ms[n].Buf)
		if k == 0 || k > size || total+k > maxSegmentBytes {
			break
		}
		total += k
		n++
		if k < size {
			break
		}
	}
	return n
}

// putSegment points header h at a UDP_SEGMENT control message that cuts
// its datagram into size-byte segments.
func (c *mmsgConn) putSegment(h, size int) {
	b := c.oob[h][:]
	cm := (*unix.Cmsghdr)(unsafe.Pointer(&b[0]))
	cm.Level, cm.Type = unix.SOL_UDP, unix.UDP_SEGMENT
	cm.SetLen(unix.CmsgLen(2))
	binary.NativeEndian.PutUint16(b[unix.CmsgLen(0):], uint16(size))
	hdr := &c.hs[h].Hdr
	hdr.Control = &b[0]
	hdr.SetControllen(unix.CmsgSpace(2))
}

// send is the RawConn callback of write: it goes on from where the
// kernel stopped, skips a datagram it refuses, and asks the poller to wait
// when the socket's buffer is full. A refused GSO datagram stops the call
// (c.split), for writeChunk to send its segments one by one; EIO there
// means the device cannot segment, and GSO is off for good.
func (c *mmsgConn) send(fd uintptr) bool {
	for c.lo < c.hi {
		n, _, errno := unix.Syscall6(unix.SYS_SENDMMSG, fd, uintptr(unsafe.Pointer(&c.hs[c.lo])), uintptr(c.hi-c.lo), 0, 0, 0)
		switch {
		case errno == 0:
			c.lo += int(n)
		case errno == unix.EINTR:
		case errno == unix.EAGAIN:
			return false
		case c.groups[c.lo].count > 1:
			if errno == unix.EIO {
				c.gso = false
			}
			c.split = c.lo
			return true
		default:
			// sendmmsg reports a later datagram's error by stopping
			// before it, so each gets its own.
			c.ms[c.groups[c.lo].first].Err = os.NewSyscallError("sendmmsg", errno)
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
