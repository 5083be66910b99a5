package netstack

import (
	"crypto/sha256"
	"io"
	"net"
	"sync"
	"testing"
	"time"

	"gvisor.dev/gvisor/pkg/tcpip/header"

	"github.com/udplab/udplab/link"
	"github.com/udplab/udplab/link/linktest"
)

// holeConn is a dialing host's PacketConn that loses the first
// transmission of each TCP segment holding one of the stream offsets in
// drop, and closes resent when the segment holding drop[0] goes out a
// second time.
type holeConn struct {
	net.PacketConn
	drop   []int
	resent chan struct{}

	mu      sync.Mutex
	isn     uint32
	started bool
	sent    map[int]int // transmissions of the segment holding each offset
}

func newHoleConn(pc net.PacketConn, drop ...int) *holeConn {
	return &holeConn{PacketConn: pc, drop: drop, resent: make(chan struct{}), sent: make(map[int]int)}
}

func (h *holeConn) WriteTo(b []byte, to net.Addr) (int, error) {
	if h.lose(b) {
		return len(b), nil
	}
	return h.PacketConn.WriteTo(b, to)
}

// lose reports whether the IPv4 packet b is to be lost.
func (h *holeConn) lose(b []byte) bool {
	ip := header.IPv4(b)
	tcp := header.TCP(ip.Payload())
	h.mu.Lock()
	defer h.mu.Unlock()
	if tcp.Flags().Contains(header.TCPFlagSyn) {
		h.isn, h.started = tcp.SequenceNumber(), true
	}
	n := len(tcp) - int(tcp.DataOffset())
	if !h.started || n == 0 {
		return false
	}
	start := int(tcp.SequenceNumber() - h.isn - 1)
	lose := false
	for i, o := range h.drop {
		if o < start || o >= start+n {
			continue
		}
		h.sent[o]++
		lose = lose || h.sent[o] == 1
		if i == 0 && h.sent[o] == 2 {
			close(h.resent)
		}
	}
	return lose
}

// TestTailAfterRecovery loses two segments of a stream, then, once the
// first is sent again (recovery has begun), the segment holding the
// stream's last bytes, the FIN behind it getting through. With the
// stack's RACK the sender then counts nothing in flight, re-sends only
// the FIN as its tail loss probe, and never arms the retransmission
// timer: the last bytes never arrive (see Config.DisableRACK). Without
// RACK the stream must arrive whole, up to its FIN.
func TestTailAfterRecovery(t *testing.T) {
	const (
		seg   = 1300     // under the MSS: offsets this far apart lie in different segments
		first = 60 * seg // written at once; the holes are 10 and 20 segments before its end
		tail  = 1000     // written once recovery has begun
	)
	l := linktest.New(t, "delay=20ms")
	spc, cpc := udp(t), udp(t)
	type read struct {
		n   int64
		err error
		sum [32]byte
	}
	got := make(chan read, 1)
	listen(t, l.Wrap(spc, link.Down), func(c net.Conn) {
		h := sha256.New()
		n, err := io.Copy(h, c) // up to the FIN, or the connection's hangGuard deadline
		got <- read{n, err, [32]byte(h.Sum(nil))}
	})
	hc := newHoleConn(l.Wrap(cpc, link.Up), 40*seg, 50*seg, first+tail/2)
	c := dialConfig(t, hc, spc.LocalAddr(), &Config{DisableRACK: true})
	data := payload(8, first+tail)
	if _, err := c.Write(data[:first]); err != nil {
		t.Fatal(err)
	}
	select {
	case <-hc.resent:
	case <-time.After(hangGuard):
		t.Fatal("the first hole was never sent again")
	}
	if _, err := c.Write(data[first:]); err != nil {
		t.Fatal(err)
	}
	if err := c.CloseWrite(); err != nil {
		t.Fatal(err)
	}
	select {
	case r := <-got:
		if r.err != nil {
			t.Fatalf("the server read %d of %d bytes, then %v; client %+v", r.n, len(data), r.err, c.Stats())
		}
		if r.sum != sha256.Sum256(data) {
			t.Fatalf("the server read %d bytes, not the %d sent", r.n, len(data))
		}
	case <-time.After(2 * hangGuard):
		t.Fatalf("the server never read the stream's end; client %+v", c.Stats())
	}
	hc.mu.Lock()
	defer hc.mu.Unlock()
	for _, o := range hc.drop {
		if hc.sent[o] < 2 {
			t.Errorf("the segment holding offset %d went out %d times, want a loss and a retransmission", o, hc.sent[o])
		}
	}
}
