package fec

import (
	"fmt"
	"math/rand/v2"
	"net"
	"sync"
	"sync/atomic"

	"github.com/klauspost/reedsolomon"
)

// counters is the concurrency-safe form of Stats, shared by the encoders
// and decoders of one Conn or Server.
type counters struct {
	dataSent, paritySent, received, recovered, lost, malformed, groups, flushed atomic.Uint64
}

func (c *counters) stats() Stats {
	return Stats{
		DataSent: c.dataSent.Load(), ParitySent: c.paritySent.Load(),
		Received: c.received.Load(), Recovered: c.recovered.Load(),
		Lost: c.lost.Load(), Malformed: c.malformed.Load(),
		Groups: c.groups.Load(), Flushed: c.flushed.Load(),
	}
}

// codecs holds the Reed-Solomon codes of one Conn or Server, one for each
// group size k, made when first needed. Its methods, and the codes, may be
// used from many goroutines at once.
type codecs struct {
	d, p int
	mu   sync.Mutex
	byK  []reedsolomon.Encoder // [k-1]
}

func newCodecs(d, p int) *codecs {
	return &codecs{d: d, p: p, byK: make([]reedsolomon.Encoder, d)}
}

// get returns the code for groups of k data shards, 1 <= k <= d.
func (c *codecs) get(k int) (reedsolomon.Encoder, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if enc := c.byK[k-1]; enc != nil {
		return enc, nil
	}
	p := parityFor(k, c.d, c.p)
	// The library caches an inverted matrix for every pattern of losses
	// it meets, without bound; past a few thousand patterns (large
	// groups), inverting each time keeps memory bounded. It would also
	// split shards over 8 KiB or so among new goroutines on every call;
	// one shard is at most 64 KiB, so the caller's goroutine does it all.
	enc, err := reedsolomon.New(k, p, reedsolomon.WithMaxGoroutines(1),
		reedsolomon.WithInversionCache(lossPatterns(k+p, p) <= 4096))
	if err != nil {
		return nil, fmt.Errorf("fec: Reed-Solomon code %d+%d: %w", k, p, err)
	}
	c.byK[k-1] = enc
	return enc, nil
}

// lossPatterns counts the ways 1 to p of n shards can be lost, stopping
// once it passes 1<<20.
func lossPatterns(n, p int) int {
	total, ways := 0, 1
	for e := 1; e <= p && total <= 1<<20; e++ {
		ways = ways * (n - e + 1) / e
		total += ways
	}
	return total
}

// encoder groups one sender's messages. Its methods may be called from
// many goroutines at once: the sender and the flusher.
type encoder struct {
	d, p   int
	codes  *codecs
	flush  *flusher
	st     *counters
	write  func([]byte) error // sends one datagram to the peer
	shards [][]byte           // scratch for the code, d+p long

	mu     sync.Mutex
	closed bool
	group  uint32
	n      int      // data shards in the open group
	size   int      // the open group's longest shard: length field and message
	data   [][]byte // the open group's data datagrams, header included
	parity [][]byte
}

func newEncoder(cfg *Config, codes *codecs, fl *flusher, st *counters, write func([]byte) error) *encoder {
	d, p := cfg.DataShards, cfg.ParityShards
	return &encoder{d: d, p: p, codes: codes, flush: fl, st: st, write: write, group: rand.Uint32()}
}

// grow makes the group's slices on the first send: a server makes an
// encoder for every peer, and most peers of a flood never get a reply.
// e.mu is held.
func (e *encoder) grow() {
	if e.data == nil {
		e.shards, e.data, e.parity = make([][]byte, e.d+e.p), make([][]byte, e.d), make([][]byte, e.p)
	}
}

// send sends msg as the next data shard of the open group at once, and the
// group's parity if that fills it. An error means msg was not sent and is
// not in the group. A failed parity write is not reported: the message
// went out, and a socket that fails keeps failing for the next send.
func (e *encoder) send(msg []byte) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.closed {
		return net.ErrClosed
	}
	e.grow()
	b := getBuf(HeaderBytes + len(msg))
	copy(b[HeaderBytes:], msg)
	putData(b, e.group, e.n)
	if err := e.write(b); err != nil {
		putBuf(b)
		return err
	}
	e.st.dataSent.Add(1)
	e.data[e.n] = b
	e.size = max(e.size, lengthBytes+len(msg))
	e.n++
	if e.n == 1 {
		e.flush.schedule(e, e.group)
	}
	if e.n == e.d {
		e.closeGroup(false)
	}
	return nil
}

// flushOpen closes the open group early, if it has messages: the sender is
// going away.
func (e *encoder) flushOpen() {
	e.mu.Lock()
	defer e.mu.Unlock()
	if !e.closed && e.n > 0 {
		e.closeGroup(true)
	}
}

// flushGroup closes group early if it is still open: its flush time came
// before its last message.
func (e *encoder) flushGroup(group uint32) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if !e.closed && e.group == group && e.n > 0 {
		e.closeGroup(true)
	}
}

// closeGroup sends the open group's parity and opens the next group.
// e.mu is held.
func (e *encoder) closeGroup(early bool) {
	k := e.n
	p := parityFor(k, e.d, e.p)
	if code, err := e.codes.get(k); err == nil {
		e.sendParity(code, k, p)
	}
	e.st.groups.Add(1)
	if early {
		e.st.flushed.Add(1)
	}
	e.release()
	e.group++
}

// sendParity computes and sends the open group's p parity shards over its
// k data shards, padded to the longest.
func (e *encoder) sendParity(code reedsolomon.Encoder, k, p int) {
	shards := e.shards[:k+p]
	for i := range k {
		e.data[i] = resize(e.data[i], headerBytes+e.size)
		shards[i] = e.data[i][headerBytes:]
	}
	for j := range p {
		e.parity[j] = getBuf(parityHeaderBytes + e.size)
		shards[k+j] = e.parity[j][parityHeaderBytes:]
	}
	if code.Encode(shards) != nil {
		return // equal sizes and counts: cannot happen
	}
	for j := range p {
		putParity(e.parity[j], e.group, j, k, p)
		if e.write(e.parity[j]) == nil {
			e.st.paritySent.Add(1)
		}
	}
}

// release returns the open group's buffers and empties it. e.mu is held.
func (e *encoder) release() {
	for i, b := range e.data[:e.n] {
		putBuf(b)
		e.data[i] = nil
	}
	for j, b := range e.parity {
		putBuf(b)
		e.parity[j] = nil
	}
	clear(e.shards)
	e.n, e.size = 0, 0
}

// close makes later sends fail with net.ErrClosed and drops the open
// group, whose parity will not be sent.
func (e *encoder) close() {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.closed = true
	e.release()
}
