package link

import (
	"bytes"
	"net"
	"testing"
	"time"

	"github.com/udplab/udplab/internal/conntest"
	"github.com/udplab/udplab/internal/sockstat"
)

// TestProxySocketDropsPerDatagram: a client that sends runs of equal
// datagrams (as GSO, where the kernel has it) overflows the proxy's small
// listening socket. Every datagram sent is either read by the link or
// counted as a socket drop: none is lost uncounted. A socket taking
// coalesced runs (UDP GRO) would drop a whole run as one.
func TestProxySocketDropsPerDatagram(t *testing.T) {
	listen, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	listen.SetReadBuffer(64 << 10)
	if !sockstat.Of(listen).Known() {
		listen.Close()
		t.Skip("socket drops cannot be read here")
	}
	srv := bigConn(t)
	l := newLink(t, "", nil)
	to := srv.LocalAddr().(*net.UDPAddr)
	p, err := NewProxyConn(listen, to, func() (net.PacketConn, error) { return dialUpstream(to) }, ProxyConfig{Link: l})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	c := conntest.NewBursts(t, p.Addr(), 64)
	reqs := make([][]byte, 64)
	for i := range reqs {
		reqs[i] = bytes.Repeat([]byte{'x'}, 1000)
	}
	const runs = 50
	for range runs {
		c.Send(t, reqs...)
	}
	const sent = runs * 64
	accounted := func() uint64 {
		drops, _ := p.SocketDrops(Up)
		return l.Stats(Up).Offered + drops
	}
	for deadline := time.Now().Add(conntest.Timeout); accounted() < sent && time.Now().Before(deadline); {
		time.Sleep(2 * time.Millisecond) // the proxy reads what the socket kept
	}
	if accounted() != sent {
		drops, _ := p.SocketDrops(Up)
		t.Errorf("%d sent, %d offered to the link and %d socket drops", sent, l.Stats(Up).Offered, drops)
	}
}
