package raw

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

	"github.com/udplab/udplab/internal/leakcheck"
	"github.com/udplab/udplab/message"
)

func TestMain(m *testing.M) { leakcheck.VerifyTestMain(m) }

// testTimeout bounds every wait on loopback, where nothing is lost in
// practice; it only turns a hang into a failure.
const testTimeout = 5 * time.Second

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

func roundTrip(t testing.TB, c message.Conn, req string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	if err := c.Send(ctx, []byte(req)); err != nil {
		t.Fatalf("Send(%q): %v", req, err)
	}
	got, err := c.Receive(ctx)
	if err != nil {
		t.Fatalf("Receive after %q: %v", req, err)
	}
	return string(got)
}

func TestHandlersOverLoopback(t *testing.T) {
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
			s := startServer(t, "udp4", "127.0.0.1:0", tt.h)
			if got := roundTrip(t, dial(t, s.Addr()), tt.req); got != tt.want {
				t.Errorf("reply to %q = %q, want %q", tt.req, got, tt.want)
			}
		})
	}
}

func TestIPv6(t *testing.T) {
	s := startServer(t, "udp6", "[::1]:0", message.Greet)
	if got := roundTrip(t, dial(t, s.Addr()), "Bob"); got != "Hello Bob!\n" {
		t.Errorf("reply over ::1 = %q", got)
	}
}

// TestServerKeepsServingAfterExit checks that one client's exit ends nothing
// for the others.
func TestServerKeepsServingAfterExit(t *testing.T) {
	s := startServer(t, "udp4", "127.0.0.1:0", message.Greet)
	a, b := dial(t, s.Addr()), dial(t, s.Addr())
	if got := roundTrip(t, a, "exit"); got != "Good bye!\n" {
		t.Fatalf("exit reply = %q", got)
	}
	if got := roundTrip(t, b, "Carol"); got != "Hello Carol!\n" {
		t.Errorf("after another client's exit, reply = %q", got)
	}
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
		waitFor(t, func() bool { return s.Stats().Requests == uint64(sentSoFar(sizes, n)) })
	}
	if got := roundTrip(t, c, "Dave"); got != "Hello Dave!\n" {
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

func waitFor(t testing.TB, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(testTimeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met within", testTimeout)
		}
		time.Sleep(time.Millisecond)
	}
}

func TestOversizedReplyIsCountedNotSent(t *testing.T) {
	s := startServer(t, "udp4", "127.0.0.1:0", message.Greet)
	c := dial(t, s.Addr())
	ctx := context.Background()
	// "Hello " + name + "!\n" is 8 bytes over the name: too big for a datagram.
	if err := c.Send(ctx, bytes.Repeat([]byte("a"), MaxMessage)); err != nil {
		t.Fatal(err)
	}
	if got := roundTrip(t, c, "Eve"); got != "Hello Eve!\n" {
		t.Fatalf("reply = %q, want Eve's greeting (and nothing for the oversized name)", got)
	}
	if st := s.Stats(); st.Oversized != 1 {
		t.Errorf("Oversized = %d, want 1", st.Oversized)
	}
}

func TestSendTooLarge(t *testing.T) {
	s := startServer(t, "udp4", "127.0.0.1:0", message.Echo)
	err := dial(t, s.Addr()).Send(context.Background(), make([]byte, MaxMessage+1))
	if !errors.Is(err, message.ErrTooLarge) || !strings.Contains(err.Error(), fmt.Sprint(MaxMessage)) {
		t.Errorf("Send(%d bytes) = %v, want ErrTooLarge naming the limit", MaxMessage+1, err)
	}
}

func TestReceiveTimeout(t *testing.T) {
	// A server that never answers: the echo handler refuses nothing, so use
	// a bare socket that only reads.
	pc, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	c := dial(t, pc.LocalAddr())
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	_, err = c.Receive(ctx)
	if !errors.Is(err, os.ErrDeadlineExceeded) || !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Receive past deadline = %v, want os.ErrDeadlineExceeded and context.DeadlineExceeded", err)
	}
	// The next Receive must not inherit the expired deadline.
	if err := c.Send(context.Background(), []byte("x")); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 16)
	_, from, err := pc.ReadFrom(buf)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := pc.WriteTo([]byte("late"), from); err != nil {
		t.Fatal(err)
	}
	ctx2, cancel2 := context.WithTimeout(context.Background(), testTimeout)
	defer cancel2()
	if got, err := c.Receive(ctx2); err != nil || string(got) != "late" {
		t.Errorf("Receive after a timeout = %q, %v", got, err)
	}
}

func TestReceiveCancel(t *testing.T) {
	s := startServer(t, "udp4", "127.0.0.1:0", message.Greet)
	c := dial(t, s.Addr())
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
}

func TestForeignDatagramsDropped(t *testing.T) {
	s := startServer(t, "udp4", "127.0.0.1:0", message.Greet)
	c := dial(t, s.Addr())
	stranger, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer stranger.Close()
	if _, err := stranger.WriteTo([]byte("spoof"), c.LocalAddr()); err != nil {
		t.Fatal(err)
	}
	if got := roundTrip(t, c, "Frank"); got != "Hello Frank!\n" {
		t.Errorf("reply = %q, want the server's greeting, not the stranger's datagram", got)
	}
	if c.Foreign() != 1 {
		t.Errorf("Foreign() = %d, want 1", c.Foreign())
	}
}

func TestClose(t *testing.T) {
	s := startServer(t, "udp4", "127.0.0.1:0", message.Greet)
	c := dial(t, s.Addr())
	errc := make(chan error, 1)
	go func() {
		_, err := c.Receive(context.Background())
		errc <- err
	}()
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	if err := <-errc; !errors.Is(err, net.ErrClosed) {
		t.Errorf("blocked Receive after Close = %v, want net.ErrClosed", err)
	}
	if err := c.Send(context.Background(), []byte("x")); !errors.Is(err, net.ErrClosed) {
		t.Errorf("Send after Close = %v, want net.ErrClosed", err)
	}
	c.Close()
	s.Close()
	s.Close()
}

// TestManyClientsConcurrently has 20 clients greet at once, each many times.
func TestManyClientsConcurrently(t *testing.T) {
	s := startServer(t, "udp4", "127.0.0.1:0", message.Greet)
	var wg sync.WaitGroup
	for i := range 20 {
		c := dial(t, s.Addr())
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range 50 {
				name := fmt.Sprintf("client%d-%d", i, j)
				ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
				err := c.Send(ctx, []byte(name))
				var got []byte
				if err == nil {
					got, err = c.Receive(ctx)
				}
				cancel()
				if err != nil || string(got) != "Hello "+name+"!\n" {
					t.Errorf("client %d: reply to %q = %q, %v", i, name, got, err)
					return
				}
			}
		}()
	}
	wg.Wait()
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
