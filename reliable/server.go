package reliable

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"

	kcp "github.com/xtaci/kcp-go/v5"

	"github.com/udplab/udplab/internal/budget"
	"github.com/udplab/udplab/internal/connset"
	"github.com/udplab/udplab/internal/sockstat"
	"github.com/udplab/udplab/message"
)

// Server serves a Handler over KCP sessions, one per client address, all on
// one socket. Each session's requests are answered in order. Sessions that
// stay silent for Config.Idle are reaped (KCP has no FIN), and at most
// Config.MaxSessions exist at once; a client beyond that is refused. Packets
// that fail decryption or their checksum create no session, and neither
// does any packet from a source that has not yet shown it receives what
// the server sends it (see gate).
type Server struct {
	l    *kcp.Listener
	pc   net.PacketConn
	gate *gate
	asm  *budget.Bytes // reassembly memory, shared by every session
	// asmRefused counts sessions dropped for want of reassembly memory.
	asmRefused atomic.Uint64
	h          message.Handler
	cfg        Config
	mss        int
	log        *slog.Logger
	debug      bool

	counters message.Counters
	drops    *sockstat.Counter
	reaped   atomic.Uint64
	authBase uint64

	sessions *connset.Set[*kcp.UDPSession]
	drain    drainState

	closing   chan struct{} // closed by Close
	closeOnce sync.Once
	closeErr  error
	wg        sync.WaitGroup // the accept loop and every session's loop
}

var _ message.Server = (*Server)(nil)

// Stats is what a reliable server has done so far.
type Stats struct {
	message.ServerStats
	Sessions int    // sessions open now
	Accepted uint64 // sessions ever accepted
	Refused  uint64 // new sessions refused because the table was full
	Reaped   uint64 // sessions closed after Config.Idle of silence
	// Probation is how many sources are on probation now: they sent a
	// packet and were probed, but have not answered the probe.
	Probation int
	// Validated counts sources that answered a probe; Probes counts the
	// probes sent; Unvalidated counts packets from unvalidated sources that
	// were neither a data segment nor an answer (garbage, a failed cipher).
	Validated, Probes, Unvalidated uint64
	// ResetsRefused counts packets from a live session's address with
	// another conversation id, dropped (a spoofed reset, or a client that
	// restarted on the same port less than 1 s after its last packet).
	ResetsRefused uint64
	// Replays counts packets dropped because a packet with the same nonce
	// came before (with a key only).
	Replays uint64
	// LoopsDropped and LowPortsDropped count packets dropped for their
	// source: the server's own address, or a port below 1024 without
	// Config.AllowLowPorts.
	LoopsDropped, LowPortsDropped uint64
	// ReassemblyRefused counts sessions dropped because a long message
	// would have taken reassembly memory past its budget.
	ReassemblyRefused uint64
	// AuthFailures counts packets dropped for a failed decryption or
	// checksum (a wrong key, or corruption): those from unvalidated sources
	// by the server, the rest by kcp-go, which counts per process, so this
	// includes any other kcp-go session in the same process.
	AuthFailures uint64
}

// Listen binds addr and serves h on it until Close.
func Listen(addr string, h message.Handler, cfg *Config) (*Server, error) {
	pc, err := net.ListenPacket("udp", addr)
	if err != nil {
		return nil, fmt.Errorf("reliable: listen: %w", err)
	}
	s, err := NewServer(pc, h, cfg)
	if err != nil {
		pc.Close()
		return nil, err
	}
	return s, nil
}

// NewServer serves h on pc until Close. The server takes pc over: Close
// closes it.
func NewServer(pc net.PacketConn, h message.Handler, cfg *Config) (*Server, error) {
	c, block, err := cfg.populate()
	if err != nil {
		return nil, err
	}
	g := newGate(pc, block, &c)
	l, err := kcp.ServeConn(block, c.DataShards, c.ParityShards, g)
	if err != nil {
		g.sources.Close()
		return nil, fmt.Errorf("reliable: serve %s: %w", pc.LocalAddr(), err)
	}
	sockstat.SetBuffers(pc)
	s := &Server{
		l: l, pc: pc, gate: g, asm: budget.New(reassemblyBudget), h: h, cfg: c, log: c.Logger, drops: sockstat.NewCounter(pc),
		mss:      segmentPayload(c.MTU, !c.NoFEC, block),
		debug:    c.Logger.Enabled(context.Background(), slog.LevelDebug),
		authBase: atomic.LoadUint64(&kcp.DefaultSnmp.InCsumErrors),
		sessions: connset.New[*kcp.UDPSession](c.MaxSessions),
		closing:  make(chan struct{}),
	}
	if u, ok := pc.LocalAddr().(*net.UDPAddr); ok && !u.IP.IsLoopback() && c.Key == "" {
		s.log.Warn("reliable: listening beyond loopback without a key: anyone can forge packets; set a key", "addr", u)
	}
	if c.Key != "" && !g.authenticated {
		s.log.Warn("reliable: this cipher does not authenticate packets: with a CRC32 (or nothing) to check, anyone can alter or forge them without the key; use aes-128-gcm",
			"crypt", c.Crypt)
	}
	s.wg.Add(1)
	go s.acceptLoop()
	return s, nil
}

// Addr returns the address the server listens on.
func (s *Server) Addr() net.Addr { return s.pc.LocalAddr() }

// Config returns the settings the server runs with, defaults filled in.
func (s *Server) Config() Config { return s.cfg }

// Stats returns what the server has done so far.
func (s *Server) Stats() Stats {
	accepted, refused := s.sessions.Counts()
	loops, low := s.gate.sources.Dropped()
	gc := &s.gate.counts
	return Stats{
		ServerStats:       s.counters.Stats(),
		Sessions:          s.sessions.Len(),
		Accepted:          accepted,
		Refused:           refused,
		Reaped:            s.reaped.Load(),
		AuthFailures:      atomic.LoadUint64(&kcp.DefaultSnmp.InCsumErrors) - s.authBase + gc.authFailures.Load(),
		Probation:         s.gate.onProbationNow(),
		Validated:         gc.validated.Load(),
		Probes:            gc.probes.Load(),
		Unvalidated:       gc.unvalidated.Load(),
		ResetsRefused:     gc.resets.Load(),
		Replays:           gc.replays.Load(),
		LoopsDropped:      loops,
		LowPortsDropped:   low,
		ReassemblyRefused: s.asmRefused.Load(),
	}
}

// SocketDrops returns how many datagrams the kernel dropped at the server's
// socket because its receive buffer was full; ok is false when that is
// unknown (not Linux, or a PacketConn other than *net.UDPConn). After Close
// it is the count when the socket closed.
func (s *Server) SocketDrops() (n uint64, ok bool) { return s.drops.Drops() }

// Close closes every session, the listener and the socket, and returns once
// the server's goroutines have stopped.
func (s *Server) Close() error {
	s.closeOnce.Do(func() {
		close(s.closing)
		// From here the accept loop closes what it accepts; closing a
		// session wakes its Read.
		s.sessions.Close()
		// Closing the socket ends kcp-go's read loop, which then fails
		// AcceptKCP; the accept loop drains and closes the listener.
		s.drops.Close()
		s.gate.sources.Close()
		s.closeErr = s.pc.Close()
	})
	s.wg.Wait()
	return s.closeErr
}

// drainMisses is how many AcceptKCP errors in a row end a drain. Once the
// socket has failed, AcceptKCP chooses at random between a queued session
// and the error, so a queued session outlives 64 draws with odds of 2^-64.
const drainMisses = 64

// drainQueued closes the sessions l created that nobody accepted. Each would
// otherwise keep a goroutine and a scheduler entry forever, and kcp-go has
// no way to list them. Call it once l's socket is closed or has failed, so
// that no new session can join the queue; it returns when the queue is empty.
func drainQueued(l *kcp.Listener) {
	for misses := 0; misses < drainMisses; {
		if sess, err := l.AcceptKCP(); err == nil {
			sess.Close()
			misses = 0
		} else {
			misses++
		}
	}
}

func (s *Server) acceptLoop() {
	defer s.wg.Done()
	for {
		sess, err := s.l.AcceptKCP()
		if err != nil {
			// The socket failed or was closed: kcp-go creates no more
			// sessions.
			drainQueued(s.l)
			s.l.Close()
			if !s.sessions.Closed() {
				s.log.Error("reliable: socket failed; no longer serving", "addr", s.Addr(), "err", err)
			}
			return
		}
		// Tracked before it is admitted, so that a drain begun meanwhile
		// waits for it.
		act := s.drain.track(sess)
		if out := s.sessions.Add(sess); out != connset.Added {
			s.drain.untrack(sess)
			if out == connset.Full {
				s.log.Debug("reliable: session refused", "from", sess.RemoteAddr(), "max_sessions", s.cfg.MaxSessions)
			}
			continue
		}
		s.gate.bind(sess.RemoteAddr())
		// The accept loop's own count keeps Close's Wait from returning
		// before this Add.
		s.wg.Add(1)
		tune(sess, &s.cfg)
		go s.serveSession(sess, act)
	}
}

func (s *Server) serveSession(sess *kcp.UDPSession, act *activity) {
	defer s.wg.Done()
	defer func() {
		sess.Close()
		s.sessions.Remove(sess)
		s.gate.unbind(sess.RemoteAddr())
		s.drain.untrack(sess)
	}()
	r := newReader(sess, s.asm)
	defer r.release()
	reply := make([]byte, 0, maxSegment)
	for {
		s.setReadDeadline(sess)
		req, err := r.next()
		if err != nil {
			s.sessionEnded(sess, act, err)
			return
		}
		err = s.answer(sess, req, &reply)
		act.last.Store(time.Now().UnixNano())
		if err != nil {
			s.counters.Error()
			return
		}
	}
}

// sessionEnded counts and logs why sess's loop ended; a session ended by
// the drain waits for its last replies to be acknowledged first.
func (s *Server) sessionEnded(sess *kcp.UDPSession, act *activity, err error) {
	err = sessionErr(context.Background(), err)
	switch {
	case errors.Is(err, os.ErrDeadlineExceeded) && s.drain.on.Load():
		s.settle(sess, act)
	case errors.Is(err, os.ErrDeadlineExceeded):
		s.reaped.Add(1)
		s.log.Debug("reliable: idle session reaped", "from", sess.RemoteAddr(), "idle", s.cfg.Idle)
	case errors.Is(err, errBudget):
		s.asmRefused.Add(1)
		s.log.Debug("reliable: session dropped", "from", sess.RemoteAddr(), "err", err)
	case errors.Is(err, message.ErrBadRequest):
		// A broken frame leaves the message stream unreadable: drop
		// this session, keep serving the rest.
		s.counters.BadRequest()
		s.log.Debug("reliable: session dropped", "from", sess.RemoteAddr(), "err", err)
	}
}

// answer runs the handler on req and sends its reply, if any, in reply's
// buffer.
func (s *Server) answer(sess *kcp.UDPSession, req []byte, reply *[]byte) error {
	var ok bool
	*reply, ok = s.counters.Reply(s.h, (*reply)[:0], req, MaxMessage)
	if s.debug {
		s.log.Debug("reliable: request", "from", sess.RemoteAddr(), "bytes", len(req), "answered", ok)
	}
	if !ok || len(*reply) == 0 {
		return nil
	}
	// A peer that stops acknowledging must not pin this goroutine.
	sess.SetWriteDeadline(time.Now().Add(s.cfg.Idle))
	return writeMessage(sess, *reply, s.mss)
}
