//go:build unix

package link

import (
	"errors"
	"net"
	"sync"
	"syscall"

	"golang.org/x/sys/unix"
)

// readPool holds the buffers upstream readers borrow while a datagram is
// ready. A reader that owned its buffer (or a batch of them, 2 MiB) would
// keep it through every idle moment of every client, and a flood of new
// source addresses would cost the proxy that much per address; borrowed,
// the buffers in use are about as many as the goroutines running.
var readPool = sync.Pool{New: func() any { b := make([]byte, 64<<10); return &b }}

// readyReader reads a socket only once the poller says it is readable,
// with a buffer borrowed for that moment.
type readyReader struct{ rc syscall.RawConn }

// newUpstreamReader reads a client's upstream socket, borrowing a buffer
// only while datagrams are ready; sockets without a file descriptor get a
// reader of their own.
func newUpstreamReader(pc net.PacketConn) packetReader {
	if sc, ok := pc.(syscall.Conn); ok {
		if rc, err := sc.SyscallConn(); err == nil {
			return readyReader{rc}
		}
	}
	return newSingleReader(pc)
}

// read passes f up to readBatch datagrams, without their source: an
// upstream socket's replies all go to its one client.
func (r readyReader) read(f func(b []byte, from net.Addr)) error {
	var rerr error
	err := r.rc.Read(func(fd uintptr) bool {
		bp := readPool.Get().(*[]byte)
		defer readPool.Put(bp)
		for i := 0; i < readBatch; i++ {
			n, err := unix.Read(int(fd), *bp)
			switch {
			case errors.Is(err, unix.EAGAIN):
				return i > 0 // nothing yet: wait for the poller
			case errors.Is(err, unix.EINTR):
				continue
			case err != nil:
				rerr = err
				return true
			}
			f((*bp)[:n], nil)
		}
		return true
	})
	if err != nil {
		return err
	}
	return rerr
}
