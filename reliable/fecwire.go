package reliable

import (
	"encoding/binary"
	"sync"
	"sync/atomic"
	"time"

	"github.com/klauspost/reedsolomon"
	kcp "github.com/xtaci/kcp-go/v5"
)

// kcp-go's FEC, in its format (fec.go): each packet carries a 6-byte
// header (a sequence id and a type) after the cipher's; a data shard then
// a 2-byte size, counting itself, and KCP's bytes; every dataShards data
// shards with consecutive ids are followed by parityShards parity shards,
// Reed-Solomon over the data shards from their size field on, each padded
// with zeros to the longest.
const (
	fecHeader = 6
	// maxFECEncodeLatency is kcp-go's: a group's parity is sent only if
	// its last data shard left within this long of the one before.
	maxFECEncodeLatency = 500 * time.Millisecond
	// fecHold is how long a session keeps the FEC state of groups it has
	// not finished, sending or receiving, after its last packet: a peer
	// sends a group's parity right after its last data shard, so a group
	// silent this long gets none, and its state only costs memory.
	fecHold = time.Second
	// maxShardSets is kcp-go's: the receiver keeps groups up to this many
	// behind the newest.
	maxShardSets = 3
)

// packets are buffers of one datagram, shared by every session: what a
// session sends (until written), FEC shards held for recovery.
var packets = sync.Pool{New: func() any { return new([maxSegment]byte) }}

func getPacket() []byte { return packets.Get().(*[maxSegment]byte)[:] }

func putPacket(b []byte) {
	if cap(b) == maxSegment {
		packets.Put((*[maxSegment]byte)(b[:maxSegment]))
	}
}

// fecCodec is what a listener's sessions share for FEC: the shard counts,
// Reed-Solomon coders and parity accumulators.
type fecCodec struct {
	data, parity, shards int
	paws                 uint32    // sequence ids wrap below this multiple of shards
	dec                  rsEncoder // for the read loop only
	// encoders: reedsolomon does not document its coders as safe for
	// concurrent use, so each flush borrows one.
	encoders sync.Pool
	accs     sync.Pool // *parityAcc
}

type rsEncoder = reedsolomon.Encoder

func newFECCodec(data, parity int) (*fecCodec, error) {
	dec, err := reedsolomon.New(data, parity)
	if err != nil {
		return nil, err
	}
	n := data + parity
	f := &fecCodec{data: data, parity: parity, shards: n, paws: 0xffffffff / uint32(n) * uint32(n), dec: dec}
	f.encoders.New = func() any { e, _ := reedsolomon.New(data, parity); return e } // the same counts succeeded above
	f.accs.New = func() any {
		a := &parityAcc{bufs: make([][]byte, parity), views: make([][]byte, parity)}
		for i := range a.bufs {
			a.bufs[i] = make([]byte, maxSegment)
		}
		return a
	}
	return f, nil
}

// parityAcc accumulates one group's parity shards as its data shards go
// out (reedsolomon's EncodeIdx), so a sender keeps parityShards buffers
// while a group is open rather than a copy of every data shard.
type parityAcc struct {
	bufs  [][]byte // zero beyond used
	views [][]byte
	used  int
}

// fecEncoder is one session's sending side of FEC. It holds a parityAcc
// only while a group is open, and gives it back (the group then sends no
// parity) when the session has sent nothing for fecHold.
type fecEncoder struct {
	next    uint32
	count   int // data shards of the open group
	maxSize int // its longest packet, headers included
	last    time.Time
	acc     *parityAcc
	skip    bool // the open group lost its accumulator: no parity for it
}

// encode seals b, a packet whose FEC header starts at off, as the next
// data shard, and returns the group's parity packets when b completes it
// (from the packets pool, headers filled, not yet encrypted).
func (e *fecEncoder) encode(f *fecCodec, b []byte, off int, now time.Time) (ps [][]byte) {
	e.seal(f, b[off:], fecTypeData)
	payload := b[off+fecHeader:]
	binary.LittleEndian.PutUint16(payload, uint16(len(payload)))
	if e.count == 0 {
		e.acc, e.skip, e.maxSize = f.accs.Get().(*parityAcc), false, 0
	}
	if !e.skip {
		for i, buf := range e.acc.bufs {
			e.acc.views[i] = buf[:len(payload)]
		}
		rs := f.encoders.Get().(rsEncoder)
		if rs.EncodeIdx(payload, e.count, e.acc.views) != nil {
			e.skip = true
		}
		f.encoders.Put(rs)
		e.acc.used = max(e.acc.used, len(payload))
	}
	e.maxSize = max(e.maxSize, len(b))
	e.count++
	if e.count == f.data {
		if !e.skip && now.Sub(e.last) < maxFECEncodeLatency {
			ps = e.parityPackets(f, off)
		} else {
			e.next = (e.next + uint32(f.parity)) % f.paws // kcp-go's skipParity
		}
		e.count = 0
		e.release(f)
	}
	e.last = now
	return ps
}

func (e *fecEncoder) parityPackets(f *fecCodec, off int) [][]byte {
	ps := make([][]byte, f.parity)
	for i := range ps {
		p := getPacket()[:e.maxSize]
		e.seal(f, p[off:], fecTypeParity)
		copy(p[off+fecHeader:], e.acc.bufs[i][:e.maxSize-off-fecHeader])
		ps[i] = p
	}
	return ps
}

func (e *fecEncoder) seal(f *fecCodec, hdr []byte, typ uint16) {
	binary.LittleEndian.PutUint32(hdr, e.next)
	binary.LittleEndian.PutUint16(hdr[4:], typ)
	e.next = (e.next + 1) % f.paws
}

// release gives the open group's accumulator back; the group, if still
// open, sends no parity.
func (e *fecEncoder) release(f *fecCodec) {
	if e.acc == nil {
		return
	}
	for _, b := range e.acc.bufs {
		clear(b[:e.acc.used])
	}
	e.acc.used = 0
	f.accs.Put(e.acc)
	e.acc, e.skip = nil, e.count > 0
}

// holding reports whether e keeps an accumulator, and so needs a tick at
// e.last+fecHold to let it go.
func (e *fecEncoder) holding() bool { return e.acc != nil }

// fecDecoder is one session's receiving side of FEC, kcp-go's decoder
// (fec.go) without its auto-tuning: both ends agree on the shard counts
// (Config says they must). It exists only while the session receives FEC
// traffic: dropped after fecHold without a shard.
type fecDecoder struct {
	sets    map[uint32]*shardSet
	newest  uint32
	started bool // newest is a group seen: a decoder dropped after fecHold and made again starts at the peer's group, not 0
	// foreign: a shard showed the peer's shard counts are not the
	// codec's; the session then stops decoding (see session.inputFEC).
	foreign bool
	last    time.Time
	shards  [][]byte // scratch for a reconstruction
}

// shardSet is one group's shards as received, each in a packets buffer.
type shardSet struct {
	pkts  [][]byte // by position in the group; nil: not received
	count int
}

func newFECDecoder(f *fecCodec) *fecDecoder {
	return &fecDecoder{sets: make(map[uint32]*shardSet), shards: make([][]byte, f.shards)}
}

// decode takes in, one FEC packet (header on), and returns the data shards
// it lets the decoder rebuild, each in a packets buffer the caller puts
// back: a 2-byte size, then KCP's bytes.
func (d *fecDecoder) decode(f *fecCodec, in []byte, now time.Time) (recovered [][]byte) {
	d.last = now
	seqid, typ := binary.LittleEndian.Uint32(in), binary.LittleEndian.Uint16(in[4:])
	pos := int(seqid % uint32(f.shards))
	switch {
	case seqid >= f.paws || d.foreign:
		return nil
	case (pos < f.data) != (typ == fecTypeData):
		// A shard where the peer's layout has none of its type: the
		// peer's shard counts differ (kcp-go would start auto-tuning).
		// Its groups would rebuild garbage, counted as recovered.
		d.foreign = true
		d.release()
		return nil
	}
	id := seqid / uint32(f.shards)
	if !d.started {
		d.newest, d.started = id, true
	}
	set := d.sets[id]
	if set == nil {
		set = &shardSet{pkts: make([][]byte, f.shards)}
		d.sets[id] = set
	}
	if set.pkts[pos] != nil {
		return nil
	}
	pkt := getPacket()[:len(in)]
	copy(pkt, in)
	set.pkts[pos] = pkt
	set.count++
	if set.count >= f.data {
		recovered = d.reconstruct(f, set)
	}
	switch {
	case d.behind(f, id):
		// kcp-go keeps it only until its discardShards, at once: a peer
		// sending shards of ever older groups must not grow d.
		set.drop()
		delete(d.sets, id)
	case int32(id*uint32(f.shards)-d.newest*uint32(f.shards)) > 0:
		// Only a newer group can leave one behind.
		d.newest = id
		d.discard(f)
	}
	return recovered
}

// behind reports whether group id is more than maxShardSets behind the
// newest, as kcp-go's discardShards reckons it.
func (d *fecDecoder) behind(f *fecCodec, id uint32) bool {
	return int32(d.newest*uint32(f.shards)-id*uint32(f.shards)) > maxShardSets*int32(f.shards)
}

// reconstruct rebuilds set's missing data shards, if any, and empties it
// (as kcp-go's does: its later shards start it again).
func (d *fecDecoder) reconstruct(f *fecCodec, set *shardSet) (recovered [][]byte) {
	maxlen, present := 0, 0
	for i, p := range set.pkts {
		if p != nil {
			maxlen = max(maxlen, len(p)-fecHeader)
			if i < f.data {
				present++
			}
		}
	}
	if present < f.data {
		for i, p := range set.pkts {
			switch {
			case p != nil:
				n := len(p) - fecHeader
				d.shards[i] = p[fecHeader : fecHeader+maxlen]
				clear(d.shards[i][n:])
			case i < f.data:
				d.shards[i] = getPacket()[:0]
			default:
				d.shards[i] = nil
			}
		}
		if err := f.dec.ReconstructData(d.shards); err == nil {
			for i := range f.data {
				if set.pkts[i] == nil {
					recovered = append(recovered, d.shards[i])
				}
			}
			atomic.AddUint64(&kcp.DefaultSnmp.FECRecovered, uint64(len(recovered)))
		} else {
			atomic.AddUint64(&kcp.DefaultSnmp.FECErrs, 1)
			for i := range f.data {
				if set.pkts[i] == nil {
					putPacket(d.shards[i])
				}
			}
		}
		clear(d.shards)
	}
	set.drop()
	return recovered
}

// discard drops the groups more than maxShardSets behind the newest.
func (d *fecDecoder) discard(f *fecCodec) {
	for id, set := range d.sets {
		if d.behind(f, id) {
			set.drop()
			delete(d.sets, id)
		}
	}
}

// release gives back every buffer d holds.
func (d *fecDecoder) release() {
	for _, set := range d.sets {
		set.drop()
	}
	clear(d.sets)
}

func (s *shardSet) drop() {
	for i, p := range s.pkts {
		if p != nil {
			putPacket(p[:cap(p)])
			s.pkts[i] = nil
		}
	}
	s.count = 0
}
