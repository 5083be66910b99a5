package reliable

import (
	"net"
	"net/netip"
	"sync"

	"github.com/udplab/udplab/internal/batch"
)

// maxBatch is how many datagrams one read or write system call moves at
// most: kcp-go's maxBatchSize.
const maxBatch = 64

// packetIO is the listener's socket as it reads and writes it, through
// internal/batch: in batches (recvmmsg, sendmmsg) on a UDP socket, as
// kcp-go's listener reads (readloop_linux.go) and its sessions write
// (tx_linux.go), and one datagram at a time on any other PacketConn (an
// impaired link, an in-memory conn, a test's spoofing conn, which must see
// every datagram through its own methods). One goroutine reads; many may
// write at once, each with a Writer of its own from the pool.
type packetIO struct {
	r       *batch.Reader
	writers sync.Pool // *batch.Writer
}

func newPacketIO(pc net.PacketConn) *packetIO {
	p := &packetIO{r: batch.NewReader(pc, maxBatch, maxSegment)}
	p.writers.New = func() any { return batch.NewWriter(pc, maxBatch) }
	return p
}

// read returns what arrived, at least one datagram, valid until the next
// read.
func (p *packetIO) read() ([]batch.Message, error) { return p.r.Read() }

// write sends every one of pkts to s's peer; errors are the peer's
// problem (KCP retransmits), so it reports none.
func (p *packetIO) write(pkts [][]byte, to netip.AddrPort, addr net.Addr) {
	w := p.writers.Get().(*batch.Writer)
	defer p.writers.Put(w)
	for _, b := range pkts {
		if !w.Add(b, to, addr) {
			w.Flush()
		}
	}
	w.Flush()
}

// sourceAddr is a datagram's source as the gate and sessions take it.
func sourceAddr(m *batch.Message) net.Addr {
	if m.NetAddr != nil {
		return m.NetAddr
	}
	return net.UDPAddrFromAddrPort(m.Addr)
}
