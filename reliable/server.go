package reliable

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
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
//
// The sessions are udplab's own (see listener), in kcp-go's formats: any
// kcp-go client with the same FEC, cipher and key talks to it unchanged.
// An idle session has no goroutine and no timer tick; a handler goroutine
// runs only while a session has requests to answer.
type Server struct {
	l    *listener
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

	sessions *connset.Set[*session]
	drain    drainState

	closing   chan struct{} // closed by Close
	closeOnce sync.Once
	closeErr  error
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
	// FECRefused counts sessions whose client's FEC shard counts are not
	// the server's: their parity rebuilds nothing (it would rebuild
	// garbage), their data still arrives. Client and server must agree.
	FECRefused uint64
	// AuthFailures counts packets dropped for a failed decryption or
	// checksum (a wrong key, or corruption): those from unvalidated sources
	// by the gate, the rest as kcp-go counts them, per process (the
	// server's sessions add theirs to kcp-go's counter), so this includes
	// any other KCP session in the same process.
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
// closes it, and so does NewServer when it fails.
func NewServer(pc net.PacketConn, h message.Handler, cfg *Config) (*Server, error) {
	c, block, err := cfg.populate()
	if err != nil {
		pc.Close()
		return nil, err
	}
	g := newGate(pc, block, &c)
	l, err := newListener(pc, &c, g, c.Idle)
	if err != nil {
		g.sources.Close()
		pc.Close()
		return nil, fmt.Errorf("reliable: serve %s: %w", pc.LocalAddr(), err)
	}
	sockstat.SetBuffers(pc)
	s := &Server{
		l: l, pc: pc, gate: g, asm: budget.New(reassemblyBudget), h: h, cfg: c, log: c.Logger, drops: sockstat.NewCounter(pc),
		mss:      segmentPayload(c.MTU, !c.NoFEC, block),
		debug:    c.Logger.Enabled(context.Background(), slog.LevelDebug),
		authBase: atomic.LoadUint64(&kcp.DefaultSnmp.InCsumErrors),
		sessions: connset.New[*session](c.MaxSessions),
		closing:  make(chan struct{}),
	}
	l.accept, l.serve, l.ended, l.idled, l.failed = s.accept, s.serve, s.ended, s.idled, s.failed
	if u, ok := pc.LocalAddr().(*net.UDPAddr); ok && !u.IP.IsLoopback() && c.Key == "" {
		s.log.Warn("reliable: listening beyond loopback without a key: anyone can forge packets; set a key", "addr", u)
	}
	if c.Key != "" && !g.authenticated {
		s.log.Warn("reliable: this cipher does not authenticate packets: with a CRC32 (or nothing) to check, anyone can alter or forge them without the key; use aes-128-gcm",
			"crypt", c.Crypt)
	}
	l.start()
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
		FECRefused:        s.l.fecRefused.Load(),
	}
}

// SocketDrops returns how many datagrams the kernel dropped at the server's
// socket because its receive buffer was full; ok is false when that is
// unknown (not Linux, or a PacketConn other than *net.UDPConn). After Close
// it is the count when the socket closed.
func (s *Server) SocketDrops() (n uint64, ok bool) { return s.drops.Drops() }

// Close closes every session and the socket, and returns once the
// server's goroutines have stopped.
func (s *Server) Close() error {
	s.closeOnce.Do(func() {
		close(s.closing)
		s.drops.Close()
		// The listener closes every session (each removes itself from
		// the set) and opens no more.
		s.closeErr = s.l.close()
		s.sessions.Close()
		s.gate.sources.Close()
	})
	return s.closeErr
}

// accept admits a new session, within MaxSessions.
func (s *Server) accept(sess *session) bool {
	if out := s.sessions.Add(sess); out != connset.Added {
		if out == connset.Full {
			s.log.Debug("reliable: session refused", "from", sess.addr, "max_sessions", s.cfg.MaxSessions)
		}
		return false
	}
	sess.r = newReader(sess, s.asm)
	sess.r.seg = nil // lent while serving: an idle session holds none
	sess.act = s.drain.track()
	s.gate.bind(sess.addr)
	return true
}

// ended forgets a session that closed. A serve under way gives back the
// session's reassembly memory as it ends; otherwise it goes back here.
func (s *Server) ended(sess *session) {
	sess.mu.Lock()
	if !sess.serving {
		sess.r.release()
	}
	sess.mu.Unlock()
	s.sessions.Remove(sess)
	s.gate.unbind(sess.addr)
	s.drain.untrack()
}

// idled reaps a session silent for Config.Idle.
func (s *Server) idled(sess *session) {
	s.reaped.Add(1)
	s.log.Debug("reliable: idle session reaped", "from", sess.addr, "idle", s.cfg.Idle)
	sess.Close()
}

func (s *Server) failed(err error) {
	s.log.Error("reliable: socket failed; no longer serving", "addr", s.Addr(), "err", err)
}

// serve answers sess's requests while it has some, and returns when it has
// none (the next starts it again); draining, it then waits for its replies
// to be acknowledged (see settle) and closes the session.
func (s *Server) serve(sess *session) {
	sess.mu.Lock()
	sess.r.seg = getPacket()
	sess.mu.Unlock()
	reply := getPacket()[:0]
	defer func() { putPacket(reply) }()
	for {
		req, err := sess.r.next()
		switch {
		case err == errEmpty && s.drain.on.Load():
			s.settle(sess)
			s.endServe(sess, true)
			return
		case err == errEmpty:
			if s.endServe(sess, false) {
				return
			}
			continue
		case err != nil:
			s.sessionEnded(sess, err)
			s.endServe(sess, true)
			return
		}
		sess.act.answering.Store(true)
		err = s.answer(sess, req, &reply)
		sess.touch()
		sess.act.answering.Store(false)
		if err != nil {
			s.counters.Error()
			s.endServe(sess, true)
			return
		}
	}
}

// endServe ends a serve of sess: it gives back the segment buffer and,
// when closing, the reassembly memory, and closes sess. Not closing, it
// stops only if no message arrived since the read found none (it then
// reports false: serve goes on).
func (s *Server) endServe(sess *session, closing bool) bool {
	sess.mu.Lock()
	// Draining, a serve that found nothing settles rather than stops: a
	// Shutdown that saw it running started no other.
	if !closing && (sess.kcp.PeekSize() > 0 || s.drain.on.Load()) {
		sess.mu.Unlock()
		return false
	}
	putPacket(sess.r.seg)
	sess.r.seg = nil
	if closing {
		sess.r.release()
	}
	sess.serving = false
	sess.mu.Unlock()
	if closing {
		sess.Close()
	}
	return true
}

// sessionEnded counts and logs why sess's serve ended.
func (s *Server) sessionEnded(sess *session, err error) {
	err = sessionErr(context.Background(), err)
	switch {
	case errors.Is(err, errBudget):
		s.asmRefused.Add(1)
		s.log.Debug("reliable: session dropped", "from", sess.addr, "err", err)
	case errors.Is(err, message.ErrBadRequest):
		// A broken frame leaves the message stream unreadable: drop
		// this session, keep serving the rest.
		s.counters.BadRequest()
		s.log.Debug("reliable: session dropped", "from", sess.addr, "err", err)
	}
}

// answer runs the handler on req and sends its reply, if any, in reply's
// buffer.
func (s *Server) answer(sess *session, req []byte, reply *[]byte) error {
	var ok bool
	*reply, ok = s.counters.Reply(s.h, (*reply)[:0], req, MaxMessage)
	if s.debug {
		s.log.Debug("reliable: request", "from", sess.addr, "bytes", len(req), "answered", ok)
	}
	if !ok || len(*reply) == 0 {
		return nil
	}
	// A peer that stops acknowledging must not pin this goroutine.
	sess.SetWriteDeadline(time.Now().Add(s.cfg.Idle))
	return writeMessage(sess, *reply, s.mss)
}
