package quic

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	quicgo "github.com/quic-go/quic-go"

	"github.com/udplab/udplab/internal/budget"
	"github.com/udplab/udplab/internal/drain"
	"github.com/udplab/udplab/internal/guard"
	"github.com/udplab/udplab/internal/sockstat"
	"github.com/udplab/udplab/message"
)

// ServerConfig configures a Server, or the accepting end of a chat
// (AcceptPeer). The zero value (or nil) works.
type ServerConfig struct {
	// TLS is the server's TLS configuration, with its certificate. Nil
	// means a fresh SelfSigned certificate. NextProtos is set to ALPN
	// either way.
	TLS *tls.Config
	// Logger receives, at debug level, one line per connection and per
	// request. Nil discards everything.
	Logger *slog.Logger
	// Idle closes a connection silent for this long (quic-go's
	// MaxIdleTimeout; the client may ask for less). The server closes it
	// silently, as QUIC does on idleness; a quic-go client takes an idle
	// timeout under 5 s as 5 s, but learns sooner if it sends (the server
	// answers with a stateless reset). Zero or less means DefaultIdle.
	Idle time.Duration
	// MaxConns bounds the connections open at once, handshaking or served;
	// a connection attempt beyond it is refused before its handshake
	// (QUIC's CONNECTION_REFUSED) and counted, once per client address a
	// second (see refusalWindow). Zero or less means DefaultMaxConns.
	MaxConns int
	// MaxBuffered bounds the bytes all request streams together hold in
	// buffers beyond the first 512 each. A buffer grows only as a
	// request's bytes arrive; a stream whose request needs more than is
	// left gets STOP_SENDING and RESET_STREAM with CodeRefused and is
	// counted (Stats.OverBudget), and the connection goes on. Zero or less
	// means DefaultMaxBuffered.
	MaxBuffered int64
}

// withDefaults returns a copy of c (or of the zero config) with every unset
// field at its default.
func (c *ServerConfig) withDefaults() ServerConfig {
	var cfg ServerConfig
	if c != nil {
		cfg = *c
	}
	cfg.Logger = orDiscard(cfg.Logger)
	if cfg.Idle <= 0 {
		cfg.Idle = DefaultIdle
	}
	if cfg.MaxConns <= 0 {
		cfg.MaxConns = DefaultMaxConns
	}
	if cfg.MaxBuffered <= 0 {
		cfg.MaxBuffered = DefaultMaxBuffered
	}
	return cfg
}

// Stats is what a QUIC server has done so far.
type Stats struct {
	message.ServerStats
	Conns    uint64    // connections served now
	Accepted uint64    // connections ever served (handshake complete)
	Refused  uint64    // connection attempts refused because MaxConns were open
	Streams  uint64    // request streams accepted
	Wire     WireStats // every connection's, ended ones included
	// OverBudget counts request streams refused because they needed more
	// buffer than MaxBuffered had left.
	OverBudget uint64
}

// Server serves a Handler over QUIC: see the package comment for the
// protocol. Each connection has a goroutine accepting its streams, and each
// request stream one reading it, running the handler and writing the
// reply; quic-go lets a client have at most MaxStreams streams open, so
// a connection holds at most that many goroutines. A bad stream is reset
// and counted, and everyone else is served.
type Server struct {
	tr    *quicgo.Transport
	ln    *quicgo.Listener
	pc    net.PacketConn
	h     message.Handler
	cfg   ServerConfig
	log   *slog.Logger
	debug bool
	fp    string
	drops *sockstat.Counter
	// listener registers the socket as one of this process's UDP
	// listeners, whose datagrams the other servers never answer (see
	// guard.Sources): serve runs quic beside raw's echo and kcp's probe.
	listener *guard.Sources

	counters                               message.Counters
	accepted, refused, streams, overBudget atomic.Uint64
	budget                                 *budget.Bytes
	active                                 atomic.Int64 // request streams being served

	// drain is done once Shutdown starts: no more connections or streams.
	drain     context.Context
	drainStop context.CancelFunc

	mu     sync.Mutex
	places []context.Context         // a context per connection admitted; done once it ends
	recent refusals                  // the attempts refused last
	conns  map[*quicgo.Conn]struct{} // connections served now
	ended  WireStats                 // the totals of served connections that ended
	closed bool

	closeOnce sync.Once
	closeErr  error
	wg        sync.WaitGroup // the accept loop, every connection's and every stream's
}

var _ message.Server = (*Server)(nil)

// Listen binds addr ("host:port", such as 127.0.0.1:6003 or [::1]:0) over
// UDP and serves h there until Close.
func Listen(addr string, h message.Handler, cfg *ServerConfig) (*Server, error) {
	pc, err := net.ListenPacket("udp", addr)
	if err != nil {
		return nil, fmt.Errorf("quic: listen: %w", err)
	}
	return NewServer(pc, h, cfg)
}

// NewServer serves h over QUIC on pc until Close. The server takes pc
// over: Close closes it, and so does a failure here.
func NewServer(pc net.PacketConn, h message.Handler, cfg *ServerConfig) (*Server, error) {
	c := cfg.withDefaults()
	tlsConf, fp, err := serverTLS(c.TLS)
	if err != nil {
		pc.Close()
		return nil, err
	}
	s := &Server{
		pc: pc, h: h, cfg: c, log: c.Logger, fp: fp,
		debug: c.Logger.Enabled(context.Background(), slog.LevelDebug),
		drops: sockstat.NewCounter(pc), listener: guard.NewSources(pc.LocalAddr(), true),
		conns: make(map[*quicgo.Conn]struct{}), budget: budget.New(c.MaxBuffered),
	}
	s.drain, s.drainStop = context.WithCancel(context.Background())
	s.tr = newTransport(pc)
	s.tr.ConnContext = s.admit
	s.tr.VerifySourceAddress = s.crowded
	// With a reset key, a client still sending on a connection the server
	// has forgotten (closed for idleness, say) gets a stateless reset and
	// learns at once, instead of retrying for its own idle timeout. A key
	// per server is enough for that; one kept across restarts would also
	// reset the clients of a crashed server.
	var key quicgo.StatelessResetKey
	if _, err := rand.Read(key[:]); err == nil {
		s.tr.StatelessResetKey = &key
	}
	s.ln, err = s.tr.Listen(tlsConf, serverConfig(c.Idle))
	if err != nil {
		s.listener.Close()
		s.tr.Close()
		pc.Close()
		return nil, fmt.Errorf("quic: listen: %w", err)
	}
	s.wg.Add(1)
	go s.acceptLoop()
	return s, nil
}

// Addr returns the address the server listens on.
func (s *Server) Addr() net.Addr { return s.pc.LocalAddr() }

// Fingerprint returns the SHA-256 of the server's certificate, as
// Fingerprint spells it, for clients to pin; "" when ServerConfig.TLS
// chooses certificates per connection.
func (s *Server) Fingerprint() string { return s.fp }

// SocketDrops returns how many datagrams the kernel dropped at the server's
// socket because its receive buffer was full; ok is false when that is
// unknown (not Linux, or a PacketConn other than *net.UDPConn). After Close
// it is the count when the socket closed.
func (s *Server) SocketDrops() (n uint64, ok bool) { return s.drops.Drops() }

// Stats returns what the server has done so far.
func (s *Server) Stats() Stats {
	s.mu.Lock()
	wire := s.ended
	for qc := range s.conns {
		wire = wire.add(wireOf(qc.ConnectionStats()))
	}
	open := len(s.conns)
	s.mu.Unlock()
	return Stats{
		ServerStats: s.counters.Stats(),
		Conns:       uint64(open),
		Accepted:    s.accepted.Load(),
		Refused:     s.refused.Load(),
		Streams:     s.streams.Load(),
		Wire:        wire,
		OverBudget:  s.overBudget.Load(),
	}
}

// Close closes every connection with CodeNormal, the transport and the
// socket, and returns once the server's goroutines, and quic-go's, have
// stopped. It is safe to call more than once.
func (s *Server) Close() error {
	s.closeOnce.Do(func() {
		s.mu.Lock()
		s.closed = true
		conns := make([]*quicgo.Conn, 0, len(s.conns))
		for qc := range s.conns {
			conns = append(conns, qc)
		}
		s.mu.Unlock()
		s.ln.Close()
		for _, qc := range conns {
			qc.CloseWithError(CodeNormal, "server closing")
		}
		s.drops.Close()
		s.listener.Close()
		s.tr.Close()
		s.closeErr = s.pc.Close()
		s.drainStop()
	})
	s.wg.Wait()
	return s.closeErr
}

// Shutdown stops accepting connections and streams and lets each open
// connection finish: the request streams it has accepted are answered,
// and the connection lingers until its last reply has normally reached the
// client (see lingerFor), or the client closes, before it is closed with
// CodeNormal. Streams the client opens meanwhile are not served: the close
// ends them. If ctx ends first, Shutdown closes every connection and
// returns an error matching ctx's that says how many requests were being
// served (a *drain.CutOff). Shutdown returns after Close's wait for the server's goroutines.
func (s *Server) Shutdown(ctx context.Context) error {
	s.drainStop()
	s.ln.Close()
	done := drain.Done(&s.wg)
	err := drain.Wait(ctx, done, s.active.Load)
	if err != nil {
		err = fmt.Errorf("quic: shutdown: %w", err)
	}
	err = errors.Join(err, s.Close())
	<-done
	return err
}

// errFull refuses a connection attempt beyond MaxConns.
var errFull = errors.New("quic: MaxConns connections open")

// admit is the transport's ConnContext: quic-go calls it for each new
// connection attempt, before any handshake work, so a full server refuses
// at the cost of one packet. A place is held until the connection's
// context, ctx, is done: after its handshake failed or once it ended.
// Places are reclaimed only when the server seems full.
func (s *Server) admit(ctx context.Context, info *quicgo.ClientInfo) (context.Context, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.places) >= s.cfg.MaxConns {
		s.places = slices.DeleteFunc(s.places, func(p context.Context) bool { return p.Err() != nil })
	}
	if len(s.places) >= s.cfg.MaxConns {
		if s.recent.isNew(info.RemoteAddr.String(), time.Now()) {
			s.refused.Add(1)
			s.log.Debug("quic: connection refused", "from", info.RemoteAddr, "max_conns", s.cfg.MaxConns)
		}
		return nil, errFull
	}
	s.places = append(s.places, ctx)
	return ctx, nil
}

// crowded reports whether a new client must first show, with QUIC's Retry
// (RFC 9000 §8.1.2), that it receives at its address: once half the
// connection table is taken. A handshake under way takes a place, so
// spoofed Initials could otherwise fill the table until their handshakes
// time out; past half, they cannot, and real clients pay one round trip
// more while the table is that full.
func (s *Server) crowded(net.Addr) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	half := max(1, s.cfg.MaxConns/2)
	if len(s.places) >= half { // prune only then: a spoofed Initial must not cost a pass over the table
		s.places = slices.DeleteFunc(s.places, func(p context.Context) bool { return p.Err() != nil })
	}
	return len(s.places) >= half
}

// refusalWindow is how long a refused client address counts as the same
// attempt: a client's first flight may take several Initial packets (a
// post-quantum key share makes the ClientHello longer than one), and each
// of them asks to connect anew. It is far longer than the gap between them,
// and shorter than a person retrying.
const refusalWindow = time.Second

// refusals remembers the last few refused client addresses, so that the
// packets of one attempt are counted, and logged, once.
type refusals struct {
	recent [16]refusal
	next   int
}

type refusal struct {
	addr string
	at   time.Time
}

// isNew reports whether a refusal of addr at now is a new attempt, and
// remembers it if so.
func (r *refusals) isNew(addr string, now time.Time) bool {
	for _, x := range r.recent {
		if x.addr == addr && now.Sub(x.at) < refusalWindow {
			return false
		}
	}
	r.recent[r.next] = refusal{addr, now}
	r.next = (r.next + 1) % len(r.recent)
	return true
}

func (s *Server) acceptLoop() {
	defer s.wg.Done()
	for {
		// Accept fails only once the listener is closed.
		qc, err := s.ln.Accept(context.Background())
		if err != nil {
			return
		}
		s.accepted.Add(1)
		if !s.track(qc) {
			qc.CloseWithError(CodeNormal, "server closing")
			continue
		}
		// The accept loop's own count keeps Close's Wait from returning
		// before this Add.
		s.wg.Add(1)
		go s.serveConn(qc)
	}
}

// track adds qc to the connections served, unless the server is closing.
func (s *Server) track(qc *quicgo.Conn) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return false
	}
	s.conns[qc] = struct{}{}
	return true
}

// untrack waits for qc to end, then moves its wire totals to the ended
// connections'.
func (s *Server) untrack(qc *quicgo.Conn) {
	<-qc.Context().Done()
	s.mu.Lock()
	delete(s.conns, qc)
	s.ended = s.ended.add(wireOf(qc.ConnectionStats()))
	s.mu.Unlock()
	s.log.Debug("quic: connection ended", "from", qc.RemoteAddr(), "reason", context.Cause(qc.Context()))
}

// serveConn serves each request stream qc's client opens, one goroutine
// each, until the connection ends or the server shuts down; then it waits
// for the streams it started, and on shutdown closes qc once their replies
// have had time to arrive.
func (s *Server) serveConn(qc *quicgo.Conn) {
	defer s.wg.Done()
	defer s.untrack(qc)
	s.log.Debug("quic: connection", "from", qc.RemoteAddr())
	ctx, cancel := context.WithCancel(qc.Context())
	defer cancel()
	defer context.AfterFunc(s.drain, cancel)()
	var streams sync.WaitGroup
	var last atomic.Int64 // when a reply was last written, in Unix nanoseconds
	for {
		str, err := qc.AcceptStream(ctx)
		if err != nil {
			break
		}
		s.streams.Add(1)
		s.active.Add(1)
		streams.Go(func() {
			defer s.active.Add(-1)
			if s.serveStream(qc, str) {
				last.Store(time.Now().UnixNano())
			}
		})
	}
	streams.Wait()
	if qc.Context().Err() == nil {
		lingerFor(qc, last.Load())
		qc.CloseWithError(CodeNormal, "server shutting down")
	}
}

// serveStream answers one request stream, and reports whether it wrote a
// reply. Every path ends both of its directions (FIN or reset), so
// quic-go frees its place for another.
func (s *Server) serveStream(qc *quicgo.Conn, str *quicgo.Stream) (replied bool) {
	in, out := s.getBuffer(), getBuffer()
	defer s.putBuffer(in)
	defer putBuffer(out)
	req, held, err := readWithin(str, in.b, s.budget)
	in.b, in.held = req, in.held+held
	if err != nil {
		s.badStream(qc, str, err)
		return false
	}
	reply, ok := s.counters.Reply(s.h, out.b, req, MaxMessage)
	out.b = reply
	if s.debug {
		s.log.Debug("quic: request", "from", qc.RemoteAddr(), "stream", str.StreamID(), "bytes", len(req), "answered", ok)
	}
	if !ok {
		str.CancelWrite(CodeRefused)
		return false
	}
	if _, err := str.Write(reply); err != nil {
		str.CancelWrite(CodeCancelled)
		s.writeFailed(qc, err)
		return false
	}
	str.Close()
	return true
}

// getBuffer returns a pooled request buffer with its capacity beyond
// startBuffer taken from the budget, or a new small one when the budget
// has not that much left.
func (s *Server) getBuffer() *buffer {
	b := getBuffer()
	if extra := cap(b.b) - startBuffer; extra > 0 {
		if !s.budget.Take(extra) {
			return &buffer{b: make([]byte, 0, startBuffer)}
		}
		b.held = extra
	}
	return b
}

// putBuffer gives back what b holds of the budget and pools it.
func (s *Server) putBuffer(b *buffer) {
	s.budget.Give(b.held)
	b.held = 0
	putBuffer(b)
}

// badStream ends a stream whose request could not be read: one longer than
// MaxMessage is a bad request; one the client reset, or that the
// connection's end cut short, is nobody's fault.
func (s *Server) badStream(qc *quicgo.Conn, str *quicgo.Stream, err error) {
	code := quicgo.StreamErrorCode(CodeCancelled)
	switch {
	case errors.Is(err, errTooLarge):
		code = CodeTooLarge
		s.counters.BadRequest()
		s.log.Debug("quic: request too large", "from", qc.RemoteAddr(), "stream", str.StreamID())
	case errors.Is(err, errOverBudget):
		code = CodeRefused
		s.overBudget.Add(1)
		s.log.Debug("quic: request over the buffer budget", "from", qc.RemoteAddr(), "stream", str.StreamID())
	}
	str.CancelRead(code)
	str.CancelWrite(code)
}

// writeFailed counts a reply that could not be written, unless the client
// reset the stream or the connection ended, which are not the server's
// errors.
func (s *Server) writeFailed(qc *quicgo.Conn, err error) {
	var se *quicgo.StreamError
	if errors.As(err, &se) || qc.Context().Err() != nil {
		return
	}
	s.counters.Error()
	s.log.Debug("quic: reply not written", "from", qc.RemoteAddr(), "err", err)
}
