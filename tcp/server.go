package tcp

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/udplab/udplab/internal/backoff"
	"github.com/udplab/udplab/internal/budget"
	"github.com/udplab/udplab/internal/connset"
	"github.com/udplab/udplab/internal/drain"
	"github.com/udplab/udplab/message"
)

// Server tuning, each with the reason for its value.
const (
	// DefaultIdle is how long a server keeps a connection that sends
	// nothing, as reliable.DefaultIdle keeps a silent session: long
	// enough for a person typing into nc, short enough that abandoned
	// connections do not pile up.
	DefaultIdle = 60 * time.Second
	// DefaultMaxConns bounds the connections served at once (each holds a
	// goroutine and a buffer), like reliable.DefaultMaxSessions.
	DefaultMaxConns = 1024
	// DefaultMaxBuffered bounds what all connections together buffer of
	// requests beyond each one's first page: 64 messages of MaxMessage
	// under way at once, and every one of DefaultMaxConns connections
	// keeping keepBufferSize between messages, in far less than a small
	// server's memory.
	DefaultMaxBuffered = 64 << 20
	// TextPause is how long a text client's bytes without a newline wait
	// for more before they are taken as a request. The tutorial's Python
	// client sends a name with no newline and waits for the reply; a line
	// typed into nc arrives whole long before this. Under a millisecond on
	// loopback, tens of milliseconds across the world: a pause longer than
	// a round trip means the client is waiting.
	TextPause = 20 * time.Millisecond
	// writeTimeout bounds the write of one reply: a client that stops
	// reading replies is dropped after it, instead of pinning its
	// connection's goroutine. Loopback and LAN replies take microseconds.
	writeTimeout = 5 * time.Second
	// deadlineSlack is the fraction of a deadline that may pass before it is
	// set again. Setting a deadline costs a lock and a timer update, so a
	// connection refreshes its deadlines at most 4 times per period rather
	// than once per request; a silent connection is reaped after Idle to
	// 1.25×Idle, and a reply write may take writeTimeout to 1.25×writeTimeout.
	deadlineSlack = 4
)

// ServerConfig configures a Server. The zero value (or nil) works.
type ServerConfig struct {
	// Logger receives a line when the listener fails and, at debug level,
	// one per connection event and request. Nil discards everything.
	Logger *slog.Logger
	// Idle closes a connection that sends nothing for this long (to 1.25
	// times as long: deadlines are refreshed coarsely). Zero or less means
	// DefaultIdle.
	Idle time.Duration
	// MaxConns bounds the connections served at once; a connection beyond
	// it is closed at once and counted as refused. Zero or less means
	// DefaultMaxConns.
	MaxConns int
	// MaxBuffered bounds the bytes all connections together hold in read
	// buffers beyond the first 4 KiB each, for requests under way. A
	// buffer grows only as bytes arrive, whatever a frame header declares;
	// a connection whose request needs more than is left is closed and
	// counted (Stats.OverBudget), rather than left waiting on the others.
	// Zero or less means DefaultMaxBuffered.
	MaxBuffered int64
}

// withDefaults returns a copy of c (or of the zero config) with every unset
// field at its default.
func (c *ServerConfig) withDefaults() ServerConfig {
	var cfg ServerConfig
	if c != nil {
		cfg = *c
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
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

// Stats is what a TCP server has done so far.
type Stats struct {
	message.ServerStats
	Conns    int    // connections open now
	Accepted uint64 // connections ever served
	Refused  uint64 // connections closed at once because MaxConns were open
	Reaped   uint64 // connections closed after Idle of silence
	Text     uint64 // connections that spoke text rather than frames
	// OverBudget counts connections closed because their request needed
	// more read buffer than MaxBuffered had left.
	OverBudget uint64
}

// Server serves a Handler on every connection a listener accepts, one
// goroutine per connection, answering each connection's requests one by one
// in order. See the package comment for the protocol. Replies to pipelined
// requests, those already read when one is answered, are written together
// once no whole request is left to read, so a client keeping many in flight
// costs one write per batch rather than one per reply. A slow or silent
// client holds only its own connection: reads wait at most Idle, reply
// writes a few seconds, and at most MaxConns connections are open. Errors a
// client causes are counted, and logged at debug level only.
type Server struct {
	l     net.Listener
	h     message.Handler
	cfg   ServerConfig
	pause time.Duration // TextPause; tests may wait longer
	log   *slog.Logger
	debug bool

	counters                 message.Counters
	reaped, text, overBudget atomic.Uint64
	budget                   *budget.Bytes
	pending                  atomic.Int64 // requests read and not yet answered, all connections

	conns    *connset.Set[net.Conn]
	draining atomic.Bool // set by Shutdown: no new connections, no new requests

	lnOnce    sync.Once
	lnErr     error
	closeOnce sync.Once
	closing   chan struct{}  // closed by Close, wakes a backing-off accept loop
	wg        sync.WaitGroup // the accept loop and every connection's loop
}

var _ message.Server = (*Server)(nil)

// Listen listens on addr ("host:port", such as 127.0.0.1:6002 or [::1]:0)
// over the kernel's TCP and serves h there until Close.
func Listen(addr string, h message.Handler, cfg *ServerConfig) (*Server, error) {
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("tcp: listen: %w", err)
	}
	return NewServer(l, h, cfg), nil
}

// NewServer serves h on every connection l accepts until Close. The server
// takes l over: Close closes it.
func NewServer(l net.Listener, h message.Handler, cfg *ServerConfig) *Server {
	return newServer(l, h, cfg, TextPause)
}

func newServer(l net.Listener, h message.Handler, cfg *ServerConfig, pause time.Duration) *Server {
	c := cfg.withDefaults()
	s := &Server{
		l: l, h: h, cfg: c, pause: pause, log: c.Logger,
		debug:   c.Logger.Enabled(context.Background(), slog.LevelDebug),
		conns:   connset.New[net.Conn](c.MaxConns),
		budget:  budget.New(c.MaxBuffered),
		closing: make(chan struct{}),
	}
	s.wg.Add(1)
	go s.acceptLoop()
	return s
}

// Addr returns the address the server listens on.
func (s *Server) Addr() net.Addr { return s.l.Addr() }

// Stats returns what the server has done so far.
func (s *Server) Stats() Stats {
	accepted, refused := s.conns.Counts()
	return Stats{
		ServerStats: s.counters.Stats(),
		Conns:       s.conns.Len(),
		Accepted:    accepted,
		Refused:     refused,
		Reaped:      s.reaped.Load(),
		Text:        s.text.Load(),
		OverBudget:  s.overBudget.Load(),
	}
}

// Close closes the listener and every connection, and returns once the
// server's goroutines have stopped. It is safe to call more than once.
func (s *Server) Close() error {
	s.closeOnce.Do(func() {
		// From here the accept loop closes what it accepts; closing a
		// connection wakes its Read or Write.
		s.conns.Close()
		close(s.closing)
	})
	err := s.closeListener()
	s.wg.Wait()
	return err
}

// closeListener closes the listener once, for Shutdown or Close.
func (s *Server) closeListener() error {
	s.lnOnce.Do(func() { s.lnErr = s.l.Close() })
	return s.lnErr
}

// Shutdown stops accepting connections and lets each open one finish: the
// requests it has read are answered, then the server closes its sending
// side and waits for the client to close (see linger), and the server
// closes. A connection idle when Shutdown comes is closed at once. If ctx ends first, Shutdown closes every
// connection and returns an error matching ctx's that says how many
// requests read were not answered yet (a *drain.CutOff). Shutdown returns after Close's
// wait for the server's goroutines.
func (s *Server) Shutdown(ctx context.Context) error {
	s.draining.Store(true)
	_ = s.closeListener()
	// A deadline already past wakes every read; see connState.Read.
	s.conns.Each(func(c net.Conn) { _ = c.SetReadDeadline(time.Now()) })
	done := drain.Done(&s.wg)
	err := drain.Wait(ctx, done, s.pending.Load)
	if err != nil {
		err = fmt.Errorf("tcp: shutdown: %w", err)
	}
	err = errors.Join(err, s.Close())
	<-done
	return err
}

func (s *Server) acceptLoop() {
	defer s.wg.Done()
	var retry backoff.Backoff
	for {
		c, err := s.l.Accept()
		if err != nil {
			// Not every listener says net.ErrClosed once closed: ask the
			// server instead.
			if s.conns.Closed() || s.draining.Load() {
				return
			}
			// Out of file descriptors, say.
			s.counters.Error()
			if !retry.Retry(s.log, "tcp: accept failed", err, s.closing, "addr", s.Addr()) {
				return
			}
			continue
		}
		retry.Reset()
		if out := s.conns.Add(c); out != connset.Added {
			if out == connset.Full {
				s.log.Debug("tcp: connection refused", "from", c.RemoteAddr(), "max_conns", s.cfg.MaxConns)
			}
			continue
		}
		// The accept loop's own count keeps Close's Wait from returning
		// before this Add.
		s.wg.Add(1)
		go s.serveConn(c)
	}
}

// connState is one connection's serving state, owned by its goroutine.
// It is also the io.Reader its reader reads from (see Read).
type connState struct {
	s        *Server
	c        net.Conn
	r        *reader
	text     bool      // the connection speaks text
	readSet  time.Time // when the idle read deadline was set; zero after a pause
	writeSet time.Time // when the write deadline was set
	out      []byte    // replies not yet written
	held     int       // requests whose replies are in out
	writeErr error     // why a write failed: the connection is done
	drained  bool      // replies were written while the server shut down
}

func (s *Server) serveConn(c net.Conn) {
	defer s.wg.Done()
	defer func() {
		c.Close()
		s.conns.Remove(c)
	}()
	noDelay(c)
	cs := &connState{s: s, c: c, out: make([]byte, 0, readBufferSize)}
	cs.r = newReader(cs, true)
	cs.r.budget = s.budget
	defer cs.r.free()
	var err error
	if err = cs.r.fill(1, 1); err == nil {
		if cs.r.buf[0] == 0 {
			err = cs.serveFrames()
		} else {
			s.text.Add(1)
			cs.text = true
			err = cs.serveText()
		}
	}
	if cs.writeErr == nil {
		// Replies to the requests before a broken one still go out.
		_ = cs.flush()
	}
	s.pending.Add(int64(-cs.held))
	if cs.ended(err) && cs.drained {
		cs.linger()
	}
}

// errDraining ends a connection's loop once the server shuts down.
var errDraining = errors.New("tcp: server shutting down")

// linger closes the sending side of a connection the server shuts down,
// after the replies it wrote meanwhile, and reads until the client closes
// its own: the client has then read the replies (closing with its bytes
// unread would reset the connection, and the reset could discard them). A
// client that never closes is cut off by the end of Shutdown's context,
// or after Idle. A connection that wrote nothing since Shutdown began has
// nothing to wait for, and is closed at once.
func (cs *connState) linger() {
	cw, ok := cs.c.(interface{ CloseWrite() error })
	if !ok || cw.CloseWrite() != nil {
		return
	}
	_ = cs.c.SetReadDeadline(time.Now().Add(cs.s.cfg.Idle))
	_, _ = io.Copy(io.Discard, cs.c)
}

// Read reads the connection for the reader, under the read deadline the
// protocol needs: Idle of silence, set coarsely (see deadlineSlack), or, on
// a text connection with part of a line buffered, the text pause. First it
// writes the replies waiting: a client may wait for them before it sends
// more, and replies to pipelined requests go out together, in one write.
func (cs *connState) Read(p []byte) (int, error) {
	if err := cs.flush(); err != nil {
		return 0, err
	}
	if cs.s.draining.Load() {
		return 0, errDraining
	}
	now := time.Now()
	idle := cs.s.cfg.Idle
	switch {
	case cs.text && cs.r.buffered() > 0:
		_ = cs.c.SetReadDeadline(now.Add(cs.s.pause))
		cs.readSet = time.Time{}
	case now.Sub(cs.readSet) >= idle/deadlineSlack:
		_ = cs.c.SetReadDeadline(now.Add(idle + idle/deadlineSlack))
		cs.readSet = now
	}
	// Again, after the deadline: Shutdown may have set its own past one
	// just before, and the one set here would hide it.
	if cs.s.draining.Load() {
		return 0, errDraining
	}
	return cs.c.Read(p)
}

// ended counts and logs why a connection's loop ended, and reports
// whether it ended for Shutdown, which lets it linger.
func (cs *connState) ended(err error) (draining bool) {
	s := cs.s
	switch {
	case err == nil || errors.Is(err, io.EOF) && cs.r.buffered() == 0:
		// exit, or the client closed between requests.
	case s.conns.Closed():
		// The server closed the connection.
		return false
	case cs.writeErr == nil && s.draining.Load() && (errors.Is(err, errDraining) || isTimeout(err)):
		return true
	case errors.Is(err, errOverBudget):
		s.overBudget.Add(1)
	case cs.writeErr != nil:
		// A reply could not be written in writeTimeout, or at all.
		s.counters.Error()
	case isTimeout(err):
		s.reaped.Add(1)
		s.log.Debug("tcp: idle connection reaped", "from", cs.c.RemoteAddr(), "idle", s.cfg.Idle, "partial_bytes", cs.r.buffered())
		return false
	case errors.Is(err, message.ErrBadRequest), errors.Is(err, io.EOF):
		// A broken frame or an overlong line leaves the stream
		// unreadable, as does a stream that ends inside a frame.
		s.counters.BadRequest()
	default:
		s.counters.Error()
	}
	if err != nil {
		s.log.Debug("tcp: connection closed", "from", cs.c.RemoteAddr(), "err", err)
	}
	return false
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.Is(err, os.ErrDeadlineExceeded) || errors.As(err, &ne) && ne.Timeout()
}

// serveFrames answers framed requests with framed replies until the stream
// ends, breaks or says exit.
func (cs *connState) serveFrames() error {
	for {
		req, err := cs.r.frame()
		if err != nil {
			return err
		}
		cs.took()
		// The reply goes after room for its header, filled in below.
		mark := len(cs.out)
		reply, ok := cs.s.counters.Reply(cs.s.h, append(cs.out, 0, 0, 0, 0), req, MaxMessage)
		if ok {
			binary.BigEndian.PutUint32(reply[mark:], uint32(len(reply)-mark-headerLen))
			cs.out = reply
		} else {
			cs.out = reply[:mark]
		}
		if end, err := cs.answered(req, ok); end || err != nil {
			return err
		}
	}
}

// serveText answers text requests with unframed replies until the stream
// ends, breaks or says exit.
func (cs *connState) serveText() error {
	for {
		req, err := cs.textRequest()
		if err != nil {
			return err
		}
		cs.took()
		mark := len(cs.out)
		reply, ok := cs.s.counters.Reply(cs.s.h, cs.out, req, MaxMessage)
		cs.out = reply
		if !ok {
			cs.out = reply[:mark]
		}
		if end, err := cs.answered(req, ok); end || err != nil {
			return err
		}
	}
}

// textRequest returns the next line or, when the client pauses for the
// text pause or ends its stream without a newline, the bytes it sent.
func (cs *connState) textRequest() ([]byte, error) {
	req, err := cs.r.line(MaxMessage)
	if err != nil && cs.r.buffered() > 0 && (isTimeout(err) || errors.Is(err, io.EOF)) {
		// With bytes buffered every read waits the text pause (see
		// Read), so this timeout is a pause.
		return cs.r.rest(), nil
	}
	return req, err
}

// took counts a request read, unanswered until its reply is written.
func (cs *connState) took() {
	cs.held++
	cs.s.pending.Add(1)
}

// flushSize is how many bytes of replies wait for later requests at most
// before they are written: past it, one write per 64 KiB costs the kernel
// no more than fewer larger ones would.
const flushSize = 64 << 10

// answered is called once a request has been handled (its reply, if any,
// appended to out). It logs the request at debug level and writes the
// replies waiting if they are many or the request is exit; end reports
// that the connection is done.
func (cs *connState) answered(req []byte, ok bool) (end bool, err error) {
	if !ok {
		cs.held--
		cs.s.pending.Add(-1)
	}
	if cs.s.debug {
		cs.s.log.Debug("tcp: request", "from", cs.c.RemoteAddr(), "bytes", len(req), "answered", ok)
	}
	end = message.IsExit(req)
	if end || len(cs.out) >= flushSize {
		err = cs.flush()
	}
	return end, err
}

// flush writes the replies waiting, under the write deadline, set coarsely.
func (cs *connState) flush() error {
	if len(cs.out) == 0 {
		return nil
	}
	if now := time.Now(); now.Sub(cs.writeSet) >= writeTimeout/deadlineSlack {
		_ = cs.c.SetWriteDeadline(now.Add(writeTimeout + writeTimeout/deadlineSlack))
		cs.writeSet = now
	}
	_, err := cs.c.Write(cs.out)
	if err == nil {
		cs.s.pending.Add(int64(-cs.held))
		cs.held = 0
		cs.drained = cs.drained || cs.s.draining.Load()
	}
	cs.out = cs.out[:0]
	if cap(cs.out) > keepBufferSize {
		cs.out = make([]byte, 0, readBufferSize)
	}
	if err != nil {
		cs.writeErr = err
	}
	return err
}
