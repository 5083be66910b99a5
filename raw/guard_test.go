package raw

import (
	"bytes"
	"context"
	"net"
	"strconv"
	"sync"
	"testing"

	"github.com/udplab/udplab/internal/conntest"
	"github.com/udplab/udplab/message"
)

// forgeConn is a server socket on loopback that reports a datagram as from
// a forged source, which a test cannot send without raw sockets: "self"
// from the server's own address, "dns" from port 53 of the client's host;
// anything else from where it came. Replies go to the true source,
// whatever the server aims them at, so the client sees them. It closes
// closed when it is closed.
type forgeConn struct {
	net.PacketConn
	closed    chan struct{}
	closeOnce sync.Once

	mu   sync.Mutex
	real net.Addr // the true source of the last datagram
}

func newForgeConn(t testing.TB) *forgeConn {
	t.Helper()
	pc, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return &forgeConn{PacketConn: pc, closed: make(chan struct{})}
}

func (c *forgeConn) ReadFrom(b []byte) (int, net.Addr, error) {
	n, from, err := c.PacketConn.ReadFrom(b)
	if err != nil {
		return n, from, err
	}
	c.mu.Lock()
	c.real = from
	c.mu.Unlock()
	switch string(b[:n]) {
	case "self":
		return n, c.LocalAddr(), nil
	case "dns":
		u := *from.(*net.UDPAddr)
		u.Port = 53
		return n, &u, nil
	}
	return n, from, nil
}

func (c *forgeConn) WriteTo(b []byte, _ net.Addr) (int, error) {
	c.mu.Lock()
	to := c.real
	c.mu.Unlock()
	return c.PacketConn.WriteTo(b, to)
}

func (c *forgeConn) Close() error {
	c.closeOnce.Do(func() { close(c.closed) })
	return c.PacketConn.Close()
}

func serveForged(t *testing.T, h message.Handler, cfg *ServerConfig) (*Server, *Conn) {
	t.Helper()
	s := NewServer(newForgeConn(t), h, cfg)
	t.Cleanup(func() { s.Close() })
	return s, dial(t, s.Addr())
}

// TestForgedSourcesDropped: a datagram from the server's own address (an
// echo loop) and one from port 53 (a reflection) get no reply and are
// counted; the server goes on, and answers the next. One goroutine reads
// in order, so the last reply proves the others were handled.
func TestForgedSourcesDropped(t *testing.T) {
	s, c := serveForged(t, message.Echo, nil)
	for _, m := range []string{"self", "dns"} {
		if err := c.Send(context.Background(), []byte(m)); err != nil {
			t.Fatal(err)
		}
	}
	if got := conntest.RoundTrip(t, c, "after"); got != "after" {
		t.Fatalf("reply = %q, want the echo of after and nothing for the forged", got)
	}
	st := s.Stats()
	if st.LoopsDropped != 1 || st.LowPortsDropped != 1 || st.Requests != 1 || st.Replies != 1 {
		t.Errorf("stats = %+v, want 1 loop and 1 low port dropped, 1 request answered", st)
	}
}

// TestAllowLowPorts: with AllowLowPorts, port 53 is answered; the server's
// own address still is not.
func TestAllowLowPorts(t *testing.T) {
	s, c := serveForged(t, message.Echo, &ServerConfig{AllowLowPorts: true})
	if err := c.Send(context.Background(), []byte("self")); err != nil {
		t.Fatal(err)
	}
	if got := conntest.RoundTrip(t, c, "dns"); got != "dns" {
		t.Fatalf("reply = %q, want the echo of dns", got)
	}
	if st := s.Stats(); st.LoopsDropped != 1 || st.LowPortsDropped != 0 || st.Replies != 1 {
		t.Errorf("stats = %+v, want 1 loop dropped and the low port answered", st)
	}
}

// TestAmplificationCapped: a reply may carry 3 times the request's wire
// bytes (IPv4 and UDP headers included), not one byte more: to 2 bytes, 30
// on the wire, 62 bytes of payload. "Hello a!\n" still answers "a".
func TestAmplificationCapped(t *testing.T) {
	s := startServer(t, "udp4", "127.0.0.1:0", sized)
	c := dial(t, s.Addr())
	if err := c.Send(context.Background(), []byte("63")); err != nil {
		t.Fatal(err)
	}
	if got := conntest.RoundTrip(t, c, "62"); len(got) != 62 {
		t.Fatalf("reply to 62 is %d bytes, want 62 (and none to 63)", len(got))
	}
	if got := conntest.RoundTrip(t, c, "a"); got != "Hello a!\n" {
		t.Fatalf("reply = %q, want Hello a!", got)
	}
	st := s.Stats()
	if st.AmplificationCapped != 1 || st.AmplificationCappedBytes != 63+28 || st.Requests != 3 || st.Replies != 2 {
		t.Errorf("stats = %+v, want 1 reply of 91 wire bytes capped, 2 sent", st)
	}
}

// sized answers "a" as Greet does, and a number N with N bytes.
func sized(dst, req []byte) ([]byte, error) {
	n, err := strconv.Atoi(string(req))
	if err != nil {
		return message.Greet(dst, req)
	}
	return append(dst, bytes.Repeat([]byte("x"), n)...), nil
}

// TestShutdownAnswersWhatItRead: a request being handled when Shutdown
// comes is answered, and Shutdown returns nil once it is; nothing is read
// after.
func TestShutdownAnswersWhatItRead(t *testing.T) {
	h := conntest.NewHolder()
	s := startServer(t, "udp4", "127.0.0.1:0", h.Handle)
	t.Cleanup(h.Free)
	c := dial(t, s.Addr())
	if err := c.Send(context.Background(), []byte("wait first")); err != nil {
		t.Fatal(err)
	}
	<-h.Entered
	done := make(chan error)
	go func() { done <- s.Shutdown(context.Background()) }()
	conntest.WaitFor(t, s.draining.Load)
	h.Free()
	if got, err := c.Receive(ctxTimeout(t)); err != nil || string(got) != "wait first" {
		t.Fatalf("reply = %q, %v; want wait first", got, err)
	}
	if err := <-done; err != nil {
		t.Errorf("Shutdown = %v, want nil", err)
	}
	if st := s.Stats(); st.Requests != 1 || st.Replies != 1 {
		t.Errorf("stats = %+v, want the one request answered", st)
	}
}

// TestShutdownCutOff: with ctx already done, Shutdown closes the socket at
// once, while the handler still holds its request, and says it cut that
// one off.
func TestShutdownCutOff(t *testing.T) {
	fc := newForgeConn(t)
	entered := make(chan struct{}, 1)
	s := NewServer(fc, func(dst, req []byte) ([]byte, error) {
		entered <- struct{}{}
		<-fc.closed // released by Shutdown's Close
		return message.Echo(dst, req)
	}, nil)
	t.Cleanup(func() { s.Close() })
	c := dial(t, s.Addr())
	if err := c.Send(context.Background(), []byte("late")); err != nil {
		t.Fatal(err)
	}
	<-entered
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	err := s.Shutdown(ctx)
	conntest.WantCutOff(t, err, 1)
}

func ctxTimeout(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), conntest.Timeout)
	t.Cleanup(cancel)
	return ctx
}
