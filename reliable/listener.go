package reliable

import (
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	kcp "github.com/xtaci/kcp-go/v5"
)

// listener is udplab's server side of KCP on one socket, in place of
// kcp-go's Listener: one read loop (batched) passes each datagram through
// the gate and on to its session, opening one for a validated source's new
// conversation as kcp-go's listener would; one timer ticks the sessions
// that have work. A Server and AcceptOne each own one, and say through its
// hooks what a new session, a readable one and an ended one mean to them.
type listener struct {
	pc     net.PacketConn
	io     *packetIO
	gate   *gate
	crypt  *codec // the gate's: the read loop decrypts, anyone seals
	cfg    *Config
	fec    *fecCodec // nil without FEC
	hdr    int       // cipher and FEC headers before KCP's: kcp-go's headerSize
	kcpMTU int       // KCP's own MTU, as kcp-go's SetMtu leaves it

	interval time.Duration // the profile's flush interval
	// ackNoDelay sends acknowledgements as input arrives, not at the next
	// flush: the profile's AckNoDelay, as tune sets it on kcp-go's sessions.
	ackNoDelay bool
	idle       time.Duration // a server reaps sessions silent this long; 0: never
	timer      *timer

	// Hooks, set before start. accept admits a new session (false:
	// refused, and it is closed); serve, if set, reads a session's
	// requests, started when a message waits and no serve runs (the
	// session is then read without blocking); ended is told of every
	// admitted session that closed; idled of one past its idle deadline.
	accept func(*session) bool
	serve  func(*session)
	ended  func(*session)
	idled  func(*session)
	// failed is told why the read loop stopped, unless close stopped it.
	failed func(error)

	draining atomic.Bool // a new or woken session is served at once, to settle
	// fecRefused counts sessions whose peer's FEC shard counts differ.
	fecRefused atomic.Uint64

	mu      sync.Mutex
	byAddr  map[netip.AddrPort]*session
	closing bool
	wg      sync.WaitGroup // the read loop and every serve
	reading chan struct{}  // closed when the read loop returns
}

func newListener(pc net.PacketConn, cfg *Config, g *gate, idle time.Duration) (*listener, error) {
	l := &listener{
		pc: pc, io: newPacketIO(pc), gate: g, crypt: g.codec, cfg: cfg, idle: idle,
		interval:   time.Duration(Profiles[cfg.Profile].Interval) * time.Millisecond,
		ackNoDelay: Profiles[cfg.Profile].AckNoDelay,
		byAddr:     make(map[netip.AddrPort]*session), reading: make(chan struct{}),
	}
	l.hdr = l.crypt.headerRoom()
	if !cfg.NoFEC {
		f, err := newFECCodec(cfg.DataShards, cfg.ParityShards)
		if err != nil {
			return nil, err
		}
		l.fec, l.hdr = f, l.hdr+fecOverhead
	}
	// kcp-go's UDPSession.SetMtu: the datagram less every header, and an
	// AEAD's tag.
	l.kcpMTU = min(cfg.MTU, maxSegment) - l.hdr
	if a := l.crypt.aead; a != nil {
		l.kcpMTU -= a.Overhead()
	}
	return l, nil
}

// start begins reading and ticking; the hooks must be set.
func (l *listener) start() {
	l.timer = newTimer()
	l.wg.Add(1)
	go l.readLoop()
}

func (l *listener) readLoop() {
	defer l.wg.Done()
	defer close(l.reading)
	for {
		ms, err := l.io.read()
		if err != nil {
			l.mu.Lock()
			closing := l.closing
			l.mu.Unlock()
			if !closing && l.failed != nil {
				l.failed(err)
			}
			return
		}
		now := time.Now()
		for i := range ms {
			l.packet(ms[i].Buf, sourceAddr(&ms[i]), now)
		}
	}
}

// packet takes one datagram through the gate, and what the gate lets
// through (and any packets it held for a source it just validated) on to
// their sessions.
func (l *listener) packet(pkt []byte, addr net.Addr, now time.Time) {
	l.crypt.forget() // the buffer held another datagram before
	if l.gate.admit(pkt, addr) {
		l.deliver(pkt, addr, now)
	}
	if h := l.gate.pending; h != nil {
		l.gate.pending = nil
		for _, p := range h.pkts {
			l.crypt.forget()
			l.deliver(p, h.addr, now)
		}
	}
}

// deliver hands a packet of a validated source to its session. Like
// kcp-go's Listener.packetInput, it opens a session for a conversation
// from an address without one, and for a conversation other than the
// session's if its first sequence number is 0 (a reset: the gate lets
// through only those it has checked).
func (l *listener) deliver(pkt []byte, addr net.Addr, now time.Time) {
	plain, why := l.crypt.decrypt(pkt)
	switch {
	case why == authFailed:
		atomic.AddUint64(&kcp.DefaultSnmp.InCsumErrors, 1)
		return
	case why != accepted || len(plain) < min(kcp.IKCP_OVERHEAD, fecOverhead+4):
		return
	}
	conv, sn, hasConv := demux(plain)
	key := sourceKey(addr)
	l.mu.Lock()
	s := l.byAddr[key]
	l.mu.Unlock()
	if s == nil || (hasConv && conv != s.conv) {
		if !hasConv || (s != nil && sn != 0) {
			return
		}
		old := s
		if s = l.open(conv, addr, now); old != nil {
			// Closed after the new one is admitted, so that the
			// source stays validated (see gate.unbind).
			old.Close()
		}
		if s == nil {
			return
		}
	}
	if s.input(plain, now) || l.draining.Load() {
		l.startServing(s)
	}
}

// open makes a session for conv at addr, if accept admits it.
func (l *listener) open(conv uint32, addr net.Addr, now time.Time) *session {
	s := newSession(l, conv, addr, now)
	if !l.accept(s) {
		return nil
	}
	l.mu.Lock()
	l.byAddr[s.key] = s
	s.admitted = true
	l.mu.Unlock()
	return s
}

// forget takes s out of the table; an admitted session's end is told,
// also when a new conversation replaced it in the table (deliver): its
// place in the server's set, the gate and the drain is still its own.
func (l *listener) forget(s *session) {
	l.mu.Lock()
	if l.byAddr[s.key] == s {
		delete(l.byAddr, s.key)
	}
	admitted := s.admitted
	s.admitted = false
	l.mu.Unlock()
	if admitted && l.ended != nil {
		l.ended(s)
	}
}

// startServing starts l.serve on s unless it runs already.
func (l *listener) startServing(s *session) {
	if l.serve == nil {
		return
	}
	s.mu.Lock()
	start := !s.serving && !s.closed
	s.serving = start || s.serving
	s.mu.Unlock()
	if !start {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closing {
		return
	}
	l.wg.Add(1)
	go func() {
		defer l.wg.Done()
		l.serve(s)
	}()
}

// sessions returns every session open now.
func (l *listener) sessions() []*session {
	l.mu.Lock()
	defer l.mu.Unlock()
	all := make([]*session, 0, len(l.byAddr))
	for _, s := range l.byAddr {
		all = append(all, s)
	}
	return all
}

// drain serves every session now and any opened from here on, so that
// each answers what it holds and settles.
func (l *listener) drain() {
	l.draining.Store(true)
	for _, s := range l.sessions() {
		l.startServing(s)
	}
}

// close closes the socket and every session, and returns once the read
// loop, the timer and every serve have stopped. It returns the socket's
// Close error.
func (l *listener) close() error {
	l.mu.Lock()
	l.closing = true
	l.mu.Unlock()
	err := l.pc.Close()
	<-l.reading
	for _, s := range l.sessions() {
		s.Close()
	}
	l.timer.close()
	l.wg.Wait()
	return err
}
