package main

import (
	"context"
	"errors"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/udplab/udplab/internal/conntest"
	"github.com/udplab/udplab/modes"
)

// stubConn is a message.Conn in memory. Receive returns the messages and
// the error the test feeds it, and otherwise wakes only at Close, not at
// its context's end: the strictest transport for chat's shutdown order.
type stubConn struct {
	in      chan []byte
	fail    chan error
	sendErr error
	closed  chan struct{}
	once    sync.Once
}

func newStubConn(sendErr error, recv ...string) *stubConn {
	c := &stubConn{in: make(chan []byte, len(recv)), fail: make(chan error, 1), sendErr: sendErr, closed: make(chan struct{})}
	for _, m := range recv {
		c.in <- []byte(m)
	}
	return c
}

func (c *stubConn) Receive(context.Context) ([]byte, error) {
	select {
	case m := <-c.in:
		return m, nil
	default:
	}
	select {
	case m := <-c.in:
		return m, nil
	case err := <-c.fail:
		return nil, err
	case <-c.closed:
		return nil, net.ErrClosed
	}
}

func (c *stubConn) Send(context.Context, []byte) error {
	select {
	case <-c.closed:
		return net.ErrClosed
	default:
		return c.sendErr
	}
}

func (c *stubConn) Close() error         { c.once.Do(func() { close(c.closed) }); return nil }
func (c *stubConn) LocalAddr() net.Addr  { return &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 7001} }
func (c *stubConn) RemoteAddr() net.Addr { return &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 7000} }

// TestChatEndsOnEveryPath runs chat to its end by each way a chat ends, in
// a synctest bubble: a path that waited twice for the receiving goroutine,
// or on anything that never comes, leaves every goroutine blocked, which
// synctest reports as a deadlock instead of the test hanging. Input that
// stays open is a pipe the test closes once chat has returned, as a
// terminal nobody types into.
func TestChatEndsOnEveryPath(t *testing.T) {
	errSegment := errors.New("bad segment")
	errNoRoute := errors.New("no route")
	tests := []struct {
		name     string
		input    string
		endInput bool // input ends after the lines above
		linger   time.Duration
		sendErr  error
		recv     []string // what the peer sends
		// end, if not nil, ends the chat once every goroutine waits.
		end     func(c *stubConn, cancel context.CancelFunc)
		want    error // matched with errors.Is
		out     string
		elapsed time.Duration
	}{
		{name: "receive fails, input open", end: failWith(errSegment), want: errSegment},
		{name: "receive fails while lingering", endInput: true, linger: time.Hour, end: failWith(errSegment), want: errSegment},
		{name: "transport closes the conversation", end: failWith(net.ErrClosed), want: errClosedUnder},
		{name: "peer closes the connection", end: failWith(io.EOF)},
		{name: "send fails", input: "hello\n", sendErr: errNoRoute, want: errNoRoute},
		{name: "SIGTERM, input open", end: func(_ *stubConn, cancel context.CancelFunc) { cancel() }},
		{name: "SIGTERM while lingering", endInput: true, linger: time.Hour, end: func(_ *stubConn, cancel context.CancelFunc) { cancel() }},
		{name: "linger runs out", endInput: true, linger: time.Second, elapsed: time.Second},
		{name: "input ends, no linger", input: "bye for now\n", endInput: true},
		{name: "peer says byebye", recv: []string{"byebye\n"}, out: ">>>127.0.0.1:7000: byebye\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				c := newStubConn(tt.sendErr, tt.recv...)
				pr, pw := io.Pipe()
				if tt.endInput {
					pw.Close()
				}
				var out syncBuffer
				st := &stdio{io.MultiReader(strings.NewReader(tt.input), pr), &out, io.Discard}
				ctx, cancel := context.WithCancel(context.Background())
				defer cancel()
				start := time.Now()
				done := make(chan error, 1)
				go func() { done <- chat(ctx, c, modes.Raw, modes.Traits{MaxMessage: 100}, tt.linger, escaped, st) }()
				synctest.Wait()
				if tt.end != nil {
					tt.end(c, cancel)
				}
				err := <-done
				pw.Close() // ends the goroutine reading input
				if !errors.Is(err, tt.want) || (tt.want == nil && err != nil) {
					t.Errorf("chat = %v, want %v", err, tt.want)
				}
				if out.String() != tt.out {
					t.Errorf("printed %q, want %q", out.String(), tt.out)
				}
				if got := time.Since(start); got != tt.elapsed {
					t.Errorf("chat took %v, want %v", got, tt.elapsed)
				}
			})
		})
	}
}

func failWith(err error) func(*stubConn, context.CancelFunc) {
	return func(c *stubConn, _ context.CancelFunc) { c.fail <- err }
}

// TestEscape: what a terminal is shown of bytes from the network.
func TestEscape(t *testing.T) {
	tests := []struct{ in, want string }{
		{"Hello Zoë!", "Hello Zoë!"},
		{"\x1b[2J", `\x1b[2J`},
		{"\x1b]0;title\x07", `\x1b]0;title\a`},
		{"a\rPlease input your name: ", `a\rPlease input your name: `},
		{"two\nlines", `two\nlines`},
		{"tab\there", `tab\there`},
		{"nul\x00 del\x7f", `nul\x00 del\x7f`},
		{"c1 \u009b2J", `c1 \u009b2J`},
		{"bad \xff\xfe utf-8", `bad \xff\xfe utf-8`},
		{"bidi \u202egnp.exe", `bidi \u202egnp.exe`},
		{"isolate \u2066x\u2069", `isolate \u2066x\u2069`},
		{`quotes " and \ stay`, `quotes " and \ stay`},
		{"replacement \ufffd stays", "replacement \ufffd stays"},
		{"日本語 and 👋", "日本語 and 👋"},
		{"", ""},
	}
	for _, tt := range tests {
		if got := escape(tt.in); got != tt.want {
			t.Errorf("escape(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

// TestTextModeLine: a message becomes one line, escaped or as sent.
func TestTextModeLine(t *testing.T) {
	tests := []struct {
		tm       textMode
		in, want string
	}{
		{escaped, "Hello Zoë!\n", "Hello Zoë!\n"},
		{escaped, "no newline", "no newline\n"},
		{escaped, "crlf\r\n", "crlf\n"},
		{escaped, "\x1b[2J\n", `\x1b[2J` + "\n"},
		{escaped, "fake\n>>>10.0.0.1:7000: line\n", `fake\n>>>10.0.0.1:7000: line` + "\n"},
		{asSent, "\x1b[2J\n", "\x1b[2J\n"},
		{asSent, "crlf\r\n", "crlf\r\n"},
		{asSent, "no newline", "no newline\n"},
	}
	for _, tt := range tests {
		if got := tt.tm.line([]byte(tt.in)); got != tt.want {
			t.Errorf("textMode(%v).line(%q) = %q, want %q", tt.tm, tt.in, got, tt.want)
		}
	}
}

// TestEscapedError: an error's text is escaped, and errors.Is still sees
// what it wraps.
func TestEscapedError(t *testing.T) {
	inner := errors.New("closed: \x1b[2Jbye")
	err := escaped.err(inner)
	if want := `closed: \x1b[2Jbye`; err.Error() != want {
		t.Errorf("escaped error = %q, want %q", err.Error(), want)
	}
	if !errors.Is(err, inner) {
		t.Error("the escaped error does not wrap the original")
	}
	if asSent.err(inner) != inner || escaped.err(nil) != nil {
		t.Error("--raw-output changed an error, or nil became an error")
	}
}

// TestOutputEscaped: the client's replies and chat's lines are escaped by
// default and as sent with --raw-output; readable text is unchanged.
func TestOutputEscaped(t *testing.T) {
	tests := []struct {
		tm              textMode
		reply, wantText string
	}{
		{escaped, "\x1b[2J\n", `\x1b[2J`},
		{asSent, "\x1b[2J\n", "\x1b[2J"},
		{escaped, "Hello Zoë!\n", "Hello Zoë!"},
		{asSent, "Hello Zoë!\n", "Hello Zoë!"},
	}
	for _, tt := range tests {
		var out strings.Builder
		c := newStubConn(nil, tt.reply)
		err := greetLoop(context.Background(), c, modes.Raw, modes.Traits{MaxMessage: 100}, conntest.Timeout, tt.tm, &stdio{strings.NewReader("x\n"), &out, io.Discard})
		if want := prompt + tt.wantText + "\n" + prompt + "\n"; err != nil || out.String() != want {
			t.Errorf("client, reply %q, textMode %v: printed %q, %v; want %q", tt.reply, tt.tm, out.String(), err, want)
		}
		out.Reset()
		c = newStubConn(nil, tt.reply)
		c.fail <- io.EOF // the peer leaves after it
		err = printMessages(context.Background(), c, tt.tm, &stdio{nil, &out, io.Discard})
		if want := ">>>127.0.0.1:7000: " + tt.wantText + "\n"; !errors.Is(err, io.EOF) || out.String() != want {
			t.Errorf("chat, message %q, textMode %v: printed %q, %v; want %q", tt.reply, tt.tm, out.String(), err, want)
		}
	}
}

// TestDatagramChatPeerIsFixed: a raw or fec chat reads only its --peer:
// datagrams from any other address are counted and dropped, never printed
// nor taken as the peer.
func TestDatagramChatPeerIsFixed(t *testing.T) {
	for _, m := range []*modes.Mode{modes.Raw, modes.FEC} {
		t.Run(m.Name, func(t *testing.T) {
			a, b := chatPair(t, m)
			stranger, err := net.ListenPacket("udp4", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			defer stranger.Close()
			// Loopback queues datagrams at a's socket in the order sent, so
			// a reads the stranger's before b's.
			if _, err := stranger.WriteTo([]byte("\x1b[2Jgarbage"), a.LocalAddr()); err != nil {
				t.Fatal(err)
			}
			if err := b.Send(context.Background(), []byte("hi")); err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), conntest.Timeout)
			defer cancel()
			got, err := a.Receive(ctx)
			if err != nil || string(got) != "hi" {
				t.Fatalf("a received %q, %v; want %q", got, err, "hi")
			}
			if a.RemoteAddr().String() != b.LocalAddr().String() {
				t.Errorf("a's peer = %v, want %v", a.RemoteAddr(), b.LocalAddr())
			}
			var errOut strings.Builder
			reportForeign(a, b.LocalAddr().String(), &stdio{nil, io.Discard, &errOut})
			if want := "ignored 1 datagrams from addresses other than " + b.LocalAddr().String() + "\n"; errOut.String() != want {
				t.Errorf("report = %q, want %q", errOut.String(), want)
			}
		})
	}
}
