package raw

import (
	"bytes"
	"context"
	"errors"
	"net"
	"syscall"
	"testing"

	"github.com/udplab/udplab/internal/conntest"
	"github.com/udplab/udplab/internal/leakcheck"
	"github.com/udplab/udplab/message"
)

func TestMain(m *testing.M) { leakcheck.VerifyTestMain(m) }

// TestConformance runs the contract every transport keeps.
func TestConformance(t *testing.T) {
	conntest.Run(t, conntest.Transport{
		Serve: func(t testing.TB, addr string, h message.Handler) net.Addr {
			// "udp" binds the family of addr's literal IP.
			return startServer(t, "udp", addr, h).Addr()
		},
		Dial:       func(t testing.TB, addr net.Addr) message.Conn { return dial(t, addr) },
		MaxMessage: MaxMessage,
	})
}

func startServer(t testing.TB, network, addr string, h message.Handler) *Server {
	t.Helper()
	pc, err := net.ListenPacket(network, addr)
	if err != nil {
		t.Skipf("cannot bind %s %s: %v", network, addr, err)
	}
	s := NewServer(pc, h, nil)
	t.Cleanup(func() { s.Close() })
	return s
}

func dial(t testing.TB, addr net.Addr) *Conn {
	t.Helper()
	c, err := Dial(addr.String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// TestGarbageIsSurvived sends datagrams from 0 bytes to the largest UDP
// payload, none of them a valid name, then greets: the server must answer the
// greeting and count every piece of garbage as a bad request. One server
// goroutine reads in socket order, so the greeting's reply proves the garbage
// before it was handled.
func TestGarbageIsSurvived(t *testing.T) {
	s := startServer(t, "udp4", "127.0.0.1:0", message.Greet)
	c := dial(t, s.Addr())
	// Loopback drops nothing only while the receive buffer holds the burst.
	if err := c.pc.(*net.UDPConn).SetWriteBuffer(1 << 20); err != nil {
		t.Fatal(err)
	}
	sizes := []int{0, 1, 2, 3, 7, 64, 512, 1399, 1400, 1401, 1500, 9000, 32768, 65000, MaxMessage}
	ctx := context.Background()
	for _, n := range sizes {
		// 0xff never starts a UTF-8 sequence, so every size is a bad name.
		if err := c.Send(ctx, bytes.Repeat([]byte{0xff}, n)); err != nil {
			t.Fatalf("send %d bytes of garbage: %v", n, err)
		}
		// Pace the burst on the server's progress, not on a guessed sleep.
		conntest.WaitFor(t, func() bool { return s.Stats().Requests == uint64(sentSoFar(sizes, n)) })
	}
	if got := conntest.RoundTrip(t, c, "Dave"); got != "Hello Dave!\n" {
		t.Fatalf("after garbage, reply = %q", got)
	}
	st := s.Stats()
	if want := uint64(len(sizes)); st.BadRequests != want || st.Requests != want+1 || st.Replies != 1 {
		t.Errorf("stats = %+v, want %d bad requests, %d requests, 1 reply", st, want, want+1)
	}
}

func sentSoFar(sizes []int, n int) int {
	for i, s := range sizes {
		if s == n {
			return i + 1
		}
	}
	return 0
}

func TestOversizedReplyIsCountedNotSent(t *testing.T) {
	s := startServer(t, "udp4", "127.0.0.1:0", message.Greet)
	c := dial(t, s.Addr())
	ctx := context.Background()
	// "Hello " + name + "!\n" is 8 bytes over the name: too big for a datagram.
	if err := c.Send(ctx, bytes.Repeat([]byte("a"), MaxMessage)); err != nil {
		t.Fatal(err)
	}
	if got := conntest.RoundTrip(t, c, "Eve"); got != "Hello Eve!\n" {
		t.Fatalf("reply = %q, want Eve's greeting (and nothing for the oversized name)", got)
	}
	if st := s.Stats(); st.Oversized != 1 {
		t.Errorf("Oversized = %d, want 1", st.Oversized)
	}
}

// TestForeignDatagramsDropped has a stranger send to the client: only the
// server's reply may come back. Dial's connected socket leaves the stranger
// to the kernel; over an unconnected socket Receive drops and counts it.
func TestForeignDatagramsDropped(t *testing.T) {
	for _, tt := range []struct {
		name        string
		dial        func(t *testing.T, addr net.Addr) *Conn
		wantForeign uint64
	}{
		{"Dial", func(t *testing.T, addr net.Addr) *Conn { return dial(t, addr) }, 0},
		{"NewConn", func(t *testing.T, addr net.Addr) *Conn {
			pc, err := net.ListenPacket("udp4", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			c := NewConn(pc, addr)
			t.Cleanup(func() { c.Close() })
			return c
		}, 1},
	} {
		t.Run(tt.name, func(t *testing.T) {
			s := startServer(t, "udp4", "127.0.0.1:0", message.Greet)
			c := tt.dial(t, s.Addr())
			stranger, err := net.ListenPacket("udp4", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			defer stranger.Close()
			if _, err := stranger.WriteTo([]byte("spoof"), c.LocalAddr()); err != nil {
				t.Fatal(err)
			}
			if got := conntest.RoundTrip(t, c, "Frank"); got != "Hello Frank!\n" {
				t.Errorf("reply = %q, want the server's greeting, not the stranger's datagram", got)
			}
			if c.Foreign() != tt.wantForeign {
				t.Errorf("Foreign() = %d, want %d", c.Foreign(), tt.wantForeign)
			}
		})
	}
}

// TestDialClosedPort sends to a port nothing listens on: the host answers
// with an ICMP port unreachable, which Dial's connected socket reports as
// ECONNREFUSED instead of a silence that looks like loss.
func TestDialClosedPort(t *testing.T) {
	for _, tt := range []struct{ network, addr string }{{"udp4", "127.0.0.1:0"}, {"udp6", "[::1]:0"}} {
		t.Run(tt.network, func(t *testing.T) {
			pc, err := net.ListenPacket(tt.network, tt.addr)
			if err != nil {
				t.Skipf("cannot bind %s: %v", tt.addr, err)
			}
			closed := pc.LocalAddr()
			pc.Close()
			c := dial(t, closed)
			_, err = conntest.Request(c, []byte("Alice"), conntest.Timeout)
			if !errors.Is(err, syscall.ECONNREFUSED) {
				t.Errorf("round trip to closed %s = %v, want ECONNREFUSED", closed, err)
			}
		})
	}
}

// TestNewConnOverConnectedSocket gives NewConn a socket connected to the
// server: Send must use Write, which a connected socket needs.
func TestNewConnOverConnectedSocket(t *testing.T) {
	s := startServer(t, "udp4", "127.0.0.1:0", message.Greet)
	uc, err := net.DialUDP("udp4", nil, s.Addr().(*net.UDPAddr))
	if err != nil {
		t.Fatal(err)
	}
	c := NewConn(uc, uc.RemoteAddr())
	defer c.Close()
	if got := conntest.RoundTrip(t, c, "Gina"); got != "Hello Gina!\n" {
		t.Errorf("reply = %q", got)
	}
}

// TestRoundTripAllocatesNothing locks in an allocation-free path: a greeting
// sent and its reply received, client and server together, on loopback.
func TestRoundTripAllocatesNothing(t *testing.T) {
	if testing.Short() {
		t.Skip("measures allocations")
	}
	s := startServer(t, "udp4", "127.0.0.1:0", message.Greet)
	c := dial(t, s.Addr())
	ctx := context.Background()
	req := []byte("Alice")
	allocs := testing.AllocsPerRun(200, func() {
		if err := c.Send(ctx, req); err != nil {
			t.Fatal(err)
		}
		if _, err := c.Receive(ctx); err != nil {
			t.Fatal(err)
		}
	})
	if allocs != 0 {
		t.Errorf("a raw round trip allocated %v times, want 0", allocs)
	}
}

// TestServerSocketDropsUnknown: over anything but a *net.UDPConn the count
// is unknown, not 0.
func TestServerSocketDropsUnknown(t *testing.T) {
	pc, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := NewServer(struct{ net.PacketConn }{pc}, func(dst, _ []byte) ([]byte, error) { return dst, nil }, nil)
	defer s.Close()
	if n, ok := s.SocketDrops(); ok {
		t.Errorf("SocketDrops over a wrapped PacketConn = %d, true; want unknown", n)
	}
}
