package reliable

import (
	"crypto/rand"
	"encoding/binary"
	"hash/crc32"

	kcp "github.com/xtaci/kcp-go/v5"
)

// kcp-go's packet format below a KCP segment, from its sess.go and fec.go:
// a cipher's header (AEAD: nonce, then the sealed rest; the others: a
// 16-byte nonce and a CRC32 of the rest, all encrypted), then with FEC an
// 8-byte header (sequence id, type, size), then KCP segments.
const (
	cfbNonce      = 16
	cfbHeader     = cfbNonce + 4
	fecTypeData   = 0xf1
	fecTypeParity = 0xf2
	fecTypeOOB    = 0xf3
)

// aead is kcp-go's AEAD cipher, whose methods are exported although its
// type is not.
type aead interface {
	NonceSize() int
	Overhead() int
	Seal(dst, nonce, plaintext, additionalData []byte) []byte
	Open(dst, nonce, ciphertext, additionalData []byte) ([]byte, error)
}

// codec reads and writes kcp-go's packets under one cipher. Open and seal
// use the codec's own buffers, so one goroutine at a time may use it.
type codec struct {
	block kcp.BlockCrypt // nil: bare KCP
	aead  aead
	buf   [maxSegment]byte
	out   [maxSegment]byte
	// last is the packet whose plaintext buf holds, and lastWhy what
	// decrypting it gave: the gate and then the session read the same
	// packet, which is decrypted once.
	last, plain []byte
	lastWhy     refusal
}

func newCodec(block kcp.BlockCrypt) *codec {
	c := &codec{block: block}
	c.aead, _ = block.(aead)
	return c
}

// nonce returns the bytes of a packet that differ between any two packets
// kcp-go ever sends (its random nonce), for a replay cache; nil without a
// cipher, or when the packet is too short to hold one.
func (c *codec) nonce(pkt []byte) []byte {
	n := cfbNonce
	switch {
	case c.block == nil:
		return nil
	case c.aead != nil:
		n = c.aead.NonceSize()
	}
	if len(pkt) < n {
		return nil
	}
	return pkt[:n]
}

// Why open refused a packet.
type refusal int

const (
	accepted   refusal = iota
	authFailed         // the cipher or its checksum refused it
	malformed          // too short, or no whole KCP segment
	shard              // an FEC parity shard (or kcp-go's out-of-band data): no segment of its own
)

// decrypt returns pkt's plaintext below the cipher's header, checked, in
// the codec's buffer, without touching pkt (kcp-go decrypts it again).
func (c *codec) decrypt(pkt []byte) ([]byte, refusal) {
	if len(pkt) > 0 && len(pkt) == len(c.last) && &pkt[0] == &c.last[0] {
		return c.plain, c.lastWhy
	}
	plain, why := c.decryptNew(pkt)
	c.last, c.plain, c.lastWhy = pkt, plain, why
	return plain, why
}

// forget makes the next decrypt of the packet last decrypted decrypt it
// again: its buffer is about to hold another packet.
func (c *codec) forget() { c.last = nil }

func (c *codec) decryptNew(pkt []byte) ([]byte, refusal) {
	switch {
	case len(pkt) > len(c.buf):
		return nil, malformed
	case c.aead != nil:
		n := c.aead.NonceSize()
		if len(pkt) < n+c.aead.Overhead() {
			return nil, malformed
		}
		plain, err := c.aead.Open(c.buf[:0], pkt[:n], pkt[n:], nil)
		if err != nil {
			return nil, authFailed
		}
		return plain, accepted
	case c.block != nil:
		if len(pkt) < cfbHeader {
			return nil, malformed
		}
		c.block.Decrypt(c.buf[:len(pkt)], pkt)
		plain := c.buf[:len(pkt)]
		if crc32.ChecksumIEEE(plain[cfbHeader:]) != binary.LittleEndian.Uint32(plain[cfbNonce:]) {
			return nil, authFailed
		}
		return plain[cfbHeader:], accepted
	}
	return pkt, accepted
}

// open returns pkt's KCP segments, decrypted and checked, below any FEC
// data header.
func (c *codec) open(pkt []byte) (segs []byte, why refusal) {
	segs, why = c.decrypt(pkt)
	if why != accepted {
		return nil, why
	}
	// A data shard's FEC header; a parity shard carries no segment of its
	// own to read.
	if len(segs) >= 6 {
		switch binary.LittleEndian.Uint16(segs[4:]) {
		case fecTypeData:
			if len(segs) < fecOverhead {
				return nil, malformed
			}
			segs = segs[fecOverhead:]
		case fecTypeParity, fecTypeOOB:
			return nil, shard
		}
	}
	if len(segs) < kcp.IKCP_OVERHEAD {
		return nil, malformed
	}
	return segs, accepted
}

// demux reads a decrypted packet's conversation id and first sequence
// number exactly as kcp-go's listener does (sess.go, Listener.packetInput)
// to choose between a session and a new one: a mismatch there with sn 0,
// or any out-of-band packet, ends the session. ok is false where kcp-go
// reads no conversation id.
func demux(plain []byte) (conv, sn uint32, ok bool) {
	if len(plain) < min(kcp.IKCP_OVERHEAD, fecOverhead+4) {
		return 0, 0, false
	}
	switch binary.LittleEndian.Uint16(plain[4:]) {
	case fecTypeData:
		if len(plain) < fecOverhead+kcp.IKCP_OVERHEAD {
			return 0, 0, false
		}
		return binary.LittleEndian.Uint32(plain[fecOverhead:]), binary.LittleEndian.Uint32(plain[fecOverhead+12:]), true
	case fecTypeParity:
		return 0, 0, false
	case fecTypeOOB:
		return binary.LittleEndian.Uint32(plain[fecOverhead:]), 0, true
	}
	if len(plain) < kcp.IKCP_OVERHEAD {
		return 0, 0, false
	}
	return binary.LittleEndian.Uint32(plain), binary.LittleEndian.Uint32(plain[12:]), true
}

// seal returns plain as one packet under the codec's cipher, in the
// codec's other buffer.
func (c *codec) seal(plain []byte) []byte {
	switch {
	case c.aead != nil:
		n := c.aead.NonceSize()
		rand.Read(c.out[:n])
		return c.aead.Seal(c.out[:n], c.out[:n], plain, nil)
	case c.block != nil:
		pkt := c.out[:cfbHeader+len(plain)]
		rand.Read(pkt[:cfbNonce])
		copy(pkt[cfbHeader:], plain)
		binary.LittleEndian.PutUint32(pkt[cfbNonce:], crc32.ChecksumIEEE(pkt[cfbHeader:]))
		c.block.Encrypt(pkt, pkt)
		return pkt
	}
	return append(c.out[:0], plain...)
}

// headerRoom is how many bytes the cipher puts before the plaintext of a
// packet sealed by sealInPlace: kcp-go's headerSize without FEC.
func (c *codec) headerRoom() int {
	switch {
	case c.aead != nil:
		return c.aead.NonceSize()
	case c.block != nil:
		return cfbHeader
	}
	return 0
}

// sealInPlace seals pkt, whose first headerRoom bytes are the cipher's to
// fill and whose capacity has room for an AEAD's tag, as kcp-go's sender
// does (sess.go, postProcess), and returns it. The cipher may be used by
// many goroutines at once, as kcp-go's sessions share it.
func (c *codec) sealInPlace(pkt []byte) []byte {
	switch {
	case c.aead != nil:
		n := c.aead.NonceSize()
		rand.Read(pkt[:n])
		return c.aead.Seal(pkt[:n], pkt[:n], pkt[n:], nil)
	case c.block != nil:
		rand.Read(pkt[:cfbNonce])
		binary.LittleEndian.PutUint32(pkt[cfbNonce:], crc32.ChecksumIEEE(pkt[cfbHeader:]))
		c.block.Encrypt(pkt, pkt)
	}
	return pkt
}

// segment is one KCP segment's header.
type segment struct {
	conv        uint32
	cmd         byte
	wnd         uint16
	ts, sn, una uint32
	length      int
}

// nextSegment reads the segment at the start of b and returns the rest;
// ok is false when b holds no whole segment.
func nextSegment(b []byte) (seg segment, rest []byte, ok bool) {
	if len(b) < kcp.IKCP_OVERHEAD {
		return seg, nil, false
	}
	seg = segment{
		conv: binary.LittleEndian.Uint32(b), cmd: b[4], wnd: binary.LittleEndian.Uint16(b[6:]),
		ts: binary.LittleEndian.Uint32(b[8:]), sn: binary.LittleEndian.Uint32(b[12:]),
		una: binary.LittleEndian.Uint32(b[16:]), length: int(binary.LittleEndian.Uint32(b[20:])),
	}
	b = b[kcp.IKCP_OVERHEAD:]
	if seg.length < 0 || seg.length > len(b) {
		return seg, nil, false
	}
	return seg, b[seg.length:], true
}

// appendSegment appends seg's header, with no data, to b.
func appendSegment(b []byte, seg segment) []byte {
	b = binary.LittleEndian.AppendUint32(b, seg.conv)
	b = append(b, seg.cmd, 0)
	b = binary.LittleEndian.AppendUint16(b, seg.wnd)
	b = binary.LittleEndian.AppendUint32(b, seg.ts)
	b = binary.LittleEndian.AppendUint32(b, seg.sn)
	b = binary.LittleEndian.AppendUint32(b, seg.una)
	return binary.LittleEndian.AppendUint32(b, 0)
}
