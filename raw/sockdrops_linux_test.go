package raw

import (
	"context"
	"net"
	"syscall"
	"testing"
	"time"

	"github.com/udplab/udplab/internal/sockstat"
	"github.com/udplab/udplab/message"
)

// TestServerCountsSocketDrops holds the server in its handler while a
// flood overflows its socket: every datagram sent is then either handled or
// counted as a socket drop, and the count survives Close.
func TestServerCountsSocketDrops(t *testing.T) {
	release := make(chan struct{})
	s, err := Listen("127.0.0.1:0", func(dst, _ []byte) ([]byte, error) {
		<-release
		return append(dst, "ok"...), nil
	}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if n, ok := s.SocketDrops(); !ok || n != 0 {
		t.Fatalf("SocketDrops before sending = %d, %v; want 0, true", n, ok)
	}
	// Enough 60 kB datagrams to overflow even a forced 2×BufferSize.
	sent := 4 * sockstat.BufferSize / 60000
	flood(t, s.Addr(), sent, 60000)
	drops, ok := s.SocketDrops()
	if !ok || drops == 0 {
		t.Fatalf("SocketDrops after %d datagrams into a held server = %d, %v; want some", sent, drops, ok)
	}
	close(release)
	// One goroutine serves in socket order: this reply comes after every
	// queued datagram was handled.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := message.RoundTrip(ctx, dial(t, s.Addr()), []byte("last")); err != nil {
		t.Fatal(err)
	}
	s.Close()
	if got := s.Stats().Requests - 1; got+drops != uint64(sent) {
		t.Errorf("handled %d + dropped %d = %d; want %d sent", got, drops, got+drops, sent)
	}
	if after, ok := s.SocketDrops(); !ok || after != drops {
		t.Errorf("SocketDrops after Close = %d, %v; want %d, true", after, ok, drops)
	}
}

// flood sends n datagrams of size bytes to addr from a fresh socket.
// Loopback delivers within each write, so when flood returns every datagram
// is queued at addr or counted as dropped there.
func flood(t *testing.T, addr net.Addr, n, size int) {
	t.Helper()
	tx, err := net.DialUDP("udp4", nil, addr.(*net.UDPAddr))
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Close()
	msg := make([]byte, size)
	for range n {
		if _, err := tx.Write(msg); err != nil {
			t.Fatal(err)
		}
	}
}

// TestListenSetsBuffers: Listen's socket holds more than a fresh one's
// default, as sockstat.SetBuffers makes it.
func TestListenSetsBuffers(t *testing.T) {
	s, err := Listen("127.0.0.1:0", func(dst, _ []byte) ([]byte, error) { return dst, nil }, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	fresh, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer fresh.Close()
	if got, dflt := rcvbuf(t, s.pc), rcvbuf(t, fresh); got <= dflt {
		t.Errorf("Listen's receive buffer is %d bytes, no more than a fresh socket's %d", got, dflt)
	}
}

func rcvbuf(t *testing.T, pc net.PacketConn) int {
	t.Helper()
	rc, err := pc.(*net.UDPConn).SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var n int
	rc.Control(func(fd uintptr) { n, err = syscall.GetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF) })
	if err != nil {
		t.Fatal(err)
	}
	return n
}
