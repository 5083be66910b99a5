package fec

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
	"github.com/udplab/udplab/internal/drain"
	"github.com/udplab/udplab/internal/guard"
	"github.com/udplab/udplab/internal/sockstat"
	"github.com/udplab/udplab/internal/udpsock"
	"github.com/udplab/udplab/message"
)

// Server answers each message with the Handler's reply, over FEC both
// ways. It keeps one peer for each source address: a decoder for its
// requests and an encoder for the replies. At most Config.MaxPeers are
// kept; a datagram from a new address beyond that is dropped and counted.
// A peer silent for Config.Idle is forgotten. Malformed datagrams create
// no peer. A request the handler refuses, or whose reply would not fit a
// shard, is counted and dropped; the server keeps serving everyone.
//
// Nothing shows that a source address is not forged: fec has no handshake,
// and a peer is never validated, so the server is stateless with respect
// to return routability however long it keeps a peer. Every datagram is
// checked alone (see package guard): one from the server's own address (a
// reflection loop) or from a port below 1024 (unless Config.AllowLowPorts)
// is dropped before it is parsed, and creates no peer; a reply whose data
// shard would put more than 3 times the wire bytes of its request's data
// shard on the wire is not sent. On top, a server sends no peer parity
// that would make what it sent that peer, IP and UDP headers included (28
// bytes a datagram), more than 3 times what it received from it; such
// parity is withheld. Each is counted (see ServerStats). Greetings and
// echoes stay well within the limits, parity and all, even before a
// request's own parity arrives; only replies several times longer than
// their requests meet them.
//
// Two goroutines serve: one reads and answers, one sends the parity of
// groups that do not fill within Flush and forgets idle peers.
type Server struct {
	pc    net.PacketConn
	h     message.Handler
	cfg   Config
	log   *slog.Logger
	codes *codecs
	flush *flusher

	counters                        message.Counters
	st                              counters
	seen, refused, reaped, withheld atomic.Uint64
	sources                         *guard.Sources
	capped                          guard.Capped
	drops                           *sockstat.Counter
	reply                           []byte  // the read loop's reply buffer
	gone                            []*peer // the reaper's scratch

	draining  atomic.Bool   // set by Shutdown: the read loop reads nothing more
	answering atomic.Bool   // the read loop holds a datagram it has not finished
	read      chan struct{} // closed when the read loop has returned

	mu    sync.Mutex
	peers map[peerKey]*peer
	full  bool // a full table has been logged

	closeOnce sync.Once
	closeErr  error
	closing   chan struct{} // closed by Close: stops the reaper, wakes a backing-off read loop
	wg        sync.WaitGroup
}

var _ message.Server = (*Server)(nil)

// ServerStats is what an fec server has done so far.
type ServerStats struct {
	message.ServerStats
	FEC     Stats  // every peer's encoding and decoding, summed
	Peers   uint64 // peers ever added
	Refused uint64 // datagrams from new addresses dropped because MaxPeers were kept
	Reaped  uint64 // peers forgotten after Idle of silence
	// Withheld counts parity shards not sent because they would have sent
	// a peer more than 3 times the bytes it sent (see the Server doc).
	Withheld uint64
	// Counts is what the per-datagram checks refused: datagrams dropped
	// for their source, and replies left unsent for the 3x rule.
	guard.Counts
}

// peerKey names a peer: its unmapped address and port, or, for a
// PacketConn whose addresses are not UDP ones, its address as a string.
type peerKey struct {
	ap  netip.AddrPort
	str string
}

// peer is one source address's state.
type peer struct {
	src  netip.AddrPort // its address, for the 3x rule; invalid if not UDP
	enc  *encoder
	dec  *decoder
	seen time.Time // the last datagram from it; guarded by Server.mu
	// Bytes received from and sent to it, IP and UDP headers included:
	// parity, which only fec adds, is withheld rather than send it more
	// than amplification times what it sent (see spend).
	recv, sent atomic.Int64
}

// Listen binds addr and serves h on it until Close. The socket gets
// sockstat.BufferSize buffers, so a burst waits in the kernel rather than
// being dropped there. A nil cfg is the zero Config.
func Listen(addr string, h message.Handler, cfg *Config) (*Server, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	pc, err := net.ListenPacket("udp", addr)
	if err != nil {
		return nil, fmt.Errorf("fec: listen: %w", err)
	}
	sockstat.SetBuffers(pc)
	return NewServer(pc, h, cfg)
}

// NewServer serves h on pc until Close. The server takes pc over: Close
// closes it, and so does NewServer when cfg is invalid.
func NewServer(pc net.PacketConn, h message.Handler, cfg *Config) (*Server, error) {
	c, err := takeOver(pc, cfg)
	if err != nil {
		return nil, err
	}
	s := &Server{
		pc: pc, h: h, cfg: c, log: c.Logger,
		codes: newCodecs(c.DataShards, c.ParityShards), flush: newFlusher(c.Flush),
		drops: sockstat.NewCounter(pc), peers: make(map[peerKey]*peer),
		sources: guard.NewSources(pc.LocalAddr(), c.AllowLowPorts),
		closing: make(chan struct{}), read: make(chan struct{}),
	}
	s.wg.Add(2)
	go s.serve()
	go s.maintain()
	return s, nil
}

// Addr returns the address the server listens on.
func (s *Server) Addr() net.Addr { return s.pc.LocalAddr() }

// Stats returns what the server has done so far.
func (s *Server) Stats() ServerStats {
	return ServerStats{
		ServerStats: s.counters.Stats(), FEC: s.st.stats(),
		Peers: s.seen.Load(), Refused: s.refused.Load(), Reaped: s.reaped.Load(),
		Withheld: s.withheld.Load(), Counts: guard.Read(s.sources, &s.capped),
	}
}

// SocketDrops returns how many datagrams the kernel dropped at the server's
// socket because its receive buffer was full; ok is false when that is
// unknown (not Linux, or a PacketConn other than *net.UDPConn). After Close
// it is the count when the socket closed.
func (s *Server) SocketDrops() (n uint64, ok bool) { return s.drops.Drops() }

// Close stops the server and returns once its goroutines have ended. Open
// groups' parity is not sent, and the requests missing from groups still
// open are counted as lost.
func (s *Server) Close() error {
	s.closeOnce.Do(func() {
		close(s.closing)
		s.drops.Close()
		s.sources.Close()
		s.closeErr = s.pc.Close()
		s.wg.Wait()
		for _, p := range s.peers {
			p.close()
		}
	})
	return s.closeErr
}

// Shutdown stops reading datagrams, lets the server finish the one it is
// handling, sends the parity of every peer's open group at once instead
// of at its flush time, and closes the server. If ctx ends first (a slow
// handler), Shutdown closes the server anyway, which waits for the
// handler, and returns an error matching ctx's that says how many
// requests were cut off (a *drain.CutOff): at most the one. Datagrams
// still queued in the socket are not read.
func (s *Server) Shutdown(ctx context.Context) error {
	s.draining.Store(true)
	// A deadline already past wakes the read, and every read after it.
	_ = s.pc.SetReadDeadline(time.Now())
	err := drain.Wait(ctx, s.read, s.inHand)
	if err != nil {
		err = fmt.Errorf("fec: shutdown: %w", err)
	} else {
		s.flushAll()
	}
	return errors.Join(err, s.Close())
}

// inHand is how many requests the server holds unanswered: 1 while it
// handles a datagram.
func (s *Server) inHand() int64 {
	if s.answering.Load() {
		return 1
	}
	return 0
}

// flushAll sends the parity of every peer's open group.
func (s *Server) flushAll() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, p := range s.peers {
		p.enc.flushOpen()
	}
}

// serve is the read loop: it decodes each datagram and answers each
// message it delivers.
func (s *Server) serve() {
	defer s.wg.Done()
	defer close(s.read)
	buf := make([]byte, readBufferSize)
	var retry backoff.Backoff
	for {
		n, from, ap, err := udpsock.ReadFrom(s.pc, buf)
		if err != nil {
			if errors.Is(err, net.ErrClosed) || s.draining.Load() {
				return
			}
			s.counters.Error()
			if !retry.Retry(s.log, "fec: read failed", err, s.closing) {
				return
			}
			continue
		}
		retry.Reset()
		s.answering.Store(true)
		s.take(buf[:n], from, ap)
		s.answering.Store(false)
	}
}

// take checks one datagram's source, parses it, and hands it to its peer,
// which answers any request it completes.
func (s *Server) take(b []byte, from net.Addr, ap netip.AddrPort) {
	if !s.sources.Allow(guard.AddrPort(from, ap)) {
		return
	}
	h, shard, ok := parse(b, s.cfg.DataShards, s.cfg.ParityShards)
	if !ok {
		s.st.malformed.Add(1)
		return
	}
	if p := s.peer(from, ap); p != nil {
		p.recv.Add(int64(len(b) + ipOverhead))
		p.dec.handle(h, shard)
	}
}

// peer returns the peer at from (or ap), adding it if there is room, and
// marks it seen now; nil when the table is full.
func (s *Server) peer(from net.Addr, ap netip.AddrPort) *peer {
	key := peerKey{ap: udpsock.Unmap(ap)}
	if !ap.IsValid() {
		key = peerKey{str: from.Network() + " " + from.String()}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	p := s.peers[key]
	if p == nil {
		if len(s.peers) >= s.cfg.MaxPeers {
			s.refuse()
			return nil
		}
		p = s.newPeer(from, ap)
		s.peers[key] = p
		s.seen.Add(1)
	}
	p.seen = time.Now()
	return p
}

// refuse counts a datagram from a new address that found the table full,
// and says so once in the log. s.mu is held.
func (s *Server) refuse() {
	s.refused.Add(1)
	if !s.full {
		s.full = true
		s.log.Warn("fec: peer table full: datagrams from new addresses are dropped and counted", "max_peers", s.cfg.MaxPeers)
	}
}

// newPeer makes the state for a new source address.
func (s *Server) newPeer(from net.Addr, ap netip.AddrPort) *peer {
	p := &peer{src: guard.AddrPort(from, ap)}
	send := func(b []byte) error { return udpsock.WriteTo(s.pc, b, from, ap) }
	write := func(b []byte) error {
		if !p.spend(b) {
			s.withheld.Add(1)
			return errWithheld
		}
		return send(b)
	}
	p.enc = newEncoder(&s.cfg, s.codes, s.flush, &s.st, write)
	p.dec = newDecoder(&s.cfg, s.codes, &s.st, func(req []byte) { s.answer(p, req) })
	return p
}

// errWithheld is a parity shard a peer has not earned (see spend).
var errWithheld = errors.New("fec: parity withheld from an address that sent too little")

// spend counts b as sent to p and reports whether it may go. Replies go
// whatever their size, as the handler made them, as raw's do; a parity
// shard goes only if it keeps what p was sent within amplification times
// what it sent. fec has no handshake to show that an address receives
// what is sent to it, so parity must not turn a forged source address
// into a flood.
func (p *peer) spend(b []byte) bool {
	n := int64(len(b) + ipOverhead)
	if b[0] == kindParity && p.sent.Load()+n > amplification*p.recv.Load() {
		return false
	}
	p.sent.Add(n)
	return true
}

// answer runs the handler on one delivered request and sends the reply to
// its peer, if its data shard keeps within 3 times the request's. It runs
// on the read loop.
func (s *Server) answer(p *peer, req []byte) {
	reply, ok := s.counters.Handle(s.h, s.reply[:0], req, MaxMessage)
	s.reply = reply
	if !ok || !s.capped.Allow(HeaderBytes+len(req), HeaderBytes+len(reply), p.src) {
		return
	}
	s.counters.Replied()
	if err := p.enc.send(reply); err != nil && !errors.Is(err, net.ErrClosed) {
		s.counters.Error()
	}
}

// maintain is the server's second goroutine: it flushes every peer's
// groups as they come due and, every Idle/2, forgets the peers silent for
// Idle, so a peer goes between Idle and 1.5×Idle after its last datagram.
func (s *Server) maintain() {
	defer s.wg.Done()
	tick := time.NewTicker(max(s.cfg.Idle/2, time.Millisecond))
	defer tick.Stop()
	s.flush.run(s.closing, tick.C, s.reap)
}

// reap forgets the peers silent since Idle before now.
func (s *Server) reap(now time.Time) {
	s.mu.Lock()
	for key, p := range s.peers {
		if now.Sub(p.seen) >= s.cfg.Idle {
			delete(s.peers, key)
			s.gone = append(s.gone, p)
		}
	}
	s.mu.Unlock()
	for i, p := range s.gone {
		p.close()
		s.reaped.Add(1)
		s.gone[i] = nil
	}
	s.gone = s.gone[:0]
}

func (p *peer) close() {
	p.enc.close()
	p.dec.close()
}
