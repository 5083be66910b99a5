package fec

import (
	"encoding/binary"
)

// The chain code, under ChainConn: a convolutional XOR code over the
// protected parts of a sender's datagrams. Datagram n carries its own
// bytes D(n) and, while the link is lossy, the parity
//
//	P(n) = D(n-1) XOR D(n-3)
//
// so it needs no datagram of its own: a lost datagram is rebuilt from the
// next datagram that arrives, whatever the message rate, when the one
// three before it is here. Two losses in a row are rebuilt from the next
// two datagrams, three in a row from the next three. Lags 1 and 3 rather
// than 1 and 2 leave a third as many losses unrepaired at 5% loss (0.008%
// against 0.028% of datagrams, simulated), as fast. A datagram may carry a
// second parity too (ChainConn's default),
//
//	Q(n) = D(n-2) XOR D(n-3)
//
// so that two losses in a row are rebuilt from the next datagram alone,
// and at 10% loss 0.016% of datagrams stay lost instead of 0.14%. The rest
// are left to the protocol above (KCP retransmits). A parity leaves out
// its zero bytes: two datagrams of one conversation share most of their
// header bytes, so a parity costs a fraction of a datagram's length.
//
// # Wire format (ChainConn)
//
// Integers are big-endian. A plain datagram, with nothing worth protecting
// (a pure acknowledgement):
//
//	offset 0      1         2
//	       +------+---------+-------------------+
//	       | 0x20 | report  | payload           |
//	       +------+---------+-------------------+
//
// A coded datagram:
//
//	offset 0      1         2           6         8         10
//	       +------+---------+-----------+---------+---------+---------+--------+
//	       | 0x21 | report  | seq       | split   | length  | payload | parity |
//	       +------+---------+-----------+---------+---------+---------+--------+
//	         1      1         4           2         2         length    rest
//
// or, with both parities, kind 0x22, whose rest is a 2-byte length of P,
// then P, then Q. The fields:
//
//   - report is the sender's count, modulo 256, of the datagrams it found
//     missing from what the receiver sent it: a change tells the receiver
//     its own datagrams are being lost, so it turns parity on.
//   - seq numbers a sender's coded datagrams from 1; D(n) for n < 1 is
//     empty. A seq 65536 or more behind the newest means the sender started
//     over.
//   - split is where the protected part D(seq) starts in the payload: the
//     bytes before it (acknowledgements) are delivered but not protected.
//   - a parity, when present, is 2 bytes, the lengths of the two datagrams
//     it covers XORed; 2 bytes, n, the longer one's length; a bitmap of
//     ceil(n/8) bytes; and those bytes of the two datagrams XORed (the
//     shorter zero-padded to n) whose bits are set in the bitmap (bit i%8 of
//     byte i/8 for byte i), the others being zero. An empty parity means
//     none.
//
// There is no checksum: like bare KCP, the chain relies on UDP's; a
// datagram that is too short or whose fields disagree is dropped.

// ChainHeaderBytes is what a coded datagram of ChainConn's adds to what
// it carries, parity aside.
const ChainHeaderBytes = chainCodedBytes

const (
	chainPlain      = 0x20
	chainCoded      = 0x21
	chainCoded2     = 0x22 // two parities
	chainPlainBytes = 2
	chainCodedBytes = 10
	// chainWindow is how many recent datagrams a receiver keeps for
	// rebuilding: a lost datagram is rebuilt within 3 after it, or never.
	chainWindow = 8
	// maxProtected is the longest protected part the chain codes; longer
	// ones go plain, so that a receiver holds at most chainWindow times
	// twice this for a peer.
	maxProtected = 1500
	// lastSeq is never sent: with 0, it stands for the empty datagrams
	// before a sender's first.
	lastSeq = 1<<32 - 1
)

// chainHeader is a datagram's header, parsed.
type chainHeader struct {
	kind   byte
	report byte
	seq    uint32
	split  int
}

// parseChain checks b and returns its header, its payload and its
// parities (nil when absent). ok is false for anything malformed; it never
// panics.
func parseChain(b []byte) (h chainHeader, payload, p, q []byte, ok bool) {
	if len(b) < chainPlainBytes {
		return h, nil, nil, nil, false
	}
	h.kind, h.report = b[0], b[1]
	if h.kind == chainPlain {
		return h, b[chainPlainBytes:], nil, nil, true
	}
	if (h.kind != chainCoded && h.kind != chainCoded2) || len(b) < chainCodedBytes {
		return h, nil, nil, nil, false
	}
	h.seq = binary.BigEndian.Uint32(b[2:6])
	h.split = int(binary.BigEndian.Uint16(b[6:8]))
	n := int(binary.BigEndian.Uint16(b[8:10]))
	rest := b[chainCodedBytes:]
	if n > len(rest) || h.split > n || h.seq == 0 || h.seq == lastSeq || n-h.split > maxProtected {
		return h, nil, nil, nil, false
	}
	payload, p = rest[:n], rest[n:]
	if h.kind == chainCoded2 {
		if len(p) < lengthBytes || int(binary.BigEndian.Uint16(p)) > len(p)-lengthBytes {
			return h, nil, nil, nil, false
		}
		plen := int(binary.BigEndian.Uint16(p))
		p, q = p[lengthBytes:lengthBytes+plen], p[lengthBytes+plen:]
	}
	if !parityLen(len(p)) || !parityLen(len(q)) {
		return h, nil, nil, nil, false
	}
	return h, payload, nonEmpty(p), nonEmpty(q), true
}

// parityLen reports whether n bytes can be a parity: none, or its header,
// bitmap and bytes for up to maxProtected bytes.
func parityLen(n int) bool {
	return n == 0 || (n >= parityHeader && n <= parityHeader+maxProtected+(maxProtected+7)/8)
}

func nonEmpty(b []byte) []byte {
	if len(b) == 0 {
		return nil
	}
	return b
}

// appendPlain appends a plain datagram of payload to dst.
func appendPlain(dst []byte, report byte, payload []byte) []byte {
	return append(append(dst, chainPlain, report), payload...)
}

// appendCoded appends a coded datagram to dst: payload, protected from
// split on, and the parities of d[0] and d[2] (with level 1 or more) and
// of d[1] and d[2] (with level 2): d holds D(n-1), D(n-2), D(n-3). A
// parity of two empty datagrams is left out.
func appendCoded(dst []byte, report byte, seq uint32, split int, payload []byte, d *[3][]byte, level int) []byte {
	if level == 2 && len(d[1]) == 0 && len(d[2]) == 0 {
		level = 1 // Q would be empty: save its length field
	}
	kind := byte(chainCoded)
	if level == 2 {
		kind = chainCoded2
	}
	dst = append(dst, kind, report)
	dst = binary.BigEndian.AppendUint32(dst, seq)
	dst = binary.BigEndian.AppendUint16(dst, uint16(split))
	dst = binary.BigEndian.AppendUint16(dst, uint16(len(payload)))
	dst = append(dst, payload...)
	if level == 0 {
		return dst
	}
	at := len(dst)
	if level == 2 {
		dst = append(dst, 0, 0) // P's length, below
	}
	if len(d[0]) > 0 || len(d[2]) > 0 {
		dst = appendXOR(dst, d[0], d[2])
	}
	if level == 2 {
		binary.BigEndian.PutUint16(dst[at:], uint16(len(dst)-at-lengthBytes))
		if len(d[1]) > 0 || len(d[2]) > 0 {
			dst = appendXOR(dst, d[1], d[2])
		}
	}
	return dst
}

// appendXOR appends the parity of a and b: their lengths XORed, the
// length n of the longer, then their bytes XORed, the shorter zero-padded,
// with its zero bytes left out: a bitmap of ceil(n/8) bytes says which of
// the n bytes follow (bit i%8 of byte i/8), and the rest are zero. Two
// datagrams of one conversation share most header bytes, and greetings
// most of their text, so this is a fraction of their length.
func appendXOR(dst, a, b []byte) []byte {
	if len(a) < len(b) {
		a, b = b, a
	}
	dst = binary.BigEndian.AppendUint16(dst, uint16(len(a)^len(b)))
	dst = binary.BigEndian.AppendUint16(dst, uint16(len(a)))
	bitmap := len(dst)
	dst = append(dst, make([]byte, (len(a)+7)/8)...)
	for i := range a {
		x := a[i]
		if i < len(b) {
			x ^= b[i]
		}
		if x != 0 {
			dst[bitmap+i/8] |= 1 << (i % 8)
			dst = append(dst, x)
		}
	}
	return dst
}

// xorBytes is the length of appendXOR's parity of a and b, 0 when both
// are empty (no parity is sent).
func xorBytes(a, b []byte) int {
	if len(a) < len(b) {
		a, b = b, a
	}
	if len(a) == 0 {
		return 0
	}
	n := parityHeader + (len(a)+7)/8
	for i := range a {
		if i >= len(b) || a[i] != b[i] {
			n++
		}
	}
	return n
}

// parityHeader is a parity's two lengths.
const parityHeader = 2 * lengthBytes

// unXOR returns, into dst, the bytes parity was made of besides known; ok
// is false when the two cannot have made it, or parity is malformed.
func unXOR(dst, parity, known []byte) ([]byte, bool) {
	if len(parity) < parityHeader {
		return nil, false
	}
	n := int(binary.BigEndian.Uint16(parity)) ^ len(known)
	size := int(binary.BigEndian.Uint16(parity[lengthBytes:]))
	rest := parity[parityHeader:]
	if size > maxProtected || n > size || len(known) > size || max(n, len(known)) != size || len(rest) < (size+7)/8 {
		return nil, false
	}
	bitmap, vals := rest[:(size+7)/8], rest[(size+7)/8:]
	dst = append(dst[:0], make([]byte, size)...)
	for i := range size {
		if bitmap[i/8]&(1<<(i%8)) != 0 {
			if len(vals) == 0 {
				return nil, false
			}
			dst[i], vals = vals[0], vals[1:]
		}
		if i < len(known) {
			dst[i] ^= known[i]
		}
	}
	if len(vals) != 0 {
		return nil, false
	}
	return dst[:n], true
}

// chainSender is one peer's sending side: its sequence and the protected
// parts of its last three coded datagrams.
type chainSender struct {
	seq  uint32
	prev [3][]byte // D(seq), D(seq-1), D(seq-2)
}

// next appends the next coded datagram for payload to dst, with level
// parities (0, 1 or 2), and remembers its protected part.
func (s *chainSender) next(dst []byte, report byte, payload []byte, split, level int) []byte {
	s.seq++
	if s.seq == lastSeq {
		// Sequence numbers 0 and 2^32-1 stay empty, as a receiver
		// assumes, so the sequence starts over at 1 with no history.
		s.seq = 1
		for i := range s.prev {
			s.prev[i] = s.prev[i][:0]
		}
	}
	dst = appendCoded(dst, report, s.seq, split, payload, &s.prev, level)
	oldest := s.prev[2]
	s.prev[2], s.prev[1] = s.prev[1], s.prev[0]
	s.prev[0] = append(oldest[:0], payload[split:]...)
	return dst
}

// parityBytes is how many bytes level parities add to the next datagram.
func (s *chainSender) parityBytes(level int) int {
	n := 0
	if q := xorBytes(s.prev[1], s.prev[2]); level == 2 && q > 0 {
		n = lengthBytes + q
	}
	if level >= 1 {
		n += xorBytes(s.prev[0], s.prev[2])
	}
	return n
}

// slot is one datagram in a receiver's window: its protected part, and
// its parities, P(seq) = D(seq-1) ^ D(seq-3) and Q(seq) = D(seq-2) ^
// D(seq-3).
type slot struct {
	seq  uint32
	seen bool // seq is this slot's
	have bool // D(seq) arrived or was rebuilt
	d    []byte
	eqs  [2]equation
}

// equation is one parity a slot holds, until it is spent.
type equation struct {
	has, used bool
	b         []byte
}

// chainReceiver is one peer's receiving side: the recent window, and the
// count of datagrams found missing, which its replies report.
type chainReceiver struct {
	started bool
	newest  uint32
	ring    [chainWindow]slot
	missing byte // reported: datagrams never seen, modulo 256
	scratch []byte
}

// receive takes a coded datagram's sequence number, protected part and
// parity, and calls deliver with each protected part it rebuilt. It
// reports whether the datagram is new (a duplicate is not delivered
// again).
func (r *chainReceiver) receive(seq uint32, d, p, q []byte, deliver func([]byte)) bool {
	switch {
	case !r.started || int32(seq-r.newest) <= -1<<16:
		r.reset(seq)
	case int32(seq-r.newest) > 0:
		r.advance(seq)
	case int32(seq-r.newest) <= -chainWindow:
		return true // too old to place: deliver, no repair
	}
	s := &r.ring[seq%chainWindow]
	if !s.seen || s.seq != seq {
		r.claim(seq) // older than a reset, within the window
	}
	if s.have {
		return false
	}
	s.have = true
	s.d = append(s.d[:0], d...)
	for i, b := range [2][]byte{p, q} {
		if b != nil {
			s.eqs[i] = equation{has: true, b: append(s.eqs[i].b[:0], b...)}
		}
	}
	r.peel(deliver)
	return true
}

// reset starts over at seq: the sender is new, or started over.
func (r *chainReceiver) reset(seq uint32) {
	r.started, r.newest = true, seq
	for i := range r.ring {
		r.ring[i] = r.ring[i].emptied(0, false)
	}
	r.claim(seq)
}

// advance makes seq the newest, counting the datagrams skipped as missing.
func (r *chainReceiver) advance(seq uint32) {
	r.missing += byte(min(seq-r.newest-1, 255))
	for i := min(seq-r.newest, chainWindow); i > 0; i-- {
		r.claim(seq - i + 1)
	}
	r.newest = seq
}

// claim empties the slot of seq for it.
func (r *chainReceiver) claim(seq uint32) {
	s := &r.ring[seq%chainWindow]
	*s = s.emptied(seq, true)
}

// emptied returns s for seq, keeping its buffers.
func (s *slot) emptied(seq uint32, seen bool) slot {
	return slot{seq: seq, seen: seen, d: s.d[:0],
		eqs: [2]equation{{b: s.eqs[0].b[:0]}, {b: s.eqs[1].b[:0]}}}
}

// known returns D(seq) if the window holds it; D(n) for n < 1 is empty.
func (r *chainReceiver) known(seq uint32) ([]byte, bool) {
	if seq == 0 || seq == lastSeq {
		return nil, true // before the sender's first datagram
	}
	if int32(seq-r.newest) > 0 || int32(seq-r.newest) <= -chainWindow {
		return nil, false
	}
	s := &r.ring[seq%chainWindow]
	return s.d, s.seen && s.seq == seq && s.have
}

// peel rebuilds what the window's parities allow, until nothing changes:
// a parity with one of its two datagrams missing and the other here
// rebuilds the missing one.
func (r *chainReceiver) peel(deliver func([]byte)) {
	for changed := true; changed; {
		changed = false
		for i := range r.ring {
			s := &r.ring[i]
			for k := range s.eqs {
				if e := &s.eqs[k]; s.seen && e.has && !e.used && r.solve(s.seq-uint32(k)-1, s.seq-3, e, deliver) {
					changed = true
				}
			}
		}
	}
}

// solve uses e, the parity of D(x) and D(y): when one is here and the
// other missing, it rebuilds the missing one and reports true.
func (r *chainReceiver) solve(x, y uint32, e *equation, deliver func([]byte)) bool {
	a, okA := r.known(x)
	b, okB := r.known(y)
	switch {
	case okA && okB:
		e.used = true
	case okA != okB:
		missing, known := y, a
		if okB {
			missing, known = x, b
		}
		e.used = true
		return r.rebuild(missing, e.b, known, deliver)
	}
	return false
}

// rebuild recovers D(seq) from parity and the other datagram it covers,
// and delivers it; false if seq is outside the window or the parity is
// inconsistent.
func (r *chainReceiver) rebuild(seq uint32, parity, known []byte, deliver func([]byte)) bool {
	if seq == 0 || seq == lastSeq || int32(seq-r.newest) <= -chainWindow {
		return false
	}
	s := &r.ring[seq%chainWindow]
	if !s.seen || s.seq != seq {
		return false
	}
	d, ok := unXOR(r.scratch, parity, known)
	r.scratch = d
	if !ok {
		return false
	}
	s.have, s.d = true, append(s.d[:0], d...)
	if len(d) > 0 {
		deliver(s.d)
	}
	return true
}
