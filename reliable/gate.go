package reliable

import (
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	kcp "github.com/xtaci/kcp-go/v5"

	"github.com/udplab/udplab/internal/guard"
)

// gate stands between the server's socket and its sessions (see listener),
// which, as kcp-go's listener does, would otherwise open a session
// (windows, buffers) for the first datagram from any address, spoofed or
// not, and then retransmit to it. The gate hands the sessions (KCP, "kcp-go"
// below: the rules are kcp-go's listener's) only the packets of validated
// sources: those that showed they receive what is sent to them.
//
// A new source's packets go on probation: held (bounded per source and in
// all) and, for a KCP data segment, answered with a probe: a segment
// kcp-go's client acknowledges but does not deliver (a push one below the
// sequence number the client expects next, so an old one to it), whose
// timestamp carries a keyed cookie. The client's acknowledgement echoes the
// cookie; that validates the source, and the gate hands kcp-go what it
// held. A plain kcp-go client needs no change: it pays one round trip more
// before its first reply. A probe is never longer than the packet that
// drew it, so an unvalidated source gets back at most the bytes it sent:
// under guard.Factor.
//
// For validated sources the gate refuses two things kcp-go would act on: a
// packet with another conversation id (kcp-go's reset), unless an
// authenticated cipher shows it holds the key; after resetIdle of silence
// the new conversation may replace the session once it has answered a
// probe of its own. And, with a key, a packet seen before (a replay).
//
// The listener's read loop calls admit for every datagram, from one
// goroutine, and hands on what it lets through and what it releases
// (pending); the gate writes its probes straight to the socket.
type gate struct {
	net.PacketConn
	sources *guard.Sources
	codec   *codec // decrypts for the read loop only; seals for anyone
	cookies cookies
	// authenticated: an AEAD cipher shows kcp-go which packets hold the
	// key; the others carry a CRC32 anyone can fix up after flipping bits.
	authenticated bool
	wnd           uint16 // the server's receive window, which a probe announces
	now           func() time.Time

	mu      sync.Mutex
	peers   map[netip.AddrPort]*peer // validated sources
	unbound []*peer                  // validated, no session yet; oldest first
	// sessions counts kcp-go's sessions open at each address, as the
	// server accepts and ends them: a peer with one is never expired, and
	// one is forgotten when its last session ends.
	sessions  map[netip.AddrPort]int
	probation *probation
	replays   *replays // nil without a key
	draining  bool
	only      netip.AddrPort // valid: every other source is dropped (AcceptOne's)

	pending *held // a validated source's held packets, for the read loop to deliver
	probe   []byte

	counts gateCounts
}

// peer is a validated source.
type peer struct {
	src       netip.AddrPort
	conv      uint32 // the conversation its session carries, when known
	lastSeen  time.Time
	validated time.Time
}

// gateCounts are what the gate refused or did.
type gateCounts struct {
	probes, validated, unvalidated, resets, replays, authFailures, drained atomic.Uint64
}

func newGate(pc net.PacketConn, block kcp.BlockCrypt, cfg *Config) *gate {
	g := &gate{
		PacketConn: pc,
		sources:    guard.NewSources(pc.LocalAddr(), cfg.AllowLowPorts),
		codec:      newCodec(block),
		cookies:    newCookies(),
		wnd:        uint16(min(cfg.ReceiveWindow, 1<<16-1)),
		now:        gateClock,
		peers:      make(map[netip.AddrPort]*peer),
		sessions:   make(map[netip.AddrPort]int),
		probation:  newProbation(),
	}
	g.authenticated = g.codec.aead != nil
	if block != nil {
		g.replays = newReplays()
	}
	return g
}

// gateClock is every gate's clock; a test may stop it (before it starts a
// server) so that what the gate decides by time does not depend on load.
var gateClock = time.Now

// admit reports whether pkt from addr goes on to kcp-go.
func (g *gate) admit(pkt []byte, addr net.Addr) bool {
	src := sourceKey(addr)
	if !g.sources.Allow(guard.AddrPort(addr, netip.AddrPort{})) {
		return false
	}
	now := g.now()
	g.mu.Lock()
	defer g.mu.Unlock()
	g.expireUnbound(now)
	if p := g.peers[src]; p != nil && (!g.only.IsValid() || src == g.only) {
		return g.established(p, addr, pkt, now)
	}
	if !g.only.IsValid() {
		g.onProbation(src, addr, pkt, now)
	}
	return false
}

// established reports whether a packet from validated source p goes on.
func (g *gate) established(p *peer, addr net.Addr, pkt []byte, now time.Time) bool {
	if g.replays != nil {
		if nonce := g.codec.nonce(pkt); nonce != nil && !g.replays.add(nonce) {
			g.counts.replays.Add(1)
			return false
		}
	}
	if now.Sub(p.validated) < probationLease && g.answersProbe(pkt, p, now) {
		// The client answered more than one probe. kcp-go must not see
		// the cookie: it would take it for a timestamp of its own and
		// make a round trip of it.
		return false
	}
	if !g.authenticated {
		switch g.conversation(p, pkt, now) {
		case ours:
			// Only a packet of the session's own conversation shows the
			// peer is there: garbage from its address, which anyone can
			// send, must not keep the session "live" against a restart.
			p.lastSeen = now
		case otherLive:
			g.counts.resets.Add(1)
			return false
		case otherIdle:
			// The source must show again that it receives, under its
			// new conversation, before kcp-go may replace the session.
			g.onProbation(p.src, addr, pkt, now)
			return false
		}
	}
	if g.draining && g.carriesData(pkt) {
		// kcp-go would acknowledge the request; draining, the server
		// takes no new one.
		g.counts.drained.Add(1)
		return false
	}
	return true
}

// Whose conversation a packet from a validated source is.
type whose int

const (
	ours      whose = iota // the session's
	unread                 // not one kcp-go reads a conversation from, or fails the cipher: kcp-go drops it or has no reset in it
	otherLive              // another, while the session is live: a spoofed reset
	otherIdle              // another, after resetIdle of silence: a restart, or a spoofer
)

// conversation says whose pkt is, reading its conversation id as kcp-go's
// listener does (see demux).
func (g *gate) conversation(p *peer, pkt []byte, now time.Time) whose {
	plain, why := g.codec.decrypt(pkt)
	if why != accepted {
		return unread
	}
	conv, _, ok := demux(plain)
	switch {
	case !ok:
		return unread
	case conv == p.conv:
		return ours
	case now.Sub(p.lastSeen) < resetIdle:
		return otherLive
	}
	return otherIdle
}

// carriesData reports whether pkt holds a data segment, or an FEC shard
// that may rebuild one (a request kcp-go would acknowledge). The client's
// acknowledgements travel in data shards, which pass.
func (g *gate) carriesData(pkt []byte) bool {
	segs, why := g.codec.open(pkt)
	if why == shard {
		return true
	}
	for why == accepted && len(segs) > 0 {
		seg, rest, ok := nextSegment(segs)
		if !ok {
			return false
		}
		if seg.cmd == kcp.IKCP_CMD_PUSH {
			return true
		}
		segs = rest
	}
	return false
}

// answersProbe reports whether pkt acknowledges a probe sent to p for its
// conversation (one for another conversation is a restart's, see
// conversation).
func (g *gate) answersProbe(pkt []byte, p *peer, now time.Time) bool {
	segs, why := g.codec.open(pkt)
	if why != accepted {
		return false
	}
	for len(segs) > 0 {
		seg, rest, ok := nextSegment(segs)
		if !ok {
			return false
		}
		if seg.cmd == kcp.IKCP_CMD_ACK && seg.conv == p.conv && g.cookies.valid(seg.ts, p.src, seg.conv, now) {
			return true
		}
		segs = rest
	}
	return false
}

// onProbation deals with a packet from a source not yet validated: an
// acknowledgement of a probe validates the source; a data segment is held
// and probed; anything else is dropped.
func (g *gate) onProbation(src netip.AddrPort, addr net.Addr, pkt []byte, now time.Time) {
	segs, why := g.codec.open(pkt)
	switch {
	case why == authFailed:
		g.counts.authFailures.Add(1)
		return
	case why != accepted || g.draining:
		g.counts.unvalidated.Add(1)
		return
	}
	if nonce := g.codec.nonce(pkt); g.replays != nil && nonce != nil && !g.replays.add(nonce) {
		g.counts.replays.Add(1)
		return
	}
	var push *segment
	for len(segs) > 0 {
		seg, rest, ok := nextSegment(segs)
		if !ok {
			break
		}
		switch {
		case seg.cmd == kcp.IKCP_CMD_ACK && g.cookies.valid(seg.ts, src, seg.conv, now):
			g.validate(src, seg.conv, now)
			return
		case seg.cmd == kcp.IKCP_CMD_PUSH && push == nil:
			push = &seg
		}
		segs = rest
	}
	if push == nil {
		g.counts.unvalidated.Add(1)
		return
	}
	g.probation.hold(src, addr, pkt, now)
	g.sendProbe(src, addr, *push, len(pkt), now)
}

// validate lets src through from now on and queues the packets it held.
func (g *gate) validate(src netip.AddrPort, conv uint32, now time.Time) {
	p := &peer{src: src, conv: conv, lastSeen: now, validated: now}
	g.peers[src] = p
	g.unbound = append(g.unbound, p)
	g.counts.validated.Add(1)
	g.pending = g.probation.take(src)
}

// expireUnbound forgets validated sources for which kcp-go opened no
// session within probationLease (their packets were lost, or kcp-go's
// accept queue was full), and the oldest beyond probationMax: a source
// that answers probes and never opens a session holds nothing for long.
func (g *gate) expireUnbound(now time.Time) {
	for len(g.unbound) > 0 {
		p := g.unbound[0]
		current := g.peers[p.src] == p && g.sessions[p.src] == 0
		if current && now.Sub(p.validated) < probationLease && len(g.unbound) <= probationMax {
			return
		}
		g.unbound = g.unbound[1:]
		if current {
			delete(g.peers, p.src)
		}
	}
	g.unbound = nil // give back a flood's array
}

// bind records that a session opened at addr.
func (g *gate) bind(addr net.Addr) {
	g.mu.Lock()
	g.sessions[sourceKey(addr)]++
	g.mu.Unlock()
}

// unbind records that a session at addr ended; with its last, the source
// is forgotten: a later packet from it is probed again.
func (g *gate) unbind(addr net.Addr) {
	g.mu.Lock()
	defer g.mu.Unlock()
	src := sourceKey(addr)
	if g.sessions[src]--; g.sessions[src] > 0 {
		return
	}
	delete(g.sessions, src)
	delete(g.peers, src)
	if len(g.peers) == 0 {
		g.peers = make(map[netip.AddrPort]*peer) // give back a flood's buckets
		g.sessions = make(map[netip.AddrPort]int)
	}
}

// keepOnly binds addr and drops every other source from now on.
func (g *gate) keepOnly(addr net.Addr) {
	g.mu.Lock()
	defer g.mu.Unlock()
	src := sourceKey(addr)
	g.sessions[src]++
	g.only = src
	for other := range g.peers {
		if other != src {
			delete(g.peers, other)
		}
	}
}

// sendProbe answers push, the first data segment of a packet of size
// bytes, with a probe: a push of no data one below the sequence number the
// client expects next (the una its segment carries), which the client
// acknowledges as a segment it already has.
func (g *gate) sendProbe(src netip.AddrPort, addr net.Addr, push segment, size int, now time.Time) {
	g.probe = appendSegment(g.probe[:0], segment{
		conv: push.conv, cmd: kcp.IKCP_CMD_PUSH, wnd: g.wnd,
		ts: g.cookies.make(src, push.conv, now), sn: push.una - 1,
	})
	pkt := g.codec.seal(g.probe)
	if len(pkt) > size { // cannot happen: a probe is the smallest packet there is
		return
	}
	if _, err := g.PacketConn.WriteTo(pkt, addr); err == nil {
		g.counts.probes.Add(1)
	}
}

// drain stops validating new sources, and letting data segments through.
func (g *gate) drain() {
	g.mu.Lock()
	g.draining = true
	g.mu.Unlock()
}

// onProbationNow is how many sources are on probation.
func (g *gate) onProbationNow() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.probation.len()
}
