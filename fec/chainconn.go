package fec

import (
	"net"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/udplab/udplab/internal/guard"
)

// ChainConfig configures a ChainConn. The zero value works: it protects
// every datagram.
type ChainConfig struct {
	// Protect returns where the part of b worth protecting starts: 0
	// protects all of b, len(b) none (b goes plain, with a 2-byte header).
	// Nil protects everything. It must not keep b.
	Protect func(b []byte) int
	// Hold is how long parity keeps going to a peer after it last
	// reported a loss. Zero means DefaultChainHold.
	Hold time.Duration
	// Probe is how long parity goes to a new peer before any report: the
	// first losses are repaired too, and a clean link pays for this long.
	// Zero means DefaultChainProbe; it is at most Hold.
	Probe time.Duration
	// Linger is the longest a datagram with nothing to protect waits for
	// the next datagram to the same address to ride in, saving a
	// datagram's headers; it waits 1.5 times the usual gap between that
	// address's coded datagrams, within Linger, and not at all while none
	// flow. The protocol above must read a datagram as the concatenation
	// of what it wrote (KCP does). Zero sends each datagram at once.
	Linger time.Duration
	// Urgent reports whether a datagram with nothing to protect must
	// leave at once rather than linger (an acknowledgement that shows a
	// hole, which the sender retransmits on). Nil lets all linger. It
	// must not keep b.
	Urgent func(b []byte) bool
	// Parities is how many parities a datagram carries while its peer
	// reports losses: 1, P(n) = D(n-1) ^ D(n-3), or 2, with Q(n) = D(n-2)
	// ^ D(n-3) too (see chain.go). Zero means by the losses reported: 2
	// while they come to SecondParityLoss of the datagrams sent or more,
	// or before there is a count, and 1 below it.
	Parities int
	// Idle is how long a peer's state is kept with nothing heard from or
	// sent to it. Zero means DefaultIdle.
	Idle time.Duration
	// MaxPeers bounds the peers coded to; datagrams to or from others go
	// plain or are delivered unrepaired. Zero means DefaultMaxPeers.
	MaxPeers int
	// AllowLowPorts lets a datagram from a port below 1024 make a peer,
	// which by default only a datagram sent there does.
	AllowLowPorts bool
}

// DefaultChainHold keeps parity on for a while after the last loss, so a
// lossy link's quiet stretches (at 5% loss, 60 datagrams in a row arrive
// about 5% of the time) do not turn it off just before the next loss.
const DefaultChainHold = 30 * time.Second

// DefaultChainProbe is long enough for a few round trips' reports on the
// links udplab simulates.
const DefaultChainProbe = time.Second

// SecondParityLoss is the share of its datagrams a peer reports lost at
// which a ChainConn adds the second parity (ChainConfig.Parities zero).
// Measured on compare's links, 8-byte greetings every 20 ms, seeds 1 to 5:
// at 5% loss each way one parity kept kcp-rt's average, p99 and maximum
// where two did, for 1.33 times kcp's UDP payload bytes against 1.58; at
// 10% one parity left p99 at 100 to 120 ms where two gave 81.
const SecondParityLoss = 0.07

// lossMemory is how much of its loss count a peer keeps at each new
// report: about the last thirty reports weigh, enough that a 5% link
// and a 10% one are told apart.
const lossMemory = 0.97

// Chain flush bounds: an idle peer's last datagram gets its parity after
// twice the peer's usual gap between datagrams, within these.
const (
	minChainFlush = 2 * time.Millisecond
	maxChainFlush = 100 * time.Millisecond
)

// ChainStats is what a ChainConn has done so far.
type ChainStats struct {
	Coded, Plain uint64 // datagrams sent each way
	// Parity counts coded datagrams sent with parity, Flushes those sent
	// for parity alone after a peer's datagrams paused.
	Parity, Flushes uint64
	// Recovered counts datagrams rebuilt from parity and delivered.
	Recovered uint64
	// Malformed counts datagrams dropped unread; Duplicates, coded
	// datagrams dropped because the window already held them.
	Malformed, Duplicates uint64
	// Withheld counts datagrams sent without the parity they would have
	// carried, or flushes not sent, because the peer would have been sent
	// more than 3 times the wire bytes it sent; WithheldBytes is that
	// parity's bytes.
	Withheld, WithheldBytes uint64
}

// ChainConn is a net.PacketConn that codes the datagrams it carries with
// the chain code (see chain.go): each datagram worth protecting carries,
// while its address reports losses, the XOR of the first and third
// protected datagrams before it to that address, and of the second and
// third (see ChainConfig.Parities), so a lost datagram is rebuilt from the
// next ones without a datagram of its own. ReadFrom returns what arrived and
// what was rebuilt, each as the datagram the other side wrote (a rebuilt
// one without its unprotected part). Both ends of a conversation must be
// ChainConns.
//
// WriteTo may be called from many goroutines; ReadFrom from one at a time.
// Besides them one goroutine sends the parity of paused peers; Close stops
// it.
type ChainConn struct {
	pc    net.PacketConn
	cfg   ChainConfig
	local netip.AddrPort

	readMu sync.Mutex
	buf    []byte
	inbox  []queued

	mu      sync.Mutex
	peers   map[peerKey]*chainPeer
	flushes []flushAt // sorted by at
	kick    chan struct{}

	st        chainCounters
	closeOnce sync.Once
	closeErr  error
	stop      chan struct{}
	done      chan struct{}
}

type queued struct {
	b    []byte
	addr net.Addr
}

// flushAt is a peer's pending flush: its parity, if it sends nothing
// coded past seq, or, with held, its held datagrams, if still held at
// generation seq.
type flushAt struct {
	p    *chainPeer
	seq  uint32
	at   time.Time
	held bool
}

type chainCounters struct {
	coded, plain, parity, flushes, recovered, malformed, duplicates, withheld, withheldBytes atomic.Uint64
}

// chainPeer is one address's coding state.
type chainPeer struct {
	addr net.Addr
	ap   netip.AddrPort

	mu        sync.Mutex
	tx        chainSender
	rx        chainReceiver
	out, comb []byte
	held      []byte    // datagrams waiting to ride in the next (see Linger)
	heldGen   uint32    // counts the times held was emptied
	report    byte      // the last loss count it reported
	lossAt    time.Time // when its report last changed
	// lost and coded are the losses it reported and the coded datagrams
	// sent it, decayed by lossMemory at each report; codedSince counts
	// those sent since the last.
	lost, coded float64
	codedSince  int
	lastCoded   time.Time
	gap         time.Duration // smoothed time between its coded datagrams
	gapDev      time.Duration // and its mean deviation
	lastActive  time.Time
	recv, sent  int64 // wire bytes, IP and UDP headers included
	capped      bool  // see peer
}

// NewChainConn returns a ChainConn over pc, which it takes over: Close
// closes pc. A nil cfg is the zero ChainConfig.
func NewChainConn(pc net.PacketConn, cfg *ChainConfig) *ChainConn {
	var c ChainConfig
	if cfg != nil {
		c = *cfg
	}
	if c.Hold <= 0 {
		c.Hold = DefaultChainHold
	}
	if c.Parities < 0 || c.Parities > 2 {
		c.Parities = 0
	}
	if c.Probe <= 0 {
		c.Probe = DefaultChainProbe
	}
	c.Probe = min(c.Probe, c.Hold)
	if c.Idle <= 0 {
		c.Idle = DefaultIdle
	}
	if c.MaxPeers <= 0 {
		c.MaxPeers = DefaultMaxPeers
	}
	cc := &ChainConn{
		pc: pc, cfg: c, local: guard.AddrPort(pc.LocalAddr(), netip.AddrPort{}),
		buf: make([]byte, readBufferSize), peers: make(map[peerKey]*chainPeer),
		kick: make(chan struct{}, 1), stop: make(chan struct{}), done: make(chan struct{}),
	}
	go cc.run()
	return cc
}

// Stats returns what c has done so far.
func (c *ChainConn) Stats() ChainStats {
	s := &c.st
	return ChainStats{Coded: s.coded.Load(), Plain: s.plain.Load(), Parity: s.parity.Load(),
		Flushes: s.flushes.Load(), Recovered: s.recovered.Load(), Malformed: s.malformed.Load(),
		Duplicates: s.duplicates.Load(), Withheld: s.withheld.Load(), WithheldBytes: s.withheldBytes.Load()}
}

func keyOf(addr net.Addr) (peerKey, netip.AddrPort) {
	ap := guard.AddrPort(addr, netip.AddrPort{})
	if u, ok := addr.(*net.UDPAddr); ok && u != nil {
		return peerKey{ap: ap}, ap
	}
	return peerKey{str: addr.Network() + " " + addr.String()}, ap
}

// peer returns addr's state, making it when make is set and there is
// room; nil otherwise. A peer made by a read (heard from before it was
// written to: a server's client) is capped: it is sent no parity beyond 3
// times what it sent.
func (c *ChainConn) peer(addr net.Addr, make, read bool, now time.Time) *chainPeer {
	key, ap := keyOf(addr)
	c.mu.Lock()
	defer c.mu.Unlock()
	p := c.peers[key]
	if p == nil && make && len(c.peers) < c.cfg.MaxPeers {
		p = &chainPeer{addr: addr, ap: ap, lastActive: now, capped: read}
		// Parity from the start, until Probe shows no loss: the first
		// losses of a lossy link are repaired too.
		p.lossAt = now.Add(c.cfg.Probe - c.cfg.Hold)
		c.peers[key] = p
	}
	return p
}

// mayMake reports whether a datagram from ap may make a peer: not from
// this socket, nor from a low port unless allowed.
func (c *ChainConn) mayMake(ap netip.AddrPort) bool {
	if !ap.IsValid() {
		return true
	}
	return ap != c.local && (c.cfg.AllowLowPorts || ap.Port() >= guard.LowPorts)
}

// ReadFrom returns the next datagram that arrived or was rebuilt.
func (c *ChainConn) ReadFrom(b []byte) (int, net.Addr, error) {
	c.readMu.Lock()
	defer c.readMu.Unlock()
	for {
		if len(c.inbox) > 0 {
			q := c.inbox[0]
			c.inbox = c.inbox[1:]
			return copy(b, q.b), q.addr, nil
		}
		n, addr, err := c.pc.ReadFrom(c.buf)
		if err != nil {
			return 0, addr, err
		}
		payload, ok := c.decode(c.buf[:n], addr)
		switch {
		case ok && len(c.inbox) > 0:
			// Rebuilt datagrams come before the one that rebuilt them,
			// as they were sent.
			c.inbox = append(c.inbox, queued{payload, addr})
		case ok:
			return copy(b, payload), addr, nil
		}
	}
}

// decode takes one datagram from addr and returns its payload; ok is
// false when there is nothing to deliver from it.
func (c *ChainConn) decode(b []byte, addr net.Addr) (payload []byte, ok bool) {
	h, payload, pp, pq, ok := parseChain(b)
	if !ok {
		c.st.malformed.Add(1)
		return nil, false
	}
	now := time.Now()
	_, ap := keyOf(addr)
	p := c.peer(addr, h.kind != chainPlain && c.mayMake(ap), true, now)
	if p == nil {
		return payload, true // no room, or plain: delivered, unrepaired
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.lastActive = now
	p.recv += int64(guard.WireBytes(len(b), ap))
	if h.report != p.report {
		p.lost = p.lost*lossMemory + float64(h.report-p.report) // the count wraps at 256
		p.coded = p.coded*lossMemory + float64(p.codedSince)
		p.lossAt, p.report, p.codedSince = now, h.report, 0
	}
	if h.kind == chainPlain {
		return payload, true
	}
	fresh := p.rx.receive(h.seq, payload[h.split:], pp, pq, func(d []byte) {
		c.inbox = append(c.inbox, queued{slices.Clone(d), addr})
		c.st.recovered.Add(1)
	})
	if !fresh {
		c.st.duplicates.Add(1)
		return nil, false
	}
	return payload, len(payload) > 0 // a flush's parity carries nothing more
}

// WriteTo sends b to addr: coded, with parity while addr reports losses,
// or plain when nothing in it is worth protecting.
func (c *ChainConn) WriteTo(b []byte, addr net.Addr) (int, error) {
	split := 0
	if c.cfg.Protect != nil {
		split = min(max(c.cfg.Protect(b), 0), len(b))
	}
	now := time.Now()
	p := c.peer(addr, true, false, now)
	if p == nil {
		if _, err := c.pc.WriteTo(appendPlain(nil, 0, b), addr); err != nil {
			return 0, err
		}
		c.st.plain.Add(1)
		return len(b), nil
	}
	urgent := split == len(b) && c.cfg.Urgent != nil && c.cfg.Urgent(b)
	p.mu.Lock()
	if split == len(b) && !urgent {
		if wait := c.linger(p, now); wait > 0 && len(p.held)+len(b) <= maxHeld {
			first := len(p.held) == 0
			p.held = append(p.held, b...)
			gen := p.heldGen
			p.mu.Unlock()
			if first {
				c.enqueue(flushAt{p: p, seq: gen, at: now.Add(wait), held: true})
			}
			return len(b), nil
		}
	}
	if len(p.held) > 0 {
		p.comb = append(append(p.comb[:0], p.held...), b...)
		b, split = p.comb, split+len(p.held)
		p.release()
	}
	var flush bool
	p.out, flush = c.encode(p, b, split, now)
	_, err := c.pc.WriteTo(p.out, addr)
	p.mu.Unlock()
	if err != nil {
		return 0, err
	}
	if flush {
		c.schedule(p, now)
	}
	return len(b), nil
}

// maxHeld bounds what waits to ride in a peer's next datagram.
const maxHeld = 1200

// linger is how long a datagram with nothing to protect may wait for p's
// next one: 0 unless coded datagrams flow to p. p.mu is held.
func (c *ChainConn) linger(p *chainPeer, now time.Time) time.Duration {
	if c.cfg.Linger <= 0 || p.gap <= 0 || now.Sub(p.lastCoded) > 2*p.gap {
		return 0
	}
	return min(3*p.gap/2, c.cfg.Linger)
}

// release empties p's held bytes, so a pending linger finds nothing.
// p.mu is held.
func (p *chainPeer) release() {
	p.held = p.held[:0]
	p.heldGen++
}

// encode builds the datagram for b into p.out and reports whether p's
// parity should be flushed if p pauses. p.mu is held.
func (c *ChainConn) encode(p *chainPeer, b []byte, split int, now time.Time) ([]byte, bool) {
	p.lastActive = now
	if split == len(b) || len(b)-split > maxProtected || len(b) > 1<<16-1 {
		c.st.plain.Add(1)
		out := appendPlain(p.out[:0], p.rx.missing, b)
		p.sent += int64(guard.WireBytes(len(out), p.ap))
		return out, false
	}
	switch gap := now.Sub(p.lastCoded); {
	case p.lastCoded.IsZero():
	case p.gap == 0:
		p.gap = gap
	default:
		p.gapDev += (max(gap-p.gap, p.gap-gap) - p.gapDev) / 4
		p.gap += (gap - p.gap) / 8
	}
	p.lastCoded = now
	level := c.level(p, now)
	if extra := p.tx.parityBytes(level); level > 0 && !c.within(p, chainCodedBytes+len(b)+extra) {
		c.withhold(extra) // not earned yet
		level = 0
	}
	if chainCodedBytes+len(b)+p.tx.parityBytes(level) > maxDatagram {
		level = 0 // a large datagram goes without: KCP resends it
	}
	if level > 0 && p.tx.parityBytes(level) > 0 {
		c.st.parity.Add(1)
	}
	out := p.tx.next(p.out[:0], p.rx.missing, b, split, level)
	p.codedSince++
	c.st.coded.Add(1)
	p.sent += int64(guard.WireBytes(len(out), p.ap))
	return out, level > 0
}

// maxDatagram is the largest datagram parity may make: an Ethernet
// frame's UDP payload over IPv4.
const maxDatagram = 1472

// level returns how many parities p's next datagram carries: none on a
// clean link, Parities (or, with none set, as many as p's losses call
// for) while p reports losses. p.mu is held.
func (c *ChainConn) level(p *chainPeer, now time.Time) int {
	switch {
	case p.lossAt.IsZero() || now.Sub(p.lossAt) >= c.cfg.Hold:
		return 0
	case c.cfg.Parities != 0:
		return c.cfg.Parities
	case p.coded == 0 || p.lost >= SecondParityLoss*p.coded:
		return 2
	}
	return 1
}

// withhold counts n bytes of parity left unsent for the 3x rule.
func (c *ChainConn) withhold(n int) {
	c.st.withheld.Add(1)
	c.st.withheldBytes.Add(uint64(n))
}

// within reports whether sending n more bytes keeps p within 3 times what
// it sent. p.mu is held.
func (c *ChainConn) within(p *chainPeer, n int) bool {
	return !p.capped || p.sent+int64(guard.WireBytes(n, p.ap)) <= guard.Factor*p.recv
}

// schedule arranges for p's parity to go out alone if p sends nothing
// more for twice its usual gap.
func (c *ChainConn) schedule(p *chainPeer, now time.Time) {
	p.mu.Lock()
	wait := maxChainFlush // a first datagram: no gap known
	if p.gap > 0 {
		wait = min(max(2*p.gap+2*p.gapDev, minChainFlush), maxChainFlush)
	}
	seq := p.tx.seq
	p.mu.Unlock()
	c.enqueue(flushAt{p: p, seq: seq, at: now.Add(wait)})
}

// enqueue adds f to the flush queue, waking run if f comes first.
func (c *ChainConn) enqueue(f flushAt) {
	c.mu.Lock()
	i, _ := slices.BinarySearchFunc(c.flushes, f.at, func(e flushAt, t time.Time) int { return e.at.Compare(t) })
	c.flushes = slices.Insert(c.flushes, i, f)
	first := i == 0
	c.mu.Unlock()
	if first {
		select {
		case c.kick <- struct{}{}:
		default:
		}
	}
}

// run sends due flushes and forgets idle peers until Close.
func (c *ChainConn) run() {
	defer close(c.done)
	reap := time.NewTicker(c.cfg.Idle / 2)
	defer reap.Stop()
	timerLoop(c.stop, c.kick, reap.C, c.fire, c.reap)
}

// fire sends every flush due at now and returns the next deadline.
func (c *ChainConn) fire(now time.Time) (time.Time, bool) {
	c.mu.Lock()
	n := 0
	for n < len(c.flushes) && !c.flushes[n].at.After(now) {
		n++
	}
	due := slices.Clone(c.flushes[:n])
	c.flushes = slices.Delete(c.flushes, 0, n)
	var next time.Time
	if len(c.flushes) > 0 {
		next = c.flushes[0].at
	}
	c.mu.Unlock()
	for _, f := range due {
		if f.held {
			c.sendHeld(f.p, f.seq)
		} else {
			c.flushPeer(f.p, f.seq, now)
		}
	}
	return next, !next.IsZero()
}

// flushPeer sends p an empty coded datagram, whose parity protects its
// last two, if p sent nothing coded since seq.
func (c *ChainConn) flushPeer(p *chainPeer, seq uint32, now time.Time) {
	p.mu.Lock()
	defer p.mu.Unlock()
	level := c.level(p, now)
	if p.tx.seq != seq || level == 0 || p.tx.parityBytes(level) == 0 {
		return
	}
	if !c.within(p, chainCodedBytes+p.tx.parityBytes(level)) {
		c.withhold(chainCodedBytes + p.tx.parityBytes(level))
		return
	}
	out := p.tx.next(p.out[:0], p.rx.missing, nil, 0, level)
	p.codedSince++
	p.out = out
	if _, err := c.pc.WriteTo(out, p.addr); err == nil {
		p.sent += int64(guard.WireBytes(len(out), p.ap))
		c.st.flushes.Add(1)
		c.st.coded.Add(1)
	}
}

// sendHeld sends p's held datagrams, plain, if they are still the ones
// held at generation gen.
func (c *ChainConn) sendHeld(p *chainPeer, gen uint32) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.heldGen != gen || len(p.held) == 0 {
		return
	}
	p.out = appendPlain(p.out[:0], p.rx.missing, p.held)
	p.release()
	if _, err := c.pc.WriteTo(p.out, p.addr); err == nil {
		p.sent += int64(guard.WireBytes(len(p.out), p.ap))
		c.st.plain.Add(1)
	}
}

// reap forgets peers idle for Idle.
func (c *ChainConn) reap(now time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for k, p := range c.peers {
		p.mu.Lock()
		idle := now.Sub(p.lastActive) >= c.cfg.Idle
		p.mu.Unlock()
		if idle {
			delete(c.peers, k)
		}
	}
}

// Close closes the socket, waking a blocked ReadFrom, and returns once the
// flushing goroutine has stopped.
func (c *ChainConn) Close() error {
	c.closeOnce.Do(func() {
		c.closeErr = c.pc.Close()
		close(c.stop)
		<-c.done
	})
	return c.closeErr
}

// LocalAddr returns the socket's address.
func (c *ChainConn) LocalAddr() net.Addr { return c.pc.LocalAddr() }

// SetDeadline sets the socket's deadlines.
func (c *ChainConn) SetDeadline(t time.Time) error { return c.pc.SetDeadline(t) }

// SetReadDeadline sets the socket's read deadline; a rebuilt datagram
// waiting is returned whatever it says.
func (c *ChainConn) SetReadDeadline(t time.Time) error { return c.pc.SetReadDeadline(t) }

// SetWriteDeadline sets the socket's write deadline.
func (c *ChainConn) SetWriteDeadline(t time.Time) error { return c.pc.SetWriteDeadline(t) }

// SyscallConn returns the socket's, so its kernel drops can be counted;
// an error when the socket has none.
func (c *ChainConn) SyscallConn() (syscall.RawConn, error) {
	if sc, ok := c.pc.(syscall.Conn); ok {
		return sc.SyscallConn()
	}
	return nil, syscall.EINVAL
}
