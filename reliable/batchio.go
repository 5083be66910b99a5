package reliable

import (
	"net"
	"sync"

	"golang.org/x/net/ipv4"
	"golang.org/x/net/ipv6"
)

// maxBatch is how many datagrams one read or write system call moves at
// most: kcp-go's maxBatchSize.
const maxBatch = 64

// packetIO is the listener's socket as it reads and writes it: in batches
// (recvmmsg, sendmmsg) on a UDP socket, one datagram at a time on any
// other PacketConn. Many goroutines may write at once; one reads.
type packetIO interface {
	// read fills ms with what arrived, at least one datagram, and
	// returns how many.
	read(ms []rxPacket) (int, error)
	// write sends every one of pkts to addr; errors are the peer's
	// problem (KCP retransmits), so it reports none.
	write(pkts [][]byte, addr net.Addr)
}

// rxPacket is one datagram read: its buffer (of maxSegment bytes), its
// length and its source.
type rxPacket struct {
	buf  []byte
	n    int
	addr net.Addr
}

func newRxPackets() []rxPacket {
	ms := make([]rxPacket, maxBatch)
	for i := range ms {
		ms[i].buf = make([]byte, maxSegment)
	}
	return ms
}

// newPacketIO returns batched I/O for a *net.UDPConn, and one datagram at a
// time for anything else (an impaired link, an in-memory conn, a test's
// spoofing conn, which must see every datagram through its own methods).
func newPacketIO(pc net.PacketConn) packetIO {
	u, ok := pc.(*net.UDPConn)
	if !ok {
		return singleIO{pc}
	}
	b := &batchIO{}
	if a, ok := u.LocalAddr().(*net.UDPAddr); ok && a.IP.To4() != nil {
		p := ipv4.NewPacketConn(u)
		b.readBatch, b.writeBatch = p.ReadBatch, p.WriteBatch
	} else {
		p := ipv6.NewPacketConn(u)
		b.readBatch, b.writeBatch = p.ReadBatch, p.WriteBatch
	}
	b.scratch.New = func() any { return newTxScratch() }
	return b
}

// singleIO is packetIO one datagram at a time.
type singleIO struct{ pc net.PacketConn }

func (s singleIO) read(ms []rxPacket) (int, error) {
	n, addr, err := s.pc.ReadFrom(ms[0].buf)
	if err != nil {
		return 0, err
	}
	ms[0].n, ms[0].addr = n, addr
	return 1, nil
}

func (s singleIO) write(pkts [][]byte, addr net.Addr) {
	for _, p := range pkts {
		s.pc.WriteTo(p, addr)
	}
}

// batchIO is packetIO over x/net's ReadBatch and WriteBatch, as kcp-go's
// listener reads (readloop_linux.go) and its sessions write (tx_linux.go).
type batchIO struct {
	readBatch  func([]ipv4.Message, int) (int, error)
	writeBatch func([]ipv4.Message, int) (int, error)
	rx         []ipv4.Message // the reader's own
	scratch    sync.Pool      // *txScratch, one per writer at a time
}

type txScratch struct {
	msgs []ipv4.Message
	bufs [][]byte // msgs[i].Buffers is bufs[i:i+1]
}

func newTxScratch() *txScratch {
	t := &txScratch{msgs: make([]ipv4.Message, maxBatch), bufs: make([][]byte, maxBatch)}
	for i := range t.msgs {
		t.msgs[i].Buffers = t.bufs[i : i+1]
	}
	return t
}

func (b *batchIO) read(ms []rxPacket) (int, error) {
	if b.rx == nil {
		b.rx = make([]ipv4.Message, len(ms))
		for i := range b.rx {
			b.rx[i].Buffers = [][]byte{ms[i].buf}
		}
	}
	n, err := b.readBatch(b.rx, 0)
	if err != nil {
		return 0, err
	}
	for i := range n {
		ms[i].n, ms[i].addr = b.rx[i].N, b.rx[i].Addr
	}
	return n, nil
}

func (b *batchIO) write(pkts [][]byte, addr net.Addr) {
	t := b.scratch.Get().(*txScratch)
	defer b.scratch.Put(t)
	for len(pkts) > 0 {
		k := min(len(pkts), maxBatch)
		for i := range k {
			t.bufs[i], t.msgs[i].Addr = pkts[i], addr
		}
		sent, err := b.writeBatch(t.msgs[:k], 0)
		if err != nil && sent <= 0 {
			sent = 1 // drop the datagram that failed; KCP retransmits
		}
		pkts = pkts[sent:]
	}
	clear(t.bufs)
}
