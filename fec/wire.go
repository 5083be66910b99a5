package fec

import (
	"encoding/binary"
	"hash/crc32"
	"sync"
)

// Wire and tuning constants, each with the reason for its value.
const (
	// maxPayload is the largest UDP payload over IPv4, raw.MaxMessage's
	// limit: one that fits keeps fitting over IPv6.
	maxPayload = 65507
	// headerBytes is the header every shard starts with: kind, checksum,
	// group, index.
	headerBytes = 1 + 4 + 4 + 1
	// parityHeaderBytes adds a parity shard's k and p.
	parityHeaderBytes = headerBytes + 2
	// lengthBytes is the message length at the start of each data shard.
	lengthBytes = 2
	// maxShards is the most shards a GF(2^8) Reed-Solomon group holds.
	maxShards = 256

	version    = 1
	kindData   = version<<4 | 0
	kindParity = version<<4 | 1

	// window is how many recent group numbers a receiver tracks. 64 groups
	// of the default 10 messages tolerate 640 messages of reordering, while
	// a window's bookkeeping stays under 32 KiB a peer.
	window = 64
	// restartGap: a shard this many groups behind the newest can only come
	// from a sender that started over at another group number.
	restartGap = 1 << 16
	// minHold is the least a receiver may hold in shard copies; see
	// holdBudget.
	minHold = 1 << 20
	// poolBuf is the size of the pooled shard buffers: room for the
	// greetings and chat lines udplab sends, and then some, so the common
	// path allocates nothing; larger shards get their own allocation.
	poolBuf = 2048
	// readBufferSize exceeds any UDP payload, so a read never truncates.
	readBufferSize = 64 << 10
	// amplification bounds what a server sends an address against what
	// it received from it, as udplab's design requires of every server
	// before an address is shown to be real; ipOverhead is the IPv4 and
	// UDP headers counted with each datagram either way.
	amplification = 3
	ipOverhead    = 28
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// header is a shard's header, parsed.
type header struct {
	kind  byte
	group uint32
	index int
	k, p  int // parity shards only
}

// parse checks b as a shard for a receiver configured with d data and p
// parity shards and returns its header and its shard: for data, the length
// field and the message; for parity, the parity bytes. ok is false for
// anything malformed; parse never panics, whatever b holds.
func parse(b []byte, d, p int) (h header, shard []byte, ok bool) {
	if len(b) < headerBytes+lengthBytes || binary.BigEndian.Uint32(b[1:5]) != crc32.Checksum(b[5:], castagnoli) {
		return h, nil, false
	}
	h = header{kind: b[0], group: binary.BigEndian.Uint32(b[5:9]), index: int(b[9])}
	switch h.kind {
	case kindData:
		n := int(binary.BigEndian.Uint16(b[headerBytes:]))
		return h, b[headerBytes:], h.index < d && n == len(b)-HeaderBytes
	case kindParity:
		h.k, h.p = int(b[10]), int(b[11])
		ok = h.k >= 1 && h.k <= d && h.p == parityFor(h.k, d, p) && h.index < h.p && len(b) >= parityHeaderBytes+lengthBytes
		return h, b[parityHeaderBytes:], ok
	}
	return h, nil, false
}

// putData writes a data shard's header and length field into b, whose
// message is already at b[HeaderBytes:], and seals it.
func putData(b []byte, group uint32, index int) {
	b[0] = kindData
	binary.BigEndian.PutUint32(b[5:9], group)
	b[9] = byte(index)
	binary.BigEndian.PutUint16(b[headerBytes:], uint16(len(b)-HeaderBytes))
	seal(b)
}

// putParity writes a parity shard's header into b, whose parity is already
// at b[parityHeaderBytes:], and seals it.
func putParity(b []byte, group uint32, index, k, p int) {
	b[0] = kindParity
	binary.BigEndian.PutUint32(b[5:9], group)
	b[9], b[10], b[11] = byte(index), byte(k), byte(p)
	seal(b)
}

// seal writes the checksum of everything after it.
func seal(b []byte) {
	binary.BigEndian.PutUint32(b[1:5], crc32.Checksum(b[5:], castagnoli))
}

// parityFor returns the parity shards of a group of k data shards when a
// full group has d data and p parity: the same ratio, rounded up, at least
// 1. A full group gets p.
func parityFor(k, d, p int) int { return max(1, (k*p+d-1)/d) }

// holdBudget is the most a receiver holds in shard copies for its open
// groups: a full group of the largest shards, and at least minHold. Past it
// the oldest open groups are given up.
func holdBudget(d, p int) int { return max(minHold, (d+p)*(MaxMessage+lengthBytes)) }

// Shard buffers up to poolBuf bytes are pooled as arrays, so getting and
// returning one allocates nothing.
var pool = sync.Pool{New: func() any { return new([poolBuf]byte) }}

// getBuf returns a buffer of n bytes, not zeroed.
func getBuf(n int) []byte {
	if n <= poolBuf {
		return pool.Get().(*[poolBuf]byte)[:n]
	}
	return make([]byte, n)
}

// putBuf returns b to the pool if it came from there. Nothing may use b
// afterwards.
func putBuf(b []byte) {
	if cap(b) == poolBuf {
		pool.Put((*[poolBuf]byte)(b[:poolBuf]))
	}
}

// resize returns b with length n, keeping its bytes and zeroing any new
// ones, in a new buffer when b is too small.
func resize(b []byte, n int) []byte {
	if cap(b) < n {
		nb := getBuf(n)
		copy(nb, b)
		clear(nb[len(b):])
		putBuf(b)
		return nb
	}
	old := len(b)
	b = b[:n]
	clear(b[min(old, n):])
	return b
}
