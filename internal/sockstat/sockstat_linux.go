package sockstat

import (
	"bufio"
	"bytes"
	"net"
	"os"
	"strconv"
	"syscall"
)

func inode(fd uintptr) uint64 {
	var st syscall.Stat_t
	if syscall.Fstat(int(fd), &st) != nil {
		return 0
	}
	return st.Ino
}

// readProc maps every UDP socket's inode to its drops counter, from both
// address families' tables.
func readProc() (map[uint64]uint64, error) {
	m := make(map[uint64]uint64)
	found := false
	for _, name := range []string{"/proc/net/udp", "/proc/net/udp6"} {
		b, err := os.ReadFile(name)
		if err != nil {
			continue // a kernel without IPv6 has no udp6
		}
		found = true
		parseProc(b, m)
	}
	if !found {
		return nil, os.ErrNotExist
	}
	return m, nil
}

// parseProc reads one /proc/net/udp table: after the header, a line per
// socket whose tenth field is the inode and thirteenth the drops.
func parseProc(b []byte, m map[uint64]uint64) {
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Scan() // the header
	for sc.Scan() {
		f := bytes.Fields(sc.Bytes())
		if len(f) < 13 {
			continue
		}
		ino, err1 := strconv.ParseUint(string(f[9]), 10, 64)
		drops, err2 := strconv.ParseUint(string(f[12]), 10, 64)
		if err1 == nil && err2 == nil && ino != 0 {
			m[ino] = drops
		}
	}
}

// force raises the buffers past net.core.rmem_max and wmem_max with
// SO_RCVBUFFORCE and SO_SNDBUFFORCE, which need CAP_NET_ADMIN; without it
// the calls fail and the sizes the kernel granted stay.
func force(u *net.UDPConn) {
	rc, err := u.SyscallConn()
	if err != nil {
		return
	}
	_ = rc.Control(func(fd uintptr) {
		// The kernel doubles what it is given, for its bookkeeping, and
		// reports the doubled size: ask for half of that to get BufferSize.
		if got, err := syscall.GetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF); err == nil && got < 2*BufferSize {
			_ = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUFFORCE, BufferSize)
		}
		if got, err := syscall.GetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_SNDBUF); err == nil && got < 2*BufferSize {
			_ = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_SNDBUFFORCE, BufferSize)
		}
	})
}
