// Package message is the contract between udplab's transports and their users.
//
// One message is one application unit: a name in, a greeting out. The raw
// transport carries a message as one datagram and the reliable transport as
// one KCP message, so message boundaries hold in both. Transports implement
// Conn on the client side and serve a Handler on the server side; the compare
// harness and the command line consume only this package, so the two
// transports are interchangeable behind it.
package message

import (
	"context"
	"errors"
	"net"
)

// Conn is the client side of a message transport: a conversation with one
// server.
//
// Send and Receive may be called at the same time from two goroutines (one
// sending, one receiving), which is how a caller keeps several requests in
// flight. Two concurrent calls to Receive, or to Send, are not supported.
//
// A Receive whose context deadline passes returns an error matching both
// os.ErrDeadlineExceeded and context.DeadlineExceeded; a cancelled context
// returns its cause. After Close, both return errors matching net.ErrClosed.
type Conn interface {
	// Send transmits msg as one message. It may block while the transport's
	// send window is full. msg may be reused once Send returns.
	Send(ctx context.Context, msg []byte) error
	// Receive returns the next message. The slice is valid until the next
	// call to Receive, which may reuse it: copy it to keep it. That keeps
	// the receive path free of allocations.
	Receive(ctx context.Context) ([]byte, error)
	// LocalAddr is the address the conversation is sent from.
	LocalAddr() net.Addr
	// RemoteAddr is the server's address.
	RemoteAddr() net.Addr
	// Close ends the conversation and releases the socket. It is safe to call
	// more than once and unblocks pending Send and Receive calls.
	Close() error
}

// Server is a transport serving a Handler on one socket until Close.
type Server interface {
	// Addr is the address the server listens on.
	Addr() net.Addr
	// Close stops serving, releases the socket and returns once the server's
	// goroutines have stopped. It is safe to call more than once.
	Close() error
}

// A Handler turns one request into one reply. It appends the reply to dst
// and returns the extended slice, so a server can reuse one buffer for every
// reply. A request the handler cannot answer returns an error wrapping
// ErrBadRequest; the server counts it and sends nothing back.
//
// Handlers are called from many goroutines at once and must not keep req or
// dst after they return.
type Handler func(dst, req []byte) ([]byte, error)

// ErrBadRequest marks a request a Handler refuses. Servers count such
// requests and drop them; they never stop serving because of one.
var ErrBadRequest = errors.New("bad request")

// ErrNoReply marks a request a Handler took and has nothing to answer: a
// one-way message, such as a bulk transfer's. Servers count it as consumed
// and send nothing back, as for a refused request.
var ErrNoReply = errors.New("no reply")

// ErrTooLarge marks a message larger than the transport can carry as one
// unit. It is returned before anything is sent.
var ErrTooLarge = errors.New("message too large")

// RoundTrip sends req on c and returns the next message, both under ctx:
// one request and its reply. The reply is valid until c's next Receive.
func RoundTrip(ctx context.Context, c Conn, req []byte) ([]byte, error) {
	if err := c.Send(ctx, req); err != nil {
		return nil, err
	}
	return c.Receive(ctx)
}
