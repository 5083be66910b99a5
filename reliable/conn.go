// Package reliable is udplab's reliable transport: KCP sessions in message
// mode, with optional Reed-Solomon FEC and encryption, in kcp-go's formats.
// A client is kcp-go's own session; the server side (Server, AcceptOne) is
// udplab's session layer over kcp-go's KCP core (see listener), which keeps
// nothing running for an idle session. Its
// delivery class is reliable-ordered: every message arrives once, in the
// order sent, or the session reports an error. The price is acknowledgements,
// retransmissions, parity packets and per-packet headers, which the compare
// harness measures against the raw transport.
//
// A message that fits one KCP segment is sent as exactly one kcp-go Write, so
// any kcp-go program with the same FEC, cipher and key can talk to a udplab
// server. Longer messages, up to MaxMessage, are framed by udplab (see
// writeMessage).
package reliable

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"

	kcp "github.com/xtaci/kcp-go/v5"

	"github.com/udplab/udplab/internal/deadline"
	"github.com/udplab/udplab/internal/sockstat"
	"github.com/udplab/udplab/internal/udpsock"
	"github.com/udplab/udplab/message"
)

// Conn is a reliable client session with one server. It implements
// message.Conn.
type Conn struct {
	s  kcpSession
	pc net.PacketConn
	// l, set when the session was accepted (see AcceptOne), owns the
	// socket, and its gate registered it as a listener of this process
	// (see guard.Sources), until Close.
	l   *listener
	mss int
	r   *reader

	// The deadline setters, bound once: a method value made per call
	// would allocate on every Send and Receive.
	setRead, setWrite func(time.Time) error

	closeOnce sync.Once
}

var _ message.Conn = (*Conn)(nil)

// kcpSession is a Conn's session: kcp-go's UDPSession for a client, a
// listener's own session for AcceptOne's.
type kcpSession interface {
	messageWriter
	segmentReader
	SetReadDeadline(t time.Time) error
	SetWriteDeadline(t time.Time) error
	RemoteAddr() net.Addr
	GetConv() uint32
	Close() error
}

// Dial opens a session to the server at addr ("host:port") from an
// ephemeral port of the same address family.
func Dial(addr string, cfg *Config) (*Conn, error) {
	pc, raddr, err := udpsock.Dial(addr)
	if err != nil {
		return nil, fmt.Errorf("reliable: %w", err)
	}
	c, err := NewConn(pc, raddr, cfg)
	if err != nil {
		pc.Close()
		return nil, err
	}
	return c, nil
}

// NewConn opens a session to remote over pc, which it takes over: Close
// closes pc. This is the seam for an impaired socket. KCP has no handshake:
// the session exists once the first message is sent.
func NewConn(pc net.PacketConn, remote net.Addr, cfg *Config) (*Conn, error) {
	c, block, err := cfg.populate()
	if err != nil {
		return nil, err
	}
	s, err := kcp.NewConn2(remote, block, c.DataShards, c.ParityShards, pc)
	if err != nil {
		return nil, fmt.Errorf("reliable: dial %s: %w", remote, err)
	}
	tune(s, &c)
	sockstat.SetBuffers(pc)
	return newConn(s, pc, nil, segmentPayload(c.MTU, !c.NoFEC, block)), nil
}

func newConn(s kcpSession, pc net.PacketConn, l *listener, mss int) *Conn {
	return &Conn{s: s, pc: pc, l: l, mss: mss, r: newReader(s, nil), setRead: s.SetReadDeadline, setWrite: s.SetWriteDeadline}
}

// tune applies the per-session settings both ends share.
func tune(s *kcp.UDPSession, c *Config) {
	p := Profiles[c.Profile]
	s.SetNoDelay(p.NoDelay, p.Interval, p.Resend, p.NoCongestion)
	s.SetACKNoDelay(p.AckNoDelay)
	s.SetWindowSize(c.SendWindow, c.ReceiveWindow)
	s.SetMtu(c.MTU)
	s.SetWriteDelay(false)
}

// Send queues msg as one message and returns once KCP has taken it; KCP
// retransmits it until acknowledged. It blocks while the send window is full.
func (c *Conn) Send(ctx context.Context, msg []byte) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("reliable: send: %w", context.Cause(ctx))
	}
	stop := deadline.Watch(ctx, c.setWrite)
	err := writeMessage(c.s, msg, c.mss)
	stop()
	if err != nil {
		return fmt.Errorf("reliable: %w", sessionErr(ctx, err))
	}
	return nil
}

// Receive returns the next message, in the order the server sent them.
func (c *Conn) Receive(ctx context.Context) ([]byte, error) {
	stop := deadline.Watch(ctx, c.setRead)
	msg, err := c.r.next()
	stop()
	if err != nil {
		return nil, fmt.Errorf("reliable: receive from %s: %w", c.s.RemoteAddr(), sessionErr(ctx, err))
	}
	return msg, nil
}

// sessionErr maps kcp-go's errors onto the ones message.Conn promises.
func sessionErr(ctx context.Context, err error) error {
	if mapped := deadline.Err(ctx, err); mapped != err {
		return mapped
	}
	if errors.Is(err, io.ErrClosedPipe) {
		return net.ErrClosed
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return os.ErrDeadlineExceeded
	}
	return err
}

// LocalAddr returns the address the session sends from.
func (c *Conn) LocalAddr() net.Addr { return c.pc.LocalAddr() }

// RemoteAddr returns the server's address.
func (c *Conn) RemoteAddr() net.Addr { return c.s.RemoteAddr() }

// Close ends the session and closes the socket. KCP has no FIN: the server
// forgets the session when it goes idle.
func (c *Conn) Close() error {
	var err error
	c.closeOnce.Do(func() {
		c.s.Close()
		if c.l == nil {
			err = c.pc.Close()
			return
		}
		err = c.l.close()
		c.l.gate.sources.Close()
	})
	return err
}

// AcceptOne waits on pc for the first client session and returns it as a
// Conn, the listening end of a two-party conversation such as chat. The
// first client is the first source validated as a Server validates them;
// packets from other addresses are ignored once it has returned. The Conn
// takes pc over: Close closes it, and so does AcceptOne when it fails.
// ctx cancels the wait.
func AcceptOne(ctx context.Context, pc net.PacketConn, cfg *Config) (*Conn, error) {
	c, block, err := cfg.populate()
	if err != nil {
		pc.Close()
		return nil, err
	}
	// The gate makes the first peer the first validated one, and keeps
	// spoofed resets and replays from it, as for a server.
	g := newGate(pc, block, &c)
	l, err := newListener(pc, &c, g, 0)
	if err != nil {
		g.sources.Close()
		pc.Close()
		return nil, fmt.Errorf("reliable: listen %s: %w", pc.LocalAddr(), err)
	}
	sockstat.SetBuffers(pc)
	first := make(chan *session, 1)
	var chosen atomic.Bool
	l.accept = func(s *session) bool {
		if !chosen.CompareAndSwap(false, true) {
			return false
		}
		// The peer is chosen: no other source is probed or heard from
		// now on, so none costs a session nobody accepts.
		g.keepOnly(s.addr)
		first <- s
		return true
	}
	l.start()
	select {
	case s := <-first:
		return newConn(s, pc, l, segmentPayload(c.MTU, !c.NoFEC, block)), nil
	case <-ctx.Done():
		l.close()
		g.sources.Close()
		return nil, fmt.Errorf("reliable: accept on %s: %w", pc.LocalAddr(), context.Cause(ctx))
	}
}
