// Package tcp is udplab's stream transport: messages framed on a byte
// stream. Over a real address the stream is the kernel's TCP; over anything
// else it is whatever net.Conn and net.Listener it is given, such as a
// user-space TCP/IP stack's. Its delivery class is reliable-ordered, and the
// price is TCP's: a handshake, acknowledgements, retransmissions and
// head-of-line blocking, which the compare harness measures against the
// other transports.
//
// # Framing
//
// Each message is a frame: its length as 4 bytes, big-endian, then that
// many bytes. A message is 0 to MaxMessage bytes; since MaxMessage < 2^24,
// the first byte of every frame header is 0x00. A header declaring more than
// MaxMessage breaks the stream: the receiver cannot find the next frame, so
// it reports an error and, on a server, closes the connection. Conn speaks
// only frames.
//
// # Text
//
// A Server also answers plain text, for nc, telnet and the classic tutorial
// clients. It decides per connection, by its first byte: 0x00 means frames
// both ways; anything else means text both ways. A text request is a line,
// its "\n" (or "\r\n") included and handed to the handler as it came. A
// client that sends bytes without a newline and then waits, as the
// tutorial's Python client does with s.send(b"Alice") and s.recv(1024), has
// what arrived taken as its request once nothing more comes for TextPause;
// likewise at the end of its stream. A text reply is written as the handler
// returns it, unframed. A line longer than MaxMessage is a bad request and
// closes the connection.
//
// # Exit
//
// In either dialect the request "exit" (one trailing "\n" or "\r\n"
// ignored) gets its reply, and then the server closes that connection, as
// the tutorial's TCP server does; requests sent after it go unanswered.
// Everyone else goes on being served.
package tcp

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/udplab/udplab/internal/deadline"
	"github.com/udplab/udplab/message"
)

// Conn is one end of a framed conversation over a byte stream. It
// implements message.Conn, and either end of a stream can use one: the
// dialling client, or the accepting end of a two-party chat (AcceptOne).
type Conn struct {
	c net.Conn

	r   *reader // owned by Receive
	out []byte  // owned by Send: unsent bytes of an interrupted frame, then the frame being sent

	// The deadline setters, bound once: a method value made per call
	// would allocate on every Send and Receive.
	setRead, setWrite func(time.Time) error

	closed    atomic.Bool
	closeOnce sync.Once
	closeErr  error
}

var _ message.Conn = (*Conn)(nil)

// NewConn returns a Conn over c, which it takes over: Close closes c. On a
// *net.TCPConn it turns Nagle's algorithm off (TCP_NODELAY), so a message
// leaves as soon as it is sent.
func NewConn(c net.Conn) *Conn {
	noDelay(c)
	return &Conn{c: c, r: newReader(c, false), setRead: c.SetReadDeadline, setWrite: c.SetWriteDeadline}
}

// noDelay turns Nagle's algorithm off on a kernel TCP connection; other
// streams have their own settings.
func noDelay(c net.Conn) {
	if tc, ok := c.(*net.TCPConn); ok {
		_ = tc.SetNoDelay(true)
	}
}

// Dial connects to the server at addr ("host:port") over the kernel's TCP.
// ctx bounds the connection's setup only.
func Dial(ctx context.Context, addr string) (*Conn, error) {
	var d net.Dialer
	c, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("tcp: %w", err)
	}
	return NewConn(c), nil
}

// AcceptOne waits on l for the first peer and returns it as a Conn, the
// listening end of a two-party conversation such as chat. It closes l
// whatever happens, so no later peer can connect. ctx cancels the wait; the
// error then matches context.Cause(ctx).
func AcceptOne(ctx context.Context, l net.Listener) (*Conn, error) {
	addr := l.Addr()
	// Closing the listener is the one way to wake any net.Listener's Accept.
	stop := context.AfterFunc(ctx, func() { l.Close() })
	c, err := l.Accept()
	if !stop() && err == nil {
		// Cancelled just as a peer arrived.
		c.Close()
		err = context.Cause(ctx)
	}
	l.Close()
	if err != nil {
		if ctx.Err() != nil {
			err = context.Cause(ctx)
		}
		return nil, fmt.Errorf("tcp: accept on %s: %w", addr, err)
	}
	return NewConn(c), nil
}

// Send writes msg as one frame, header and message in one Write. A message
// larger than MaxMessage is refused with an error matching
// message.ErrTooLarge and nothing is sent. It blocks while the stream's
// buffers are full.
//
// A Send cut short by ctx may have written part of its frame. The rest is
// kept and written first by the next Send, so the peer never sees a broken
// frame; the message then arrives after all.
func (c *Conn) Send(ctx context.Context, msg []byte) error {
	if len(msg) > MaxMessage {
		return fmt.Errorf("tcp: send %d bytes: %w: a frame carries at most %d", len(msg), message.ErrTooLarge, MaxMessage)
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("tcp: send: %w", context.Cause(ctx))
	}
	if c.closed.Load() {
		return fmt.Errorf("tcp: send: %w", net.ErrClosed)
	}
	c.out = appendFrame(c.out, msg)
	stop := deadline.Watch(ctx, c.setWrite)
	n, err := c.c.Write(c.out)
	stop()
	// Keep what was not written, for the next Send to write first.
	c.out = c.out[:copy(c.out, c.out[n:])]
	if err != nil {
		return c.opErr(ctx, "send to", err)
	}
	return nil
}

// Receive returns the next message. The slice is valid until the next
// Receive. A Receive cut short by ctx keeps what it has read of a frame, so
// the next Receive returns that whole message.
func (c *Conn) Receive(ctx context.Context) ([]byte, error) {
	if c.closed.Load() {
		return nil, fmt.Errorf("tcp: receive: %w", net.ErrClosed)
	}
	stop := deadline.Watch(ctx, c.setRead)
	msg, err := c.r.frame()
	stop()
	if err != nil {
		return nil, c.opErr(ctx, "receive from", err)
	}
	return msg, nil
}

// opErr prefixes err with the package, the operation and the peer, and maps
// it onto what message.Conn promises: net.ErrClosed after Close (whatever
// the stream says then), the context's errors for a deadline or a cancel.
func (c *Conn) opErr(ctx context.Context, op string, err error) error {
	if c.closed.Load() && !errors.Is(err, net.ErrClosed) {
		err = fmt.Errorf("%w (%w)", net.ErrClosed, err)
	} else {
		err = deadline.Err(ctx, err)
	}
	return fmt.Errorf("tcp: %s %s: %w", op, c.c.RemoteAddr(), err)
}

// LocalAddr returns this end's address.
func (c *Conn) LocalAddr() net.Addr { return c.c.LocalAddr() }

// RemoteAddr returns the peer's address.
func (c *Conn) RemoteAddr() net.Addr { return c.c.RemoteAddr() }

// Close closes the stream, waking any blocked call. Later calls return an
// error matching net.ErrClosed.
func (c *Conn) Close() error {
	c.closeOnce.Do(func() {
		c.closed.Store(true)
		c.closeErr = c.c.Close()
	})
	return c.closeErr
}
