package fec

import (
	"encoding/binary"
	"math/bits"
	"sync"
)

// shardSet is a set of shard indexes, 0 to 255.
type shardSet [4]uint64

func (s *shardSet) add(i int)      { s[i>>6] |= 1 << (i & 63) }
func (s *shardSet) has(i int) bool { return s[i>>6]&(1<<(i&63)) != 0 }
func (s *shardSet) len() (n int)   { return s.below(maxShards) }
func (s *shardSet) below(k int) (n int) {
	for w := 0; w < len(s) && k > 0; w, k = w+1, k-64 {
		m := s[w]
		if k < 64 {
			m &= 1<<k - 1
		}
		n += bits.OnesCount64(m)
	}
	return n
}

// groupState is where a window slot's group stands.
type groupState uint8

const (
	free groupState = iota // no group: nothing seen of the slot's group number
	open                   // receiving
	done                   // delivered in full or given up; later shards are dropped
)

// group is a receiver's view of one group.
type group struct {
	id     uint32
	state  groupState
	k, p   int      // from the first parity shard; 0 until one arrives
	size   int      // the parity's length, S
	top    int      // highest data index delivered, plus one
	have   shardSet // data shards delivered, arrived or rebuilt
	got    shardSet // parity shards held
	data   [][]byte // copies of delivered data shards, while open, for rebuilding
	parity [][]byte // parity shards, while open
}

// decoder is one receiver's window of groups. Its methods may be called
// from several goroutines, one at a time; deliver is called with the
// decoder locked, and must not keep the message it is given.
type decoder struct {
	d, p    int
	codes   *codecs
	st      *counters
	deliver func(msg []byte)
	budget  int

	mu     sync.Mutex
	closed bool
	ring   []group // by group number modulo window
	newest uint32
	held   int      // bytes of shard copies held
	shards [][]byte // scratch for the code
}

func newDecoder(cfg *Config, codes *codecs, st *counters, deliver func([]byte)) *decoder {
	d, p := cfg.DataShards, cfg.ParityShards
	return &decoder{d: d, p: p, codes: codes, st: st, deliver: deliver, budget: holdBudget(d, p)}
}

// handle takes one parsed shard.
func (dc *decoder) handle(h header, shard []byte) {
	dc.mu.Lock()
	defer dc.mu.Unlock()
	if dc.closed {
		return
	}
	g := dc.slot(h.group)
	if g == nil || g.state == done {
		return // stale, or a late or duplicate shard of a closed group
	}
	if h.kind == kindData {
		dc.onData(g, h.index, shard)
	} else {
		dc.onParity(g, h, shard)
	}
	dc.trim()
}

// slot returns the window's group id, sliding the window forward to it, or
// nil when id is too old.
func (dc *decoder) slot(id uint32) *group {
	switch {
	case dc.ring == nil:
		dc.ring = make([]group, window)
		dc.newest = id
	case int32(id-dc.newest) > 0:
		dc.advance(id)
	case int32(id-dc.newest) <= -restartGap:
		dc.closeAll() // the sender started over
		dc.newest = id
	case int32(id-dc.newest) <= -window:
		return nil
	}
	g := &dc.ring[id%window]
	if g.state == free || g.id != id {
		dc.finish(g)
		*g = group{id: id, state: open, data: g.data, parity: g.parity}
	}
	return g
}

// advance makes id the newest group, giving up the groups that leave the
// window.
func (dc *decoder) advance(id uint32) {
	n := min(id-dc.newest, window)
	for i := uint32(1); i <= n; i++ {
		g := &dc.ring[(dc.newest+i)%window]
		dc.finish(g)
		g.state = free
	}
	dc.newest = id
}

func (dc *decoder) onData(g *group, i int, shard []byte) {
	if g.have.has(i) {
		return // a duplicate
	}
	if g.k > 0 && (i >= g.k || len(shard) > g.size) {
		dc.st.malformed.Add(1) // contradicts the group's parity
		return
	}
	dc.deliver(shard[lengthBytes:])
	dc.st.received.Add(1)
	g.have.add(i)
	g.top = max(g.top, i+1)
	if dc.complete(g) {
		dc.finish(g)
		return
	}
	g.data = grow(g.data, dc.d)
	g.data[i] = dc.hold(shard)
	dc.rebuild(g)
}

func (dc *decoder) onParity(g *group, h header, shard []byte) {
	switch {
	case g.k == 0 && (g.top > h.k || longest(g.data) > len(shard)):
		dc.st.malformed.Add(1) // contradicts the data already here
		return
	case g.k == 0:
		g.k, g.p, g.size = h.k, h.p, len(shard)
	case h.k != g.k || len(shard) != g.size:
		dc.st.malformed.Add(1) // contradicts the group's other parity
		return
	}
	if g.got.has(h.index) {
		return
	}
	if dc.complete(g) {
		dc.finish(g) // every message is here: k says so now
		return
	}
	g.got.add(h.index)
	g.parity = grow(g.parity, dc.p)
	g.parity[h.index] = dc.hold(shard)
	dc.rebuild(g)
}

// complete reports whether every message of g has been delivered.
func (dc *decoder) complete(g *group) bool {
	if g.k > 0 {
		return g.have.below(g.k) == g.k
	}
	return g.have.len() == dc.d
}

// rebuild recovers g's missing messages once it holds any k of its shards,
// delivers them, and closes g.
func (dc *decoder) rebuild(g *group) {
	if g.k == 0 || g.have.below(g.k)+g.got.len() < g.k {
		return
	}
	code, err := dc.codes.get(g.k)
	if err != nil {
		return
	}
	g.data, g.parity = grow(g.data, dc.d), grow(g.parity, dc.p)
	shards := grow(dc.shards, g.k+g.p)[:g.k+g.p]
	dc.shards = shards
	for i := range g.k {
		b := g.data[i]
		dc.held -= cap(b)
		if g.have.has(i) {
			b = resize(b, g.size)
		} else {
			b = getBuf(g.size)[:0] // missing: the code fills it
		}
		dc.held += cap(b)
		g.data[i], shards[i] = b, b
	}
	for j := range g.p {
		shards[g.k+j] = g.parity[j] // nil where missing
	}
	if code.ReconstructData(shards) == nil {
		dc.recover(g, shards)
	}
	clear(shards)
	dc.finish(g)
}

// recover delivers the messages of g that shards rebuilt.
func (dc *decoder) recover(g *group, shards [][]byte) {
	for i := range g.k {
		if g.have.has(i) {
			continue
		}
		dc.held += cap(shards[i]) - cap(g.data[i]) // the same buffer, unless the code made one
		g.data[i] = shards[i]
		n := lengthBytes + int(binary.BigEndian.Uint16(shards[i]))
		if n > g.size {
			// Shards that passed their checksums but do not belong
			// together (a forger's): never deliver what they make.
			dc.st.malformed.Add(1)
			continue
		}
		dc.deliver(shards[i][lengthBytes:n])
		dc.st.recovered.Add(1)
		g.have.add(i)
	}
}

// finish closes g if it is open: its known missing messages are lost, and
// its shard copies go back to the pool.
func (dc *decoder) finish(g *group) {
	if g.state != open {
		return
	}
	known := g.top
	if g.k > 0 {
		known = g.k
	}
	dc.st.lost.Add(uint64(known - g.have.below(known)))
	dc.drop(g.data)
	dc.drop(g.parity)
	g.state = done
}

// hold returns a copy of shard, counted against the budget.
func (dc *decoder) hold(shard []byte) []byte {
	b := getBuf(len(shard))
	copy(b, shard)
	dc.held += cap(b)
	return b
}

// drop returns held shard copies to the pool.
func (dc *decoder) drop(bufs [][]byte) {
	for i, b := range bufs {
		dc.held -= cap(b)
		putBuf(b)
		bufs[i] = nil
	}
}

// trim gives up the oldest open groups while the copies held exceed the
// budget, so a sender of large messages whose groups never complete cannot
// make a receiver hold more.
func (dc *decoder) trim() {
	for i := uint32(1); dc.held > dc.budget && i <= window; i++ {
		dc.finish(&dc.ring[(dc.newest+i)%window])
	}
}

// close gives up every open group and drops whatever arrives later.
func (dc *decoder) close() {
	dc.mu.Lock()
	defer dc.mu.Unlock()
	dc.closeAll()
	dc.closed = true
}

func (dc *decoder) closeAll() {
	for i := range dc.ring {
		dc.finish(&dc.ring[i])
		dc.ring[i].state = free
	}
}

// grow returns s with length at least n.
func grow(s [][]byte, n int) [][]byte {
	if len(s) < n {
		s = append(s, make([][]byte, n-len(s))...)
	}
	return s
}

// longest returns the length of the longest slice in s.
func longest(s [][]byte) (n int) {
	for _, b := range s {
		n = max(n, len(b))
	}
	return n
}
