package reliable

import (
	"crypto/aes"
	gocipher "crypto/cipher"
	"crypto/rand"
	"encoding/binary"
	"hash/fnv"
	"net"
	"net/netip"
	"time"

	"github.com/udplab/udplab/internal/udpsock"
)

// Admission's bounds, each with the reason for its value.
const (
	// probationMax bounds the sources held on probation, and
	// probationBytes the packets they sent meanwhile, kept to hand to
	// kcp-go once validated: a flood that spoofs any number of addresses
	// holds at most 8 MB, and a real client needs its entry for one round
	// trip only. heldMax bounds one source's packets: a client that sends a
	// burst before its first reply (a message a millisecond, say) loses
	// none of it to the probe.
	probationMax   = 4096
	probationBytes = 8 << 20
	heldMax        = 64
	// probationLease is how long a source stays on probation: far longer
	// than a round trip to any real client, short enough that a flood's
	// entries leave quickly.
	probationLease = 3 * time.Second
	// resetIdle is how long a session must have been silent before a
	// packet from its address with another conversation id may try to
	// replace it, without a key to show the packet is the peer's own; even
	// then the new conversation must answer a probe. A new client that the
	// kernel gave a port just freed by another (which happens within
	// seconds among a few hundred clients) waits this long, so it is short;
	// a spoofer that cannot receive ends no session, live or idle.
	resetIdle = time.Second
	// replayMax bounds the replay cache: the nonces of the last 2^16
	// packets admitted, about 3 MB.
	replayMax = 1 << 16
	// cookieEpoch is how long a probe's cookie stays valid (one to two
	// epochs): a client that takes longer to answer is probed again.
	cookieEpoch = 30 * time.Second
)

// cookies makes the values a probe carries in its timestamp field, which
// the client's acknowledgement echoes: a keyed function of the source, the
// conversation and the epoch, so that only a source that received the
// probe can answer it, and the server keeps nothing per probe. It is two
// blocks of AES-CBC-MAC over fixed-length input, under a key drawn at
// start.
type cookies struct {
	b gocipher.Block
}

func newCookies() cookies {
	var key [16]byte
	rand.Read(key[:])
	b, _ := aes.NewCipher(key[:]) // a 16-byte key is always valid
	return cookies{b}
}

// make returns the cookie for src and conv in the epoch of t.
func (c cookies) make(src netip.AddrPort, conv uint32, t time.Time) uint32 {
	var x [16]byte
	a := src.Addr().As16()
	c.b.Encrypt(x[:], a[:])
	var y [16]byte
	binary.LittleEndian.PutUint16(y[:], src.Port())
	binary.LittleEndian.PutUint32(y[2:], conv)
	binary.LittleEndian.PutUint64(y[6:], uint64(t.UnixNano()/int64(cookieEpoch)))
	for i := range x {
		x[i] ^= y[i]
	}
	c.b.Encrypt(x[:], x[:])
	return binary.LittleEndian.Uint32(x[:])
}

// valid reports whether v is src's cookie for conv in t's epoch or the
// one before.
func (c cookies) valid(v uint32, src netip.AddrPort, conv uint32, t time.Time) bool {
	return v == c.make(src, conv, t) || v == c.make(src, conv, t.Add(-cookieEpoch))
}

// sourceKey names a packet's source in the admission tables: its IP
// address and port, or for any other kind of address (an in-memory conn's)
// a hash of its string in the IPv6 unique-local range, where no real
// source is.
func sourceKey(addr net.Addr) netip.AddrPort {
	if ap := udpsock.AddrPort(addr); ap.IsValid() {
		return ap
	}
	h := fnv.New128a()
	h.Write([]byte(addr.Network() + " " + addr.String()))
	var a [16]byte
	h.Sum(a[:0])
	a[0] = 0xfd
	return netip.AddrPortFrom(netip.AddrFrom16(a), 0)
}

// held is a source on probation: the packets it sent, kept to hand to
// kcp-go once the source answers the probe, so the client's first requests
// wait one round trip more rather than a retransmission timeout.
type held struct {
	addr  net.Addr
	pkts  [][]byte
	since time.Time
}

// probation holds up to probationMax sources, oldest out first. It is not
// safe for concurrent use.
type probation struct {
	m       map[netip.AddrPort]*held
	order   []probationEntry // oldest first; entries since taken are skipped
	bytes   int              // held in every entry's packets
	peak    int              // the map's most entries since it was made
	evicted uint64           // entries that left unanswered
}

type probationEntry struct {
	src   netip.AddrPort
	since time.Time
}

func newProbation() *probation { return &probation{m: make(map[netip.AddrPort]*held)} }

// hold puts src on probation, or keeps it there, with pkt among its
// packets; it evicts expired entries and, when full, the oldest.
func (p *probation) hold(src netip.AddrPort, addr net.Addr, pkt []byte, now time.Time) {
	p.expire(now)
	h := p.m[src]
	if h == nil {
		for len(p.m) >= probationMax {
			p.pop()
		}
		h = &held{addr: addr, since: now}
		p.m[src] = h
		p.order = append(p.order, probationEntry{src, now})
		p.peak = max(p.peak, len(p.m))
	}
	if len(h.pkts) >= heldMax {
		return
	}
	for p.bytes+len(pkt) > probationBytes && len(p.order) > 0 {
		p.pop()
	}
	if p.m[src] != h { // popped to make room: it was the oldest
		return
	}
	h.pkts = append(h.pkts, append([]byte(nil), pkt...))
	p.bytes += len(pkt)
}

// take removes src from probation and returns what it held, or nil.
func (p *probation) take(src netip.AddrPort) *held {
	h := p.m[src]
	if h != nil {
		p.drop(src, h)
	}
	return h
}

func (p *probation) drop(src netip.AddrPort, h *held) {
	delete(p.m, src)
	for _, pkt := range h.pkts {
		p.bytes -= len(pkt)
	}
}

// len is how many sources are on probation.
func (p *probation) len() int { return len(p.m) }

func (p *probation) expire(now time.Time) {
	for len(p.order) > 0 && now.Sub(p.order[0].since) >= probationLease {
		p.pop()
	}
	p.compact()
}

// pop removes the oldest entry from the order, and from the map if it was
// still there.
func (p *probation) pop() {
	e := p.order[0]
	p.order = p.order[1:]
	if h, ok := p.m[e.src]; ok && h.since.Equal(e.since) {
		p.drop(e.src, h)
		p.evicted++
	}
}

// compact gives back the memory a flood took once it has passed: a
// sliced-off prefix is never freed otherwise, and Go's maps never shrink.
func (p *probation) compact() {
	if len(p.order) == 0 && cap(p.order) > probationMax {
		p.order = nil
	}
	if len(p.m) == 0 && p.peak > probationMax/16 {
		p.m, p.peak = make(map[netip.AddrPort]*held), 0
	}
}

// replays is a bounded set of the nonces of packets admitted lately: a
// packet whose nonce is in it is a copy of one already seen. It is not
// safe for concurrent use.
type replays struct {
	m    map[[16]byte]struct{}
	ring [][16]byte
	next int
}

func newReplays() *replays {
	return &replays{m: make(map[[16]byte]struct{}, replayMax), ring: make([][16]byte, 0, replayMax)}
}

// add records nonce and reports whether it was new.
func (r *replays) add(nonce []byte) bool {
	var k [16]byte
	copy(k[:], nonce)
	if _, ok := r.m[k]; ok {
		return false
	}
	if len(r.ring) < replayMax {
		r.ring = append(r.ring, k)
	} else {
		delete(r.m, r.ring[r.next])
		r.ring[r.next] = k
		r.next = (r.next + 1) % replayMax
	}
	r.m[k] = struct{}{}
	return true
}
