package quic

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	quicgo "github.com/quic-go/quic-go"

	"github.com/udplab/udplab/internal/deadline"
	"github.com/udplab/udplab/internal/udpsock"
	"github.com/udplab/udplab/message"
)

// ClientConfig configures a client Conn. The zero value (or nil) works.
type ClientConfig struct {
	// Pin is the hex SHA-256 of the server's leaf certificate, as
	// Fingerprint and Server.Fingerprint spell it (colons and case
	// ignored). With a pin, only that certificate is accepted, and a
	// mismatch fails the dial with a *PinError naming both fingerprints.
	// Without one, the certificate is verified against TLS.RootCAs (or the
	// system's roots) and the server's name, except on a loopback address
	// with no RootCAs given: there any certificate is accepted, and Logger
	// gets a warning naming its fingerprint.
	Pin string
	// TLS is the base TLS configuration: RootCAs, ServerName and so on.
	// NextProtos is set to ALPN; a pin or the loopback rule replaces
	// InsecureSkipVerify and VerifyPeerCertificate. Nil means defaults.
	TLS *tls.Config
	// Logger receives the loopback warning and, at debug level, refused
	// requests. Nil discards everything.
	Logger *slog.Logger
}

// Conn is a QUIC connection carrying messages. It implements message.Conn:
// on a request Conn (Dial, NewConn) each Send is a request on its own
// stream, and Receive returns replies as they complete, in any order; on a
// chat Conn (DialPeer, AcceptPeer) each Send is a message on its own
// unidirectional stream. Either kind's Receive also returns the messages
// the peer sends on unidirectional streams.
//
// A Conn holds at most MaxStreams requests whose replies have not been
// received, and at most 64 of the peer's messages: past that, Send waits
// for Receive, and the peer for this side to receive.
type Conn struct {
	tr     *quicgo.Transport
	pc     net.PacketConn
	qc     *quicgo.Conn
	chat   bool
	remote net.Addr
	log    *slog.Logger
	rtt    time.Duration // dial start to handshake complete

	pending  chan struct{} // a token per request whose reply is not yet received
	peerMsgs chan struct{} // a token per peer stream being read or not yet received
	inbox    chan inMsg    // completed messages; room for every token, so never full
	last     *buffer       // the message Receive returned last, reused by the next
	lastSend atomic.Int64  // when a chat Conn last sent, in Unix nanoseconds

	mu      sync.Mutex    // orders startReader's wg.Add before Close's wg.Wait
	isDone  atomic.Bool   // Close was called; set under mu
	closing chan struct{} // closed by Close
	wg      sync.WaitGroup

	closeOnce sync.Once
	closeErr  error
}

// inMsg is a completed message and the token it holds.
type inMsg struct {
	buf   *buffer
	token chan struct{}
}

var _ message.Conn = (*Conn)(nil)

// Dial connects to the server at addr ("host:port") from a new UDP socket
// of the same address family. ctx bounds the handshake only.
func Dial(ctx context.Context, addr string, cfg *ClientConfig) (*Conn, error) {
	return dialAddr(ctx, addr, cfg, false)
}

// DialPeer connects to a chat peer at addr ("host:port"), which waits in
// AcceptPeer. Its Send opens a unidirectional stream per message.
func DialPeer(ctx context.Context, addr string, cfg *ClientConfig) (*Conn, error) {
	return dialAddr(ctx, addr, cfg, true)
}

func dialAddr(ctx context.Context, addr string, cfg *ClientConfig, chat bool) (*Conn, error) {
	pc, raddr, err := udpsock.Dial(addr)
	if err != nil {
		return nil, fmt.Errorf("quic: %w", err)
	}
	host, _, _ := net.SplitHostPort(addr)
	return dial(ctx, pc, raddr, host, cfg, chat)
}

// NewConn connects to the server at remote over pc, which it takes over:
// Close closes it, and so does a failure. This is the seam for an impaired
// socket. ctx bounds the handshake only.
func NewConn(ctx context.Context, pc net.PacketConn, remote net.Addr, cfg *ClientConfig) (*Conn, error) {
	host, _, err := net.SplitHostPort(remote.String())
	if err != nil {
		host = remote.String()
	}
	return dial(ctx, pc, remote, host, cfg, false)
}

func dial(ctx context.Context, pc net.PacketConn, remote net.Addr, host string, cfg *ClientConfig, chat bool) (*Conn, error) {
	if cfg == nil {
		cfg = &ClientConfig{}
	}
	log := orDiscard(cfg.Logger)
	tlsConf, err := clientTLS(cfg, host, log)
	if err != nil {
		pc.Close()
		return nil, err
	}
	qconf := clientConfig()
	if chat {
		qconf = chatConfig(DefaultIdle)
	}
	tr := newTransport(pc)
	start := time.Now()
	qc, err := tr.Dial(ctx, remote, tlsConf, qconf)
	if err != nil {
		tr.Close()
		pc.Close()
		return nil, fmt.Errorf("quic: dial %s: %w", remote, deadline.Err(ctx, err))
	}
	return newConn(tr, pc, qc, chat, log, time.Since(start)), nil
}

// AcceptPeer listens at listen ("host:port") for a chat peer, which dials
// with DialPeer, and returns the first one to connect. It stops listening
// then, so no later peer can join. Close closes the connection and the
// socket. cfg's TLS (a fresh SelfSigned certificate when nil) and Idle
// apply; before it waits it logs, at info level, the address and the
// certificate's fingerprint for the peer to pin. ctx cancels the wait; the
// error then matches context.Cause(ctx).
func AcceptPeer(ctx context.Context, listen string, cfg *ServerConfig) (*Conn, error) {
	c := cfg.withDefaults()
	tlsConf, fp, err := serverTLS(c.TLS)
	if err != nil {
		return nil, err
	}
	pc, err := net.ListenPacket("udp", listen)
	if err != nil {
		return nil, fmt.Errorf("quic: listen: %w", err)
	}
	tr := newTransport(pc)
	qc, err := acceptOne(ctx, tr, tlsConf, chatConfig(c.Idle), c.Logger, fp)
	if err != nil {
		tr.Close()
		pc.Close()
		return nil, fmt.Errorf("quic: accept on %s: %w", pc.LocalAddr(), err)
	}
	return newConn(tr, pc, qc, true, c.Logger, 0), nil
}

// acceptOne listens on tr for the first connection and stops listening.
func acceptOne(ctx context.Context, tr *quicgo.Transport, tlsConf *tls.Config, qconf *quicgo.Config, log *slog.Logger, fp string) (*quicgo.Conn, error) {
	ln, err := tr.Listen(tlsConf, qconf)
	if err != nil {
		return nil, err
	}
	defer ln.Close()
	log.Info("quic: waiting for a chat peer", "addr", ln.Addr(), "fingerprint", fp)
	qc, err := ln.Accept(ctx)
	if err != nil && ctx.Err() != nil {
		err = context.Cause(ctx)
	}
	return qc, err
}

func newConn(tr *quicgo.Transport, pc net.PacketConn, qc *quicgo.Conn, chat bool, log *slog.Logger, rtt time.Duration) *Conn {
	c := &Conn{
		tr: tr, pc: pc, qc: qc, chat: chat, remote: qc.RemoteAddr(), log: log, rtt: rtt,
		pending:  make(chan struct{}, MaxStreams),
		peerMsgs: make(chan struct{}, maxPeerMessages),
		inbox:    make(chan inMsg, MaxStreams+maxPeerMessages),
		closing:  make(chan struct{}),
	}
	c.wg.Add(1)
	go c.acceptPeerStreams()
	return c
}

// acceptPeerStreams reads each unidirectional stream the peer opens, in the
// order the peer opened them and one after another, for as long as the
// connection lives: a peer's messages (chat lines) arrive in the order
// sent, as a chat's reader expects. It takes a token before it accepts
// one, so at most maxPeerMessages are read or waiting for Receive; past
// that, the peer's streams wait in quic-go.
func (c *Conn) acceptPeerStreams() {
	defer c.wg.Done()
	done := c.qc.Context().Done()
	for {
		select {
		case c.peerMsgs <- struct{}{}:
		case <-done:
			return
		}
		str, err := c.qc.AcceptUniStream(c.qc.Context())
		if err != nil {
			<-c.peerMsgs
			return
		}
		c.wg.Add(1) // deliver's Done; safe: this goroutine's own count keeps wg above zero
		c.deliver(str, c.peerMsgs)
	}
}

// recvStream is the receiving side of a stream: a request's reply, or a
// peer's message.
type recvStream interface {
	io.Reader
	CancelRead(quicgo.StreamErrorCode)
}

// deliver reads str to its end and puts the message in the inbox, with
// the token it holds; on failure it gives the token back and delivers
// nothing: a refused request, a message too long, a closed connection.
func (c *Conn) deliver(str recvStream, token chan struct{}) {
	defer c.wg.Done()
	buf := getBuffer()
	msg, err := readMessage(str, buf.b)
	buf.b = msg
	if err != nil {
		c.dropped(str, err)
		putBuffer(buf)
		<-token
		return
	}
	c.inbox <- inMsg{buf, token}
}

// dropped stops reading a stream that delivers nothing, and says why at
// debug level.
func (c *Conn) dropped(str recvStream, err error) {
	code := quicgo.StreamErrorCode(CodeCancelled)
	if errors.Is(err, errTooLarge) {
		code = CodeTooLarge
	}
	str.CancelRead(code)
	if c.qc.Context().Err() == nil {
		c.log.Debug("quic: stream delivered nothing", "from", c.remote, "err", err)
	}
}

// Send sends msg: on a request Conn as a request on a new stream, whose
// reply a later Receive returns; on a chat Conn as a message on a new
// unidirectional stream. A message larger than MaxMessage is refused with
// an error matching message.ErrTooLarge and nothing is sent. Send waits,
// under ctx, while MaxStreams replies are pending, while the peer allows
// no more streams, and while flow control holds the message back. A Send
// cut short by ctx resets its stream, and that request gets no reply.
func (c *Conn) Send(ctx context.Context, msg []byte) error {
	if len(msg) > MaxMessage {
		return fmt.Errorf("quic: send %d bytes: %w: a stream carries at most %d", len(msg), message.ErrTooLarge, MaxMessage)
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("quic: send: %w", context.Cause(ctx))
	}
	if c.isDone.Load() {
		return fmt.Errorf("quic: send to %s: %w", c.remote, net.ErrClosed)
	}
	if c.chat {
		return c.sendMessage(ctx, msg)
	}
	return c.sendRequest(ctx, msg)
}

func (c *Conn) sendMessage(ctx context.Context, msg []byte) error {
	str, err := c.qc.OpenUniStreamSync(ctx)
	if err != nil {
		return c.opErr(ctx, "send to", err)
	}
	if err := writeMessage(ctx, str, msg); err != nil {
		return c.opErr(ctx, "send to", err)
	}
	c.lastSend.Store(time.Now().UnixNano())
	return nil
}

func (c *Conn) sendRequest(ctx context.Context, msg []byte) error {
	select {
	case c.pending <- struct{}{}:
	case <-ctx.Done():
		return c.opErr(ctx, "send to", ctx.Err())
	case <-c.closing:
		return c.opErr(ctx, "send to", net.ErrClosed)
	case <-c.qc.Context().Done():
		return c.opErr(ctx, "send to", context.Cause(c.qc.Context()))
	}
	str, err := c.qc.OpenStreamSync(ctx)
	if err == nil {
		err = writeMessage(ctx, str, msg)
	}
	if err == nil {
		err = c.startReader(str)
	}
	if err != nil {
		<-c.pending
		return c.opErr(ctx, "send to", err)
	}
	return nil
}

// startReader starts the goroutine that reads str's reply, unless the
// Conn is closing.
func (c *Conn) startReader(str *quicgo.Stream) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.isDone.Load() {
		str.CancelRead(CodeCancelled)
		return net.ErrClosed
	}
	c.wg.Add(1)
	go c.deliver(str, c.pending)
	return nil
}

// sendStream is the sending side of a stream: a request's, or a chat
// message's.
type sendStream interface {
	io.WriteCloser
	SetWriteDeadline(time.Time) error
	CancelWrite(quicgo.StreamErrorCode)
}

// writeMessage writes msg on str and closes it (FIN), under ctx; if that
// fails it resets str with CodeCancelled.
func writeMessage(ctx context.Context, str sendStream, msg []byte) error {
	stop := deadline.Watch(ctx, str.SetWriteDeadline)
	_, err := str.Write(msg)
	stop()
	if err == nil {
		err = str.Close()
	}
	if err != nil {
		str.CancelWrite(CodeCancelled)
	}
	return err
}

// Receive returns the next reply or peer message, whichever completes
// first. The slice is valid until the next Receive. Once the connection
// has ended, Receive returns what had completed, then the reason: an
// error matching io.EOF if the peer closed it with CodeNormal.
func (c *Conn) Receive(ctx context.Context) ([]byte, error) {
	if c.last != nil {
		putBuffer(c.last)
		c.last = nil
	}
	if c.isDone.Load() {
		return nil, fmt.Errorf("quic: receive from %s: %w", c.remote, net.ErrClosed)
	}
	select {
	case m := <-c.inbox:
		return c.take(m), nil
	default:
	}
	select {
	case m := <-c.inbox:
		return c.take(m), nil
	case <-ctx.Done():
		return nil, c.opErr(ctx, "receive from", ctx.Err())
	case <-c.closing:
		return nil, fmt.Errorf("quic: receive from %s: %w", c.remote, net.ErrClosed)
	case <-c.qc.Context().Done():
		select {
		case m := <-c.inbox:
			return c.take(m), nil
		default:
		}
		return nil, fmt.Errorf("quic: receive from %s: %w", c.remote, c.ended())
	}
}

// take returns m's bytes, keeping its buffer for the next Receive to
// recycle, and gives back its token.
func (c *Conn) take(m inMsg) []byte {
	<-m.token
	c.last = m.buf
	return m.buf.b
}

// ended is why the connection ended: io.EOF as well when the peer closed
// it normally.
func (c *Conn) ended() error {
	cause := context.Cause(c.qc.Context())
	var ae *quicgo.ApplicationError
	if errors.As(cause, &ae) && ae.Remote && ae.ErrorCode == CodeNormal {
		return fmt.Errorf("%w: the peer closed the connection (%w)", io.EOF, cause)
	}
	return cause
}

// opErr prefixes err with the package, the operation and the peer, and maps
// it onto what message.Conn promises: net.ErrClosed after Close, the
// context's errors for a deadline or a cancel, io.EOF once the peer closed.
func (c *Conn) opErr(ctx context.Context, op string, err error) error {
	switch {
	case c.isDone.Load():
		if !errors.Is(err, net.ErrClosed) {
			err = fmt.Errorf("%w (%w)", net.ErrClosed, err)
		}
	case ctx.Err() != nil:
		err = deadline.Err(ctx, err)
	case c.qc.Context().Err() != nil:
		err = c.ended()
	}
	return fmt.Errorf("quic: %s %s: %w", op, c.remote, err)
}

// LocalAddr returns the address this end sends from.
func (c *Conn) LocalAddr() net.Addr { return c.pc.LocalAddr() }

// RemoteAddr returns the peer's address.
func (c *Conn) RemoteAddr() net.Addr { return c.remote }

// Wire returns what this connection has put on the wire and taken from it
// so far; after Close, its totals.
func (c *Conn) Wire() WireStats { return wireOf(c.qc.ConnectionStats()) }

// HandshakeRTT returns how long the dial took, from its start to the
// handshake's end: one round trip plus the TLS work, on a quiet path. It
// is zero on the accepting end of a chat.
func (c *Conn) HandshakeRTT() time.Duration { return c.rtt }

// Close closes the connection with CodeNormal, the transport and the
// socket, and returns once every goroutine the Conn started, and quic-go's
// for it, has stopped. Requests in flight get no reply. A chat Conn first
// lingers for its last messages: QUIC's close discards data the peer has
// not acknowledged, so if it sent within the last few probe timeouts, it
// waits for the rest of them (at most a second), or until the peer closes.
// It is safe to call more than once and unblocks pending Send and Receive
// calls.
func (c *Conn) Close() error {
	c.closeOnce.Do(func() {
		c.linger()
		c.mu.Lock()
		c.isDone.Store(true)
		c.mu.Unlock()
		close(c.closing)
		c.qc.CloseWithError(CodeNormal, "")
		c.tr.Close()
		c.closeErr = c.pc.Close()
		c.wg.Wait()
	})
	return c.closeErr
}

// linger waits, on a chat Conn that sent recently, for its last messages
// to reach the peer (see lingerFor).
func (c *Conn) linger() {
	if c.chat {
		lingerFor(c.qc, c.lastSend.Load())
	}
}

// lingerFor waits until three probe timeouts (RFC 9002: smoothed RTT, four
// deviations, 25 ms of ACK delay) have passed since qc last sent data, at
// last (Unix nanoseconds; 0 for never), or maxLinger, or qc ends. By then
// what it sent has normally reached the peer, even after a loss or two:
// quic-go resends a lost packet within about one probe timeout. QUIC's
// close discards what the peer has not acknowledged, so a closing end
// lingers first.
func lingerFor(qc *quicgo.Conn, last int64) {
	if last == 0 {
		return
	}
	st := qc.ConnectionStats()
	pto := st.SmoothedRTT + 4*st.MeanDeviation + 25*time.Millisecond
	wait := time.Until(time.Unix(0, last).Add(min(3*pto, maxLinger)))
	if wait <= 0 {
		return
	}
	t := time.NewTimer(wait)
	defer t.Stop()
	select {
	case <-t.C:
	case <-qc.Context().Done():
	}
}

func orDiscard(l *slog.Logger) *slog.Logger {
	if l == nil {
		return slog.New(slog.DiscardHandler)
	}
	return l
}
