// Package raw is udplab's bare UDP transport: one message is one datagram,
// with no acknowledgement, no retransmission and no ordering. Its delivery
// class is unreliable-unordered: a message may be lost, duplicated or
// overtaken by a later one, exactly as the network treats it. It is the
// baseline the reliable transport is measured against.
package raw

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/udplab/udplab/internal/backoff"
	"github.com/udplab/udplab/internal/batch"
	"github.com/udplab/udplab/internal/deadline"
	"github.com/udplab/udplab/internal/drain"
	"github.com/udplab/udplab/internal/guard"
	"github.com/udplab/udplab/internal/sockstat"
	"github.com/udplab/udplab/internal/udpsock"
	"github.com/udplab/udplab/message"
)

// MaxMessage is the largest message raw carries: the largest UDP payload
// over IPv4 (65535 − 20 − 8 bytes). IPv6 could carry 20 bytes more; one limit
// keeps a message that works on one family working on the other.
const MaxMessage = 65507

// readBufferSize exceeds any UDP payload, so a read never truncates.
const readBufferSize = 64 << 10

// serveBatch is how many datagrams the server reads with one system call
// (recvmmsg on Linux) and answers with one (sendmmsg), at most: with many
// requests waiting, the calls, not the handler, are most of a request's
// cost.
const serveBatch = 32

// replyArena holds a batch's replies until they are written: room for one
// reply of any size at all times, and for a whole batch of ordinary ones
// (up to 2 KiB each).
const replyArena = MaxMessage + serveBatch*2048

// Conn is a raw client conversation with one server. It implements
// message.Conn. Datagrams that arrive from any address other than the
// server's are dropped: by the kernel on a connected socket (see Dial),
// otherwise by Receive, which counts them (see Foreign).
type Conn struct {
	pc     net.PacketConn
	remote net.Addr
	to     udpsock.Remote // pc, sending to remote

	buf     []byte // owned by Receive; one receiver at a time
	foreign atomic.Uint64

	// The deadline setters, bound once: a method value made per call
	// would allocate on every Send and Receive.
	setRead, setWrite func(time.Time) error

	closeOnce sync.Once
	closeErr  error
}

var _ message.Conn = (*Conn)(nil)

// Dial returns a Conn to the server at addr ("host:port") over a UDP socket
// of the same address family, connected to the server. The kernel drops
// datagrams from any other address, and a port nothing listens on (the
// server's host answers with ICMP port unreachable) makes a later Send or
// Receive fail with an error matching syscall.ECONNREFUSED.
func Dial(addr string) (*Conn, error) {
	uc, err := udpsock.DialConnected(addr)
	if err != nil {
		return nil, fmt.Errorf("raw: %w", err)
	}
	return NewConn(uc, uc.RemoteAddr()), nil
}

// NewConn returns a Conn that talks to remote over pc, which it takes over:
// Close closes pc. This is the seam for an impaired socket. A *net.UDPConn
// connected to remote (as net.DialUDP makes) is sent on with Write.
func NewConn(pc net.PacketConn, remote net.Addr) *Conn {
	return &Conn{
		pc: pc, remote: remote, to: udpsock.NewRemote(pc, remote), buf: make([]byte, readBufferSize),
		setRead: pc.SetReadDeadline, setWrite: pc.SetWriteDeadline,
	}
}

// Send sends msg as one datagram. A message larger than MaxMessage is
// refused with an error matching message.ErrTooLarge and nothing is sent.
func (c *Conn) Send(ctx context.Context, msg []byte) error {
	if len(msg) > MaxMessage {
		return fmt.Errorf("raw: send %d bytes: %w: one datagram carries at most %d", len(msg), message.ErrTooLarge, MaxMessage)
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("raw: send: %w", context.Cause(ctx))
	}
	stop := deadline.Watch(ctx, c.setWrite)
	err := c.to.Write(msg)
	stop()
	if err != nil {
		return fmt.Errorf("raw: send to %s: %w", c.remote, deadline.Err(ctx, err))
	}
	return nil
}

// Receive returns the next datagram from the server. The slice is valid
// until the next Receive.
func (c *Conn) Receive(ctx context.Context) ([]byte, error) {
	stop := deadline.Watch(ctx, c.setRead)
	defer stop()
	for {
		n, ok, err := c.to.Read(c.buf)
		if err != nil {
			return nil, fmt.Errorf("raw: receive from %s: %w", c.remote, deadline.Err(ctx, err))
		}
		if !ok {
			c.foreign.Add(1)
			continue
		}
		return c.buf[:n], nil
	}
}

// Foreign counts datagrams Receive dropped because they came from another
// address. On a connected socket the kernel drops those, and it stays 0.
func (c *Conn) Foreign() uint64 { return c.foreign.Load() }

// LocalAddr returns the address datagrams are sent from.
func (c *Conn) LocalAddr() net.Addr { return c.pc.LocalAddr() }

// RemoteAddr returns the server's address.
func (c *Conn) RemoteAddr() net.Addr { return c.remote }

// Close closes the socket, waking any blocked call. Later calls return an
// error matching net.ErrClosed.
func (c *Conn) Close() error {
	c.closeOnce.Do(func() { c.closeErr = c.pc.Close() })
	return c.closeErr
}

// ServerConfig configures a raw Server. The zero value (or nil) works.
type ServerConfig struct {
	// Logger receives one line when the server is ready and, at debug level,
	// one per request. Nil means slog.Default().
	Logger *slog.Logger
	// AllowLowPorts answers sources on ports below 1024 too. By default
	// they are dropped and counted: ordinary clients never send from one,
	// and reflection attacks aim replies at the services there.
	AllowLowPorts bool
}

// Server answers every datagram with the Handler's reply, sent back to the
// datagram's source. One socket serves any number of clients; there is no
// per-client state. A request the handler refuses, or whose reply would not
// fit a datagram, is counted and dropped; the server keeps serving.
//
// Nothing shows that a datagram's source address is not forged, and raw
// keeps no state that could show it, so every datagram is checked alone
// (see package guard): one from the server's own address (a reflection
// loop) or from a port below 1024 (unless ServerConfig.AllowLowPorts) is
// dropped before the handler runs, and a reply that would put more than 3
// times the request's bytes on the wire is not sent. Each is counted (see
// Stats).
type Server struct {
	pc  net.PacketConn
	h   message.Handler
	log *slog.Logger

	counters message.Counters
	sources  *guard.Sources
	capped   guard.Capped
	drops    *sockstat.Counter

	draining  atomic.Bool  // set by Shutdown: serve reads nothing more
	answering atomic.Int64 // requests of serve's batch not yet settled: dropped, refused, or their reply written

	closeOnce sync.Once
	closing   chan struct{} // closed by Close, wakes a backing-off serve
	done      chan struct{} // closed when serve has returned
}

var _ message.Server = (*Server)(nil)

// Stats is what a raw server has done so far: what it did with the
// requests it read, and what its checks (see Server) refused.
type Stats struct {
	message.ServerStats
	guard.Counts
}

// Listen binds addr and serves h on it until Close. The socket gets
// sockstat.BufferSize buffers, so a burst waits in the kernel rather than
// being dropped there.
func Listen(addr string, h message.Handler, cfg *ServerConfig) (*Server, error) {
	pc, err := net.ListenPacket("udp", addr)
	if err != nil {
		return nil, fmt.Errorf("raw: listen: %w", err)
	}
	sockstat.SetBuffers(pc)
	return NewServer(pc, h, cfg), nil
}

// NewServer serves h on pc until Close. The server takes pc over: Close
// closes it.
func NewServer(pc net.PacketConn, h message.Handler, cfg *ServerConfig) *Server {
	if cfg == nil {
		cfg = &ServerConfig{}
	}
	log := cfg.Logger
	if log == nil {
		log = slog.Default()
	}
	s := &Server{pc: pc, h: h, log: log, drops: sockstat.NewCounter(pc),
		sources: guard.NewSources(pc.LocalAddr(), cfg.AllowLowPorts),
		closing: make(chan struct{}), done: make(chan struct{})}
	go s.serve()
	return s
}

// Addr returns the address the server listens on.
func (s *Server) Addr() net.Addr { return s.pc.LocalAddr() }

// Stats returns what the server has done so far.
func (s *Server) Stats() Stats {
	return Stats{ServerStats: s.counters.Stats(), Counts: guard.Read(s.sources, &s.capped)}
}

// SocketDrops returns how many datagrams the kernel dropped at the server's
// socket because its receive buffer was full; ok is false when that is
// unknown (not Linux, or a PacketConn other than *net.UDPConn). After Close
// it is the count when the socket closed.
func (s *Server) SocketDrops() (n uint64, ok bool) { return s.drops.Drops() }

// Close stops the server and waits for its goroutine to end.
func (s *Server) Close() error {
	var err error
	s.closeOnce.Do(func() {
		close(s.closing)
		s.drops.Close()
		s.sources.Close()
		err = s.pc.Close()
	})
	<-s.done
	return err
}

// Shutdown stops reading datagrams, lets the server answer the batch it
// is answering, if any, and closes it. raw keeps nothing between batches,
// so that is all there is to drain. If ctx ends first (a slow handler),
// Shutdown closes the server anyway, which waits for the handler, and
// returns an error matching ctx's that says how many requests were cut
// off (a *drain.CutOff): at most the batch's. Datagrams still queued in
// the socket are not read.
func (s *Server) Shutdown(ctx context.Context) error {
	s.draining.Store(true)
	// A deadline already past wakes the read, and every read after it.
	_ = s.pc.SetReadDeadline(time.Now())
	err := drain.Wait(ctx, s.done, s.inHand)
	if err != nil {
		err = fmt.Errorf("raw: shutdown: %w", err)
	}
	return errors.Join(err, s.Close())
}

// inHand is how many requests the server holds unanswered: those of the
// batch it is answering.
func (s *Server) inHand() int64 { return s.answering.Load() }

// serve is the server's one goroutine. It reads a batch of requests,
// answers them in the order they came, and writes the replies in that
// order with one call: on a *net.UDPConn with recvmmsg and sendmmsg (on
// Linux) and no allocation; any other PacketConn (an impaired one from
// the link package, say) goes one datagram at a time through ReadFrom and
// WriteTo (see package batch).
func (s *Server) serve() {
	defer close(s.done)
	b := servingBatch{
		r: batch.NewReader(s.pc, serveBatch, readBufferSize), w: batch.NewWriter(s.pc, serveBatch),
		replies: make([]byte, replyArena), debug: s.log.Enabled(context.Background(), slog.LevelDebug),
	}
	var retry backoff.Backoff
	for {
		ms, err := b.r.Read()
		if err != nil {
			if errors.Is(err, net.ErrClosed) || s.draining.Load() {
				return
			}
			s.counters.Error()
			if !retry.Retry(s.log, "raw: read failed", err, s.closing) {
				return
			}
			continue
		}
		retry.Reset()
		s.answering.Store(int64(len(ms)))
		ok := s.answerBatch(&b, ms)
		s.answering.Store(0)
		if !ok {
			return
		}
	}
}

// servingBatch is serve's reader, writer and the arena its replies wait
// in until written.
type servingBatch struct {
	r       *batch.Reader
	w       *batch.Writer
	replies []byte
	off     int // replies[:off] hold replies not yet written
	debug   bool
}

// answerBatch answers ms in order and writes the replies; false means the
// socket is closed.
func (s *Server) answerBatch(b *servingBatch, ms []batch.Message) bool {
	for i := range ms {
		if len(b.replies)-b.off < MaxMessage && !s.flush(b) {
			return false
		}
		s.answerOne(b, &ms[i])
	}
	return s.flush(b)
}

// answerOne checks m's source, runs the handler, and queues the reply, if
// it may go, in b's arena.
func (s *Server) answerOne(b *servingBatch, m *batch.Message) {
	src := guard.AddrPort(m.NetAddr, m.Addr)
	if !s.sources.Allow(src) {
		s.answering.Add(-1) // dropped, and counted: settled
		return
	}
	reply, ok := s.answer(b.replies[b.off:b.off], m.Buf, src)
	if b.debug {
		s.log.Debug("raw: request", "from", source(m.NetAddr, src), "bytes", len(m.Buf), "answered", ok)
	}
	if !ok {
		s.answering.Add(-1) // refused, and counted: settled
		return
	}
	b.w.Add(reply, m.Addr, m.NetAddr)
	b.off = min(b.off+len(reply), len(b.replies)) // a reply the handler grew past the arena is its own
}

// flush writes the queued replies, counting those that failed, which
// settles their requests; false means the socket is closed, and the
// requests whose replies did not go are cut off.
func (s *Server) flush(b *servingBatch) bool {
	b.off = 0
	ms, err := b.w.Flush()
	for i := 0; err != nil && i < len(ms); i++ {
		if errors.Is(ms[i].Err, net.ErrClosed) {
			return false
		}
		if ms[i].Err != nil {
			s.counters.Error()
		}
	}
	s.answering.Add(-int64(len(ms)))
	return true
}

// answer runs the handler on req from src and reports whether its reply
// may go: it must fit a datagram and keep within guard.Factor times the
// request's wire bytes.
func (s *Server) answer(dst, req []byte, src netip.AddrPort) ([]byte, bool) {
	reply, ok := s.counters.Handle(s.h, dst, req, MaxMessage)
	if !ok || !s.capped.Allow(len(req), len(reply), src) {
		return reply, false
	}
	s.counters.Replied()
	return reply, true
}

// source is a datagram's source for a log line: the address ReadFrom gave,
// or, on a *net.UDPConn, which gives none, its AddrPort.
func source(from net.Addr, ap netip.AddrPort) any {
	if from == nil {
		return ap
	}
	return from
}
