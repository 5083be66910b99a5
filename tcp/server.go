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
}

// Server serves a Handler on every connection a listener accepts, one
// goroutine per connection, answering each connection's requests one by one
// in order. See the package comment for the protocol. A slow or silent
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

	counters                        message.Counters
	accepted, refused, reaped, text atomic.Uint64

	mu     sync.Mutex
	conns  map[net.Conn]struct{}
	closed bool

	closeOnce sync.Once
	closing   chan struct{} // closed by Close, wakes a backing-off accept loop
	closeErr  error
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
		conns:   make(map[net.Conn]struct{}),
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
	s.mu.Lock()
	open := len(s.conns)
	s.mu.Unlock()
	return Stats{
		ServerStats: s.counters.Stats(),
		Conns:       open,
		Accepted:    s.accepted.Load(),
		Refused:     s.refused.Load(),
		Reaped:      s.reaped.Load(),
		Text:        s.text.Load(),
	}
}

// Close closes the listener and every connection, and returns once the
// server's goroutines have stopped. It is safe to call more than once.
func (s *Server) Close() error {
	s.closeOnce.Do(func() {
		s.mu.Lock()
		s.closed = true // from here the accept loop closes what it accepts
		for c := range s.conns {
			c.Close() // wakes the connection's Read or Write
		}
		s.mu.Unlock()
		close(s.closing)
		s.closeErr = s.l.Close()
	})
	s.wg.Wait()
	return s.closeErr
}

func (s *Server) isClosed() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.closed
}

func (s *Server) acceptLoop() {
	defer s.wg.Done()
	var backoff time.Duration
	for {
		c, err := s.l.Accept()
		if err != nil {
			// Not every listener says net.ErrClosed once closed: ask the
			// server instead.
			if s.isClosed() {
				return
			}
			// Out of file descriptors, say: back off as net/http does for
			// a failing Accept, from 5ms up to 1s, so it cannot spin a core.
			s.counters.Error()
			backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
			s.log.Warn("tcp: accept failed", "addr", s.Addr(), "err", err, "retry_in", backoff)
			select {
			case <-time.After(backoff):
			case <-s.closing:
				return
			}
			continue
		}
		backoff = 0
		s.mu.Lock()
		if s.closed {
			s.mu.Unlock()
			c.Close()
			continue
		}
		if len(s.conns) >= s.cfg.MaxConns {
			s.mu.Unlock()
			s.refused.Add(1)
			s.log.Debug("tcp: connection refused", "from", c.RemoteAddr(), "max_conns", s.cfg.MaxConns)
			c.Close()
			continue
		}
		s.conns[c] = struct{}{}
		s.wg.Add(1)
		s.mu.Unlock()
		s.accepted.Add(1)
		go s.serveConn(c)
	}
}

// deadlineReader reads a server connection under the read deadline the
// protocol needs: Idle of silence, set coarsely (see deadlineSlack), or, on
// a text connection with part of a line buffered, TextPause.
type deadlineReader struct {
	c           net.Conn
	idle, pause time.Duration
	set         time.Time // when the idle deadline was set; zero after a pause
	text        *reader   // set on a text connection: the reader this one feeds
}

func (d *deadlineReader) Read(p []byte) (int, error) {
	now := time.Now()
	switch {
	case d.text != nil && d.text.buffered() > 0:
		_ = d.c.SetReadDeadline(now.Add(d.pause))
		d.set = time.Time{}
	case now.Sub(d.set) >= d.idle/deadlineSlack:
		_ = d.c.SetReadDeadline(now.Add(d.idle + d.idle/deadlineSlack))
		d.set = now
	}
	return d.c.Read(p)
}

// connState is one connection's serving state, owned by its goroutine.
type connState struct {
	s        *Server
	c        net.Conn
	in       *deadlineReader
	r        *reader
	out      []byte    // the reply being written, reused
	writeSet time.Time // when the write deadline was last set
}

func (s *Server) serveConn(c net.Conn) {
	defer s.wg.Done()
	defer func() {
		c.Close()
		s.mu.Lock()
		delete(s.conns, c)
		s.mu.Unlock()
	}()
	noDelay(c)
	in := &deadlineReader{c: c, idle: s.cfg.Idle, pause: s.pause}
	cs := &connState{s: s, c: c, in: in, r: newReader(in, true), out: make([]byte, 0, readBufferSize)}
	var err error
	if err = cs.r.fill(1, 1); err == nil {
		if cs.r.buf[0] == 0 {
			err = cs.serveFrames()
		} else {
			s.text.Add(1)
			in.text = cs.r
			err = cs.serveText()
		}
	}
	cs.ended(err)
}

// ended counts and logs why a connection's loop ended.
func (cs *connState) ended(err error) {
	s := cs.s
	switch {
	case err == nil || errors.Is(err, io.EOF) && cs.r.buffered() == 0:
		// exit, or the client closed between requests.
	case s.isClosed():
		// The server closed the connection.
		return
	case isTimeout(err):
		s.reaped.Add(1)
		s.log.Debug("tcp: idle connection reaped", "from", cs.c.RemoteAddr(), "idle", s.cfg.Idle, "partial_bytes", cs.r.buffered())
		return
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
		// The reply goes after room for its header, filled in below: one
		// buffer, one Write.
		reply, ok := cs.s.counters.Reply(cs.s.h, cs.out[:headerLen], req, MaxMessage)
		cs.out = reply
		if ok {
			binary.BigEndian.PutUint32(reply, uint32(len(reply)-headerLen))
			if err := cs.write(reply); err != nil {
				return err
			}
		}
		if cs.done(req, ok) {
			return nil
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
		reply, ok := cs.s.counters.Reply(cs.s.h, cs.out[:0], req, MaxMessage)
		cs.out = reply
		if ok && len(reply) > 0 {
			if err := cs.write(reply); err != nil {
				return err
			}
		}
		if cs.done(req, ok) {
			return nil
		}
	}
}

// textRequest returns the next line or, when the client pauses for
// TextPause or ends its stream without a newline, the bytes it sent.
func (cs *connState) textRequest() ([]byte, error) {
	req, err := cs.r.line(MaxMessage)
	if err != nil && cs.r.buffered() > 0 && (isTimeout(err) || errors.Is(err, io.EOF)) {
		// With bytes buffered every read waits TextPause (see
		// deadlineReader), so this timeout is a pause.
		return cs.r.rest(), nil
	}
	return req, err
}

// done logs the request at debug level, lets go of a large reply buffer,
// and reports whether the request ends the connection.
func (cs *connState) done(req []byte, answered bool) bool {
	if cap(cs.out) > keepBufferSize {
		cs.out = make([]byte, 0, readBufferSize)
	}
	if cs.s.debug {
		cs.s.log.Debug("tcp: request", "from", cs.c.RemoteAddr(), "bytes", len(req), "answered", answered)
	}
	return message.IsExit(req)
}

// write writes one reply under the write deadline, set coarsely.
func (cs *connState) write(b []byte) error {
	if now := time.Now(); now.Sub(cs.writeSet) >= writeTimeout/deadlineSlack {
		_ = cs.c.SetWriteDeadline(now.Add(writeTimeout + writeTimeout/deadlineSlack))
		cs.writeSet = now
	}
	_, err := cs.c.Write(b)
	return err
}
