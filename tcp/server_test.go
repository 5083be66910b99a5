package tcp

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/udplab/udplab/internal/conntest"
	"github.com/udplab/udplab/message"
)

// rawDial connects a bare TCP client, as nc or a tutorial's Python client
// would, with Timeout as a hang guard on every read and write.
func rawDial(t testing.TB, addr net.Addr) net.Conn {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr.String(), conntest.Timeout)
	if err != nil {
		t.Fatal(err)
	}
	c.SetDeadline(time.Now().Add(conntest.Timeout))
	t.Cleanup(func() { c.Close() })
	return c
}

// readN reads exactly n bytes from c.
func readN(t testing.TB, c net.Conn, n int) string {
	t.Helper()
	buf := make([]byte, n)
	if _, err := io.ReadFull(c, buf); err != nil {
		t.Fatalf("read %d bytes: %v (got %q)", n, err, buf)
	}
	return string(buf)
}

// expectEOF checks that the server has closed c, with nothing more sent.
func expectEOF(t testing.TB, c net.Conn) {
	t.Helper()
	var b [1]byte
	if n, err := c.Read(b[:]); err == nil || isTimeout(err) {
		t.Errorf("read after the server should have closed = %q, %v; want EOF", b[:n], err)
	}
}

func write(t testing.TB, c net.Conn, b []byte) {
	t.Helper()
	if _, err := c.Write(b); err != nil {
		t.Fatal(err)
	}
}

func TestText(t *testing.T) {
	s := startServer(t, "127.0.0.1:0", message.Greet, nil)
	for _, tt := range []struct{ name, send, want string }{
		{"LF", "Alice\n", "Hello Alice!\n"},
		{"CRLF", "Alice\r\n", "Hello Alice!\n"},
		{"no newline, then a pause", "Alice", "Hello Alice!\n"},
		{"pipelined", "Alice\nBob\r\nCarol\n", "Hello Alice!\nHello Bob!\nHello Carol!\n"},
		{"pipelined, then a pause", "Alice\nBob", "Hello Alice!\nHello Bob!\n"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			c := rawDial(t, s.Addr())
			write(t, c, []byte(tt.send))
			if got := readN(t, c, len(tt.want)); got != tt.want {
				t.Errorf("send %q: got %q, want %q", tt.send, got, tt.want)
			}
			// The connection goes on.
			write(t, c, []byte("Dave\n"))
			if got := readN(t, c, len("Hello Dave!\n")); got != "Hello Dave!\n" {
				t.Errorf("after %q, reply to Dave = %q", tt.send, got)
			}
		})
	}
	if st := s.Stats(); st.Text != 5 || st.Accepted != 5 {
		t.Errorf("stats = %+v, want 5 text connections", st)
	}
}

// TestTextEndOfStream: a text client that closes its sending side without
// a newline (printf Alice | nc -N) still gets its reply.
func TestTextEndOfStream(t *testing.T) {
	s := startServer(t, "127.0.0.1:0", message.Greet, nil)
	c := rawDial(t, s.Addr())
	write(t, c, []byte("Alice"))
	c.(*net.TCPConn).CloseWrite()
	if got := readN(t, c, len("Hello Alice!\n")); got != "Hello Alice!\n" {
		t.Errorf("reply = %q", got)
	}
	expectEOF(t, c)
}

// TestExit: in either dialect, exit gets its reply and then the server
// closes that connection; another client, connected before and after,
// goes on being served.
func TestExit(t *testing.T) {
	s := startServer(t, "127.0.0.1:0", message.Greet, nil)
	other := dial(t, s.Addr())
	conntest.RoundTrip(t, other, "Alice")
	for _, req := range []string{"exit\n", "exit\r\n", "exit"} {
		c := rawDial(t, s.Addr())
		write(t, c, []byte(req))
		if got := readN(t, c, len("Good bye!\n")); got != "Good bye!\n" {
			t.Errorf("text %q: reply %q", req, got)
		}
		expectEOF(t, c)
	}
	c := dial(t, s.Addr())
	if got := conntest.RoundTrip(t, c, "exit"); got != "Good bye!\n" {
		t.Errorf("framed exit: reply %q", got)
	}
	ctx, cancel := context.WithTimeout(context.Background(), conntest.Timeout)
	defer cancel()
	if _, err := c.Receive(ctx); !errors.Is(err, io.EOF) {
		t.Errorf("Receive after exit = %v, want EOF", err)
	}
	for _, c := range []*Conn{other, dial(t, s.Addr())} {
		if got := conntest.RoundTrip(t, c, "Carol"); got != "Hello Carol!\n" {
			t.Errorf("after exits, reply = %q", got)
		}
	}
}

// TestFramedPipelining writes 32 requests before reading any reply: 32
// replies come back, in order.
func TestFramedPipelining(t *testing.T) {
	s := startServer(t, "127.0.0.1:0", message.Greet, nil)
	c := dial(t, s.Addr())
	ctx, cancel := context.WithTimeout(context.Background(), conntest.Timeout)
	defer cancel()
	const n = 32
	for i := range n {
		if err := c.Send(ctx, fmt.Appendf(nil, "name%d", i)); err != nil {
			t.Fatal(err)
		}
	}
	for i := range n {
		got, err := c.Receive(ctx)
		if want := fmt.Sprintf("Hello name%d!\n", i); err != nil || string(got) != want {
			t.Fatalf("reply %d = %q, %v; want %q", i, got, err, want)
		}
	}
}

// TestFramedBinary echoes bytes no text client would send, a frame that
// starts with 0x00 among them, pipelined.
func TestFramedBinary(t *testing.T) {
	s := startServer(t, "127.0.0.1:0", message.Echo, nil)
	c := dial(t, s.Addr())
	rng := rand.New(rand.NewPCG(1, 2))
	big := make([]byte, MaxMessage)
	for i := range big {
		big[i] = byte(rng.Uint32())
	}
	msgs := [][]byte{
		{0x00}, {0x00, 0x00, 0x00, 0x05, 'h', 'e', 'l', 'l', 'o'}, []byte("\n\r\xff\xfe"),
		big[:5000], big, []byte("after"),
	}
	conntest.EchoInOrder(t, c, msgs)
}

// TestEmptyRequest: an empty frame is a valid frame, and no handler
// answers it: no reply, a bad request counted, the connection goes on.
func TestEmptyRequest(t *testing.T) {
	for name, h := range map[string]message.Handler{"greet": message.Greet, "echo": message.Echo, "time": message.Time(nil)} {
		t.Run(name, func(t *testing.T) {
			s := startServer(t, "127.0.0.1:0", h, nil)
			c := dial(t, s.Addr())
			if err := c.Send(context.Background(), nil); err != nil {
				t.Fatal(err)
			}
			if got := conntest.RoundTrip(t, c, "Alice"); !strings.Contains(got, "Alice") {
				t.Errorf("reply after an empty request = %q, want the reply to Alice", got)
			}
			if st := s.Stats(); st.Requests != 2 || st.BadRequests != 1 || st.Replies != 1 {
				t.Errorf("stats = %+v, want 2 requests, 1 bad, 1 reply", st)
			}
		})
	}
}

// TestManyClients: 50 concurrent clients × 100 greetings, every reply right.
func TestManyClients(t *testing.T) {
	s := startServer(t, "127.0.0.1:0", message.Greet, nil)
	const clients, each = 50, 100
	conns := make([]message.Conn, clients)
	for i := range conns {
		conns[i] = dial(t, s.Addr())
	}
	conntest.GreetMany(t, conns, each)
	if st := s.Stats(); st.Replies != clients*each || st.Accepted != clients {
		t.Errorf("stats = %+v, want %d replies from %d connections", st, clients*each, clients)
	}
}

// TestStalledClientsDoNotBlockOthers: a client that sends nothing, one
// that stops inside a frame, one inside a text line, and one that never
// reads its replies hold only their own connections.
func TestStalledClientsDoNotBlockOthers(t *testing.T) {
	s := startServer(t, "127.0.0.1:0", message.Greet, nil)
	rawDial(t, s.Addr())
	write(t, rawDial(t, s.Addr()), []byte{0, 0, 0, 9, 'A', 'l'})
	write(t, rawDial(t, s.Addr()), []byte{0, 0, 0})
	write(t, rawDial(t, s.Addr()), []byte("Alice"))
	// The deaf client sends long names until its server's replies fill
	// every buffer between them and the server stops reading.
	deaf := dial(t, s.Addr())
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		name := bytes.Repeat([]byte("a"), 64<<10)
		for deaf.Send(ctx, name) == nil {
		}
	}()
	t.Cleanup(func() { cancel(); <-done })
	conntest.WaitFor(t, func() bool { st := s.Stats(); return st.Accepted == 5 && st.Requests >= 10 })
	if got := conntest.RoundTrip(t, dial(t, s.Addr()), "Bob"); got != "Hello Bob!\n" {
		t.Errorf("reply = %q", got)
	}
}

func TestMaxConns(t *testing.T) {
	s := startServer(t, "127.0.0.1:0", message.Greet, &ServerConfig{MaxConns: 2})
	a, b := dial(t, s.Addr()), dial(t, s.Addr())
	conntest.RoundTrip(t, a, "a")
	conntest.RoundTrip(t, b, "b")
	c := rawDial(t, s.Addr())
	expectEOF(t, c)
	if st := s.Stats(); st.Refused != 1 || st.Accepted != 2 || st.Conns != 2 {
		t.Errorf("stats = %+v, want 1 refused, 2 accepted and open", st)
	}
	// A place freed is taken again.
	a.Close()
	conntest.WaitFor(t, func() bool { return s.Stats().Conns == 1 })
	if got := conntest.RoundTrip(t, dial(t, s.Addr()), "d"); got != "Hello d!\n" {
		t.Errorf("reply once a place was free = %q", got)
	}
}

// TestIdleReaped: silent connections are closed, whether they sent nothing
// at all or stopped inside a frame or a line; an active one is not.
func TestIdleReaped(t *testing.T) {
	s := startServer(t, "127.0.0.1:0", message.Greet, &ServerConfig{Idle: 200 * time.Millisecond})
	silent := rawDial(t, s.Addr())
	partial := rawDial(t, s.Addr())
	write(t, partial, []byte{0, 0, 0, 9, 'A'})
	conntest.WaitFor(t, func() bool { return s.Stats().Reaped == 2 })
	expectEOF(t, silent)
	expectEOF(t, partial)
	if got := conntest.RoundTrip(t, dial(t, s.Addr()), "Alice"); got != "Hello Alice!\n" {
		t.Errorf("reply = %q", got)
	}
	if st := s.Stats(); st.BadRequests != 0 || st.Errors != 0 {
		t.Errorf("stats = %+v: reaping is neither a bad request nor an error", st)
	}
}

// TestHugeHeader: a header declaring 0x00FFFFFF bytes is refused at once,
// without buffering for it: the connection is closed and counted as a bad
// request, and everyone else is served.
func TestHugeHeader(t *testing.T) {
	s := startServer(t, "127.0.0.1:0", message.Greet, nil)
	other := dial(t, s.Addr())
	conntest.RoundTrip(t, other, "Alice")
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	c := rawDial(t, s.Addr())
	write(t, c, []byte{0x00, 0xff, 0xff, 0xff, 'B', 'o', 'b'})
	expectEOF(t, c)
	conntest.WaitFor(t, func() bool { return s.Stats().BadRequests == 1 })
	runtime.ReadMemStats(&after)
	// Everything the test and the server allocated meanwhile is far below
	// what the header declares.
	if grew := after.TotalAlloc - before.TotalAlloc; grew > 0x00ffffff/4 {
		t.Errorf("allocated %d bytes while refusing the header", grew)
	}
	if got := conntest.RoundTrip(t, other, "Carol"); got != "Hello Carol!\n" {
		t.Errorf("reply = %q", got)
	}
}

// TestTextLineTooLong: a line longer than MaxMessage is a bad request that
// closes its connection.
func TestTextLineTooLong(t *testing.T) {
	s := startServer(t, "127.0.0.1:0", message.Greet, nil)
	c := rawDial(t, s.Addr())
	go c.Write(bytes.Repeat([]byte("a"), MaxMessage+1)) // ends when c closes
	expectEOF(t, c)
	conntest.WaitFor(t, func() bool { return s.Stats().BadRequests == 1 })
	if st := s.Stats(); st.Requests != 0 {
		t.Errorf("stats = %+v, want no request handled", st)
	}
}

// TestOversizedReply: a reply longer than MaxMessage is counted and not
// sent; the connection goes on.
func TestOversizedReply(t *testing.T) {
	s := startServer(t, "127.0.0.1:0", message.Greet, nil)
	c := dial(t, s.Addr())
	if err := c.Send(context.Background(), bytes.Repeat([]byte("a"), MaxMessage)); err != nil {
		t.Fatal(err)
	}
	if got := conntest.RoundTrip(t, c, "Eve"); got != "Hello Eve!\n" {
		t.Errorf("reply = %q, want Eve's greeting (and nothing for the oversized name)", got)
	}
	if st := s.Stats(); st.Oversized != 1 {
		t.Errorf("Oversized = %d, want 1", st.Oversized)
	}
}

// pipeListener is a net.Listener over net.Pipe: no kernel, and errors
// that are not net.ErrClosed, as a user-space stack's may be.
type pipeListener struct {
	conns     chan net.Conn
	done      chan struct{}
	closeOnce sync.Once
}

func newPipeListener() *pipeListener {
	return &pipeListener{conns: make(chan net.Conn), done: make(chan struct{})}
}

func (l *pipeListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.conns:
		return c, nil
	case <-l.done:
		return nil, errors.New("pipe listener shut down")
	}
}

func (l *pipeListener) Close() error {
	l.closeOnce.Do(func() { close(l.done) })
	return nil
}

func (l *pipeListener) Addr() net.Addr { return pipeAddr{} }

func (l *pipeListener) dial() (net.Conn, error) {
	a, b := net.Pipe()
	select {
	case l.conns <- b:
		return a, nil
	case <-l.done:
		return nil, errors.New("pipe listener shut down")
	}
}

type pipeAddr struct{}

func (pipeAddr) Network() string { return "pipe" }
func (pipeAddr) String() string  { return "pipe" }

// TestServeAnyListener serves over pipeListener: both dialects work, and
// Close ends every connection and returns.
func TestServeAnyListener(t *testing.T) {
	l := newPipeListener()
	s := NewServer(l, message.Greet, nil)
	defer s.Close()
	pc, err := l.dial()
	if err != nil {
		t.Fatal(err)
	}
	c := NewConn(pc)
	defer c.Close()
	if got := conntest.RoundTrip(t, c, "Alice"); got != "Hello Alice!\n" {
		t.Errorf("framed reply = %q", got)
	}
	tc, err := l.dial()
	if err != nil {
		t.Fatal(err)
	}
	defer tc.Close()
	tc.SetDeadline(time.Now().Add(conntest.Timeout))
	go tc.Write([]byte("Bob\n"))
	if got := readN(t, tc, len("Hello Bob!\n")); got != "Hello Bob!\n" {
		t.Errorf("text reply = %q", got)
	}
	if err := s.Close(); err != nil {
		t.Errorf("Close = %v", err)
	}
	if _, err := c.Receive(context.Background()); err == nil {
		t.Error("a connection outlived the server's Close")
	}
	if st := s.Stats(); st.Errors != 0 || st.Conns != 0 {
		t.Errorf("stats after Close = %+v, want no errors and no connections", st)
	}
}
