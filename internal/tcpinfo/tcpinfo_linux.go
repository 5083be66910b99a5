package tcpinfo

import (
	"net"

	"golang.org/x/sys/unix"
)

// Read returns c's counts; ok is false when the kernel does not say.
func Read(c *net.TCPConn) (info Info, ok bool) {
	rc, err := c.SyscallConn()
	if err != nil {
		return Info{}, false
	}
	var ti *unix.TCPInfo
	var gerr error
	if err := rc.Control(func(fd uintptr) {
		ti, gerr = unix.GetsockoptTCPInfo(int(fd), unix.IPPROTO_TCP, unix.TCP_INFO)
	}); err != nil || gerr != nil {
		return Info{}, false
	}
	hdr := uint64(40)
	if ti.Options&tcpiOptTimestamps != 0 {
		hdr += 12
	}
	if ip, _ := c.LocalAddr().(*net.TCPAddr); ip != nil && ip.IP.To4() == nil {
		hdr += 20 // IPv6's header is 40 bytes, not 20
	}
	return Info{
		SegmentsOut: uint64(ti.Segs_out), SegmentsIn: uint64(ti.Segs_in),
		BytesSent: ti.Bytes_sent, BytesReceived: ti.Bytes_received,
		Retransmissions: uint64(ti.Total_retrans), HeaderBytes: hdr,
	}, true
}

// tcpiOptTimestamps is TCPI_OPT_TIMESTAMPS from linux/tcp.h, which
// x/sys/unix does not name.
const tcpiOptTimestamps = 1
