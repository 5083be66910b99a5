package tcp

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/udplab/udplab/internal/conntest"
	"github.com/udplab/udplab/internal/leakcheck"
	"github.com/udplab/udplab/message"
)

func TestMain(m *testing.M) { leakcheck.VerifyTestMain(m) }

// startServer serves h on addr over kernel TCP until the test ends. It
// skips t if it cannot bind (no IPv6, say).
func startServer(t testing.TB, addr string, h message.Handler, cfg *ServerConfig) *Server {
	t.Helper()
	l, err := net.Listen("tcp", addr)
	if err != nil {
		t.Skipf("cannot listen on %s: %v", addr, err)
	}
	// Tests write a text request whole, so a long pause costs nothing and
	// a descheduled writer cannot cut a request in two.
	s := newServer(l, h, cfg, time.Second)
	t.Cleanup(func() { s.Close() })
	return s
}

func dial(t testing.TB, addr net.Addr) *Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), conntest.Timeout)
	defer cancel()
	c, err := Dial(ctx, addr.String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// TestConformance runs the contract every transport keeps, over kernel TCP.
func TestConformance(t *testing.T) {
	conntest.Run(t, conntest.Transport{
		Serve: func(t testing.TB, addr string, h message.Handler) net.Addr {
			s, err := Listen(addr, h, nil)
			if err != nil {
				t.Skipf("cannot listen on %s: %v", addr, err)
			}
			t.Cleanup(func() { s.Close() })
			return s.Addr()
		},
		Dial:       func(t testing.TB, addr net.Addr) message.Conn { return dial(t, addr) },
		MaxMessage: MaxMessage,
	})
}

// pipe returns two Conns over net.Pipe, which is no TCP at all: what
// holds there holds over any net.Conn.
func pipe(t *testing.T) (*Conn, *Conn) {
	a, b := net.Pipe()
	ca, cb := NewConn(a), NewConn(b)
	t.Cleanup(func() { ca.Close(); cb.Close() })
	return ca, cb
}

// TestOverAnyConn runs a conversation and its ending over net.Pipe, whose
// errors are not the kernel's: a closed pipe says io.ErrClosedPipe, and
// Conn must still say net.ErrClosed.
func TestOverAnyConn(t *testing.T) {
	a, b := pipe(t)
	ctx, cancel := context.WithTimeout(context.Background(), conntest.Timeout)
	defer cancel()
	sent := make(chan error, 1)
	go func() { sent <- a.Send(ctx, []byte("over a pipe")) }()
	if got, err := b.Receive(ctx); err != nil || string(got) != "over a pipe" {
		t.Fatalf("Receive = %q, %v", got, err)
	}
	if err := <-sent; err != nil {
		t.Fatal(err)
	}
	errc := make(chan error, 1)
	go func() {
		_, err := b.Receive(context.Background())
		errc <- err
	}()
	b.Close()
	if err := <-errc; !errors.Is(err, net.ErrClosed) || !strings.HasPrefix(err.Error(), "tcp: ") {
		t.Errorf("blocked Receive after Close = %v, want net.ErrClosed prefixed by tcp:", err)
	}
	if err := a.Send(ctx, []byte("x")); err == nil {
		t.Error("Send to a closed peer succeeded")
	}
	a.Close()
	if err := a.Send(ctx, []byte("x")); !errors.Is(err, net.ErrClosed) {
		t.Errorf("Send after Close = %v, want net.ErrClosed", err)
	}
}

// TestReceiveTimeoutMidFrame has a peer write half a frame: the first
// Receive times out, and once the rest comes the next Receive returns the
// whole message, not the tail of one and the garbage after.
func TestReceiveTimeoutMidFrame(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	c := dial(t, l.Addr())
	peer, err := l.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer peer.Close()
	msg := bytes.Repeat([]byte("0123456789"), 1000)
	frame := appendFrame(nil, msg)
	half := len(frame) / 2
	if _, err := peer.Write(frame[:half]); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	_, err = c.Receive(ctx)
	cancel()
	if !errors.Is(err, os.ErrDeadlineExceeded) || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Receive of half a frame = %v, want a deadline error", err)
	}
	if _, err := peer.Write(append(frame[half:], appendFrame(nil, []byte("next"))...)); err != nil {
		t.Fatal(err)
	}
	ctx, cancel = context.WithTimeout(context.Background(), conntest.Timeout)
	defer cancel()
	for _, want := range [][]byte{msg, []byte("next")} {
		if got, err := c.Receive(ctx); err != nil || !bytes.Equal(got, want) {
			t.Fatalf("Receive = %d bytes %.20q, %v; want %d bytes %.20q", len(got), got, err, len(want), want)
		}
	}
}

// TestSendCutShortKeepsSync cancels a Send once the peer has read part of
// its frame: the next Send writes the rest first, so the peer reads both
// messages whole.
func TestSendCutShortKeepsSync(t *testing.T) {
	a, b := net.Pipe()
	c := NewConn(a)
	defer c.Close()
	defer b.Close()
	first := bytes.Repeat([]byte("x"), 10000)
	const partial = 1000
	ctx, cancel := context.WithCancel(context.Background())
	head := make([]byte, partial)
	go func() {
		// net.Pipe hands bytes over only as they are read: the Send
		// has written exactly what this reads when it is cancelled.
		io.ReadFull(b, head)
		cancel()
	}()
	if err := c.Send(ctx, first); !errors.Is(err, context.Canceled) {
		t.Fatalf("Send cancelled part-way = %v, want context.Canceled", err)
	}
	errc := make(chan error, 1)
	go func() { errc <- c.Send(context.Background(), []byte("second")) }()
	r := newReader(io.MultiReader(bytes.NewReader(head), b), false)
	for _, want := range [][]byte{first, []byte("second")} {
		if got, err := r.frame(); err != nil || !bytes.Equal(got, want) {
			t.Fatalf("peer read %d bytes %.20q, %v; want %d bytes %.20q", len(got), got, err, len(want), want)
		}
	}
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
}

// TestHugeHeaderBreaksStream: a header declaring more than MaxMessage is
// an error that says the stream is unusable, and stays so.
func TestHugeHeaderBreaksStream(t *testing.T) {
	a, b := pipe(t)
	go b.c.Write([]byte{0x00, 0xff, 0xff, 0xff, 'x'})
	ctx, cancel := context.WithTimeout(context.Background(), conntest.Timeout)
	defer cancel()
	for range 2 {
		_, err := a.Receive(ctx)
		if !errors.Is(err, message.ErrBadRequest) || !strings.Contains(err.Error(), "unusable") || !strings.Contains(err.Error(), "16777215") {
			t.Errorf("Receive after a huge header = %v, want a bad request naming the size and a broken stream", err)
		}
	}
}

// TestSteadyStateAllocs: once its buffers have grown, a Conn sends and
// receives without allocating.
func TestSteadyStateAllocs(t *testing.T) {
	s := startServer(t, "127.0.0.1:0", message.Echo, nil)
	c := dial(t, s.Addr())
	ctx := context.Background()
	msg := []byte("Alice")
	conntest.RoundTrip(t, c, "warm up")
	allocs := testing.AllocsPerRun(100, func() {
		if err := c.Send(ctx, msg); err != nil {
			t.Fatal(err)
		}
		if got, err := c.Receive(ctx); err != nil || string(got) != "Alice" {
			t.Fatalf("Receive = %q, %v", got, err)
		}
	})
	if allocs != 0 {
		t.Errorf("a round trip allocated %v times, want 0", allocs)
	}
}

func TestAcceptOne(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr()
	ctx, cancel := context.WithTimeout(context.Background(), conntest.Timeout)
	defer cancel()
	accepted := make(chan *Conn, 1)
	go func() {
		c, err := AcceptOne(ctx, l)
		if err != nil {
			t.Error(err)
		}
		accepted <- c
	}()
	dialer := dial(t, addr)
	listener := <-accepted
	if listener == nil {
		t.FailNow()
	}
	defer listener.Close()
	for _, step := range []struct {
		from, to message.Conn
		msg      string
	}{{dialer, listener, "hi"}, {listener, dialer, "hello back"}} {
		if err := step.from.Send(ctx, []byte(step.msg)); err != nil {
			t.Fatal(err)
		}
		if got, err := step.to.Receive(ctx); err != nil || string(got) != step.msg {
			t.Fatalf("Receive = %q, %v; want %q", got, err, step.msg)
		}
	}
	// The listener is closed: nobody else joins the conversation.
	if c, err := net.DialTimeout("tcp", addr.String(), conntest.Timeout); err == nil {
		c.Close()
		t.Error("a second peer could connect after AcceptOne")
	}
}

func TestAcceptOneCancel(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	cause := errors.New("nobody came")
	ctx, cancel := context.WithCancelCause(context.Background())
	errc := make(chan error, 1)
	go func() {
		_, err := AcceptOne(ctx, l)
		errc <- err
	}()
	cancel(cause)
	if err := <-errc; !errors.Is(err, cause) {
		t.Errorf("AcceptOne after cancel = %v, want the cause", err)
	}
	if _, err := l.Accept(); !errors.Is(err, net.ErrClosed) {
		t.Errorf("listener after AcceptOne = %v, want it closed", err)
	}
}
