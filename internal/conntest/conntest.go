// Package conntest checks that a transport keeps the contracts of
// message.Conn and message.Server, over real sockets on loopback. Both
// transports' tests run it, so the promises in package message are tested
// once and hold for each.
package conntest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/udplab/udplab/internal/drain"
	"github.com/udplab/udplab/message"
)

// Timeout bounds every wait; on loopback nothing is lost, so it only turns
// a hang into a failure.
const Timeout = 10 * time.Second

// Transport is what Run needs of a transport.
type Transport struct {
	// Serve starts a server for h bound to addr ("127.0.0.1:0" or
	// "[::1]:0"), closed by t.Cleanup, and returns its address. The
	// transport picks its own network (UDP, TCP, ...) for the address's
	// family. It skips t if it cannot bind.
	Serve func(t testing.TB, addr string, h message.Handler) net.Addr
	// Dial returns a client Conn to addr, closed by t.Cleanup.
	Dial func(t testing.TB, addr net.Addr) message.Conn
	// MaxMessage is the largest message the transport carries.
	MaxMessage int
}

// Run checks tr against the message contracts.
func Run(t *testing.T, tr Transport) {
	t.Run("Handlers", func(t *testing.T) { testHandlers(t, tr) })
	t.Run("IPv6", func(t *testing.T) {
		addr := tr.Serve(t, "[::1]:0", message.Greet)
		if got := RoundTrip(t, tr.Dial(t, addr), "Bob"); got != "Hello Bob!\n" {
			t.Errorf("reply over ::1 = %q", got)
		}
	})
	t.Run("ExitKeepsServingOthers", func(t *testing.T) {
		addr := tr.Serve(t, "127.0.0.1:0", message.Greet)
		a, b := tr.Dial(t, addr), tr.Dial(t, addr)
		if got := RoundTrip(t, a, "exit"); got != "Good bye!\n" {
			t.Fatalf("exit reply = %q", got)
		}
		if got := RoundTrip(t, b, "Carol"); got != "Hello Carol!\n" {
			t.Errorf("after another client's exit, reply = %q", got)
		}
	})
	t.Run("ReceiveTimeout", func(t *testing.T) { testTimeout(t, tr) })
	t.Run("ReceiveCancel", func(t *testing.T) { testCancel(t, tr) })
	t.Run("Close", func(t *testing.T) { testClose(t, tr) })
	t.Run("TooLarge", func(t *testing.T) {
		c := tr.Dial(t, tr.Serve(t, "127.0.0.1:0", message.Echo))
		err := c.Send(context.Background(), make([]byte, tr.MaxMessage+1))
		if !errors.Is(err, message.ErrTooLarge) || !strings.Contains(err.Error(), fmt.Sprint(tr.MaxMessage)) {
			t.Errorf("Send(%d bytes) = %v, want ErrTooLarge naming the limit", tr.MaxMessage+1, err)
		}
	})
	t.Run("ManyClients", func(t *testing.T) { testManyClients(t, tr, 20, 50) })
}

// RoundTrip sends req on c and returns the reply, failing t on any error.
func RoundTrip(t testing.TB, c message.Conn, req string) string {
	t.Helper()
	got, err := Request(c, []byte(req), Timeout)
	if err != nil {
		t.Fatalf("round trip %q: %v", req, err)
	}
	return string(got)
}

// Request sends req on c and waits at most timeout for the reply.
func Request(c message.Conn, req []byte, timeout time.Duration) ([]byte, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	return message.RoundTrip(ctx, c, req)
}

// EchoInOrder sends msgs on c from a second goroutine while it receives, as
// a client keeping many requests in flight does, and fails t unless every
// message comes back whole and in order. c's server must answer with
// message.Echo, over a transport that loses nothing.
func EchoInOrder(t testing.TB, c message.Conn, msgs [][]byte) {
	t.Helper()
	echo(t, c, msgs, true)
}

// EchoUnordered is EchoInOrder for a transport that keeps every message but
// not their order, such as QUIC's stream per message: every message must
// come back whole, exactly once, in any order.
func EchoUnordered(t testing.TB, c message.Conn, msgs [][]byte) {
	t.Helper()
	echo(t, c, msgs, false)
}

func echo(t testing.TB, c message.Conn, msgs [][]byte, ordered bool) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), Timeout)
	defer cancel()
	errc := make(chan error, 1)
	go func() {
		for _, m := range msgs {
			if err := c.Send(ctx, m); err != nil {
				errc <- err
				return
			}
		}
		errc <- nil
	}()
	fail := func(format string, args ...any) {
		t.Helper()
		cancel()
		<-errc
		t.Fatalf(format, args...)
	}
	missing := make(map[string]int) // unordered: what has not come back yet
	for _, m := range msgs {
		missing[string(m)]++
	}
	for i, want := range msgs {
		got, err := c.Receive(ctx)
		switch {
		case err != nil:
			fail("message %d (%d bytes): %v", i, len(want), err)
		case ordered && !bytes.Equal(got, want):
			fail("message %d: got %d bytes %.16q, want %d bytes %.16q", i, len(got), got, len(want), want)
		case !ordered && missing[string(got)] == 0:
			fail("message %d: got %d bytes %.16q, which was not sent or came back already", i, len(got), got)
		}
		missing[string(got)]--
	}
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
}

// WaitFor polls cond until it holds, failing t after Timeout.
func WaitFor(t testing.TB, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(Timeout); !cond(); time.Sleep(2 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("condition not met within", Timeout)
		}
	}
}

func testHandlers(t *testing.T, tr Transport) {
	fixed := time.Date(2026, time.November, 21, 9, 5, 1, 0, time.Local)
	tests := []struct {
		name string
		h    message.Handler
		req  string
		want string
	}{
		{"greet", message.Greet, "Alice", "Hello Alice!\n"},
		{"greet exit", message.Greet, "exit", "Good bye!\n"},
		{"time", message.Time(func() time.Time { return fixed }), "hi", "[Sat Nov 21 09:05:01 2026] hi"},
		{"echo", message.Echo, "\x00\x01binary", "\x00\x01binary"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			addr := tr.Serve(t, "127.0.0.1:0", tt.h)
			if got := RoundTrip(t, tr.Dial(t, addr), tt.req); got != tt.want {
				t.Errorf("reply to %q = %q, want %q", tt.req, got, tt.want)
			}
		})
	}
}

// refuseSilence answers every request but "silence", which it refuses, so
// a test can make a server stay quiet on any transport.
func refuseSilence(dst, req []byte) ([]byte, error) {
	if string(req) == "silence" {
		return dst, message.ErrBadRequest
	}
	return message.Echo(dst, req)
}

func testTimeout(t *testing.T, tr Transport) {
	c := tr.Dial(t, tr.Serve(t, "127.0.0.1:0", refuseSilence))
	_, err := Request(c, []byte("silence"), 50*time.Millisecond)
	if !errors.Is(err, os.ErrDeadlineExceeded) || !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Receive past deadline = %v, want os.ErrDeadlineExceeded and context.DeadlineExceeded", err)
	}
	// The conversation goes on, with no expired deadline left behind.
	if got := RoundTrip(t, c, "after"); got != "after" {
		t.Errorf("reply after a timeout = %q", got)
	}
}

func testCancel(t *testing.T, tr Transport) {
	c := tr.Dial(t, tr.Serve(t, "127.0.0.1:0", refuseSilence))
	cause := errors.New("user hung up")
	ctx, cancel := context.WithCancelCause(context.Background())
	errc := make(chan error, 1)
	go func() {
		_, err := c.Receive(ctx)
		errc <- err
	}()
	cancel(cause)
	if err := <-errc; !errors.Is(err, cause) {
		t.Errorf("Receive after cancel = %v, want the cancel cause", err)
	}
	if got := RoundTrip(t, c, "after"); got != "after" {
		t.Errorf("reply after a cancel = %q", got)
	}
}

func testClose(t *testing.T, tr Transport) {
	c := tr.Dial(t, tr.Serve(t, "127.0.0.1:0", message.Greet))
	RoundTrip(t, c, "Alice")
	errc := make(chan error, 1)
	go func() {
		_, err := c.Receive(context.Background())
		errc <- err
	}()
	if err := c.Close(); err != nil {
		t.Errorf("Close = %v", err)
	}
	if err := <-errc; !errors.Is(err, net.ErrClosed) {
		t.Errorf("blocked Receive after Close = %v, want net.ErrClosed", err)
	}
	if err := c.Send(context.Background(), []byte("x")); !errors.Is(err, net.ErrClosed) {
		t.Errorf("Send after Close = %v, want net.ErrClosed", err)
	}
	c.Close() // twice is fine
}

func testManyClients(t *testing.T, tr Transport, clients, each int) {
	addr := tr.Serve(t, "127.0.0.1:0", message.Greet)
	conns := make([]message.Conn, clients)
	for i := range conns {
		conns[i] = tr.Dial(t, addr)
	}
	GreetMany(t, conns, each)
}

// GreetMany greets each times on every Conn in conns, all Conns at once,
// one request in flight on each, and fails t on any wrong reply. Their
// server must answer with message.Greet.
func GreetMany(t testing.TB, conns []message.Conn, each int) {
	t.Helper()
	var wg sync.WaitGroup
	for i, c := range conns {
		wg.Go(func() {
			for j := range each {
				name := fmt.Sprintf("client%d-%d", i, j)
				got, err := Request(c, []byte(name), Timeout)
				if err != nil || string(got) != "Hello "+name+"!\n" {
					t.Errorf("client %d: reply to %q = %q, %v", i, name, got, err)
					return
				}
			}
		})
	}
	wg.Wait()
}

// Holder is an echo handler that holds the requests starting with "wait",
// for tests of what a server does with a request under way: each one sends
// on Entered as it starts, and waits for Free.
type Holder struct {
	Entered chan struct{}
	release chan struct{}
	once    sync.Once
}

// NewHolder returns a Holder. A test registers t.Cleanup(h.Free) once it
// has started its server, so that Free comes before the server's Close,
// which waits for the handler.
func NewHolder() *Holder {
	return &Holder{Entered: make(chan struct{}, 16), release: make(chan struct{})}
}

// Free lets every held request, and every later one, through.
func (h *Holder) Free() { h.once.Do(func() { close(h.release) }) }

// Handle is the handler.
func (h *Holder) Handle(dst, req []byte) ([]byte, error) {
	if bytes.HasPrefix(req, []byte("wait")) {
		h.Entered <- struct{}{}
		<-h.release
	}
	return message.Echo(dst, req)
}

// WantCutOff fails t unless err, a Shutdown's whose context was cancelled,
// says that n requests were cut off.
func WantCutOff(t testing.TB, err error, n int64) {
	t.Helper()
	var cut *drain.CutOff
	if !errors.As(err, &cut) || cut.Requests != n || !errors.Is(err, context.Canceled) {
		t.Errorf("Shutdown = %v, want %d requests cut off and context.Canceled", err, n)
	}
}
