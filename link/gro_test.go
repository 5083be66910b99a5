package link

import (
	"bytes"
	"net"
	"testing"
	"time"

	"github.com/udplab/udplab/internal/batch"
	"github.com/udplab/udplab/internal/conntest"
	"github.com/udplab/udplab/internal/sockstat"
)

// groFlood sends 50 runs of 64 equal datagrams (as GSO, where the kernel
// has it) to a proxy whose listening socket has a 64 KiB buffer, and
// returns how many datagrams were sent once the proxy has read or
// dropped every one.
func groFlood(t *testing.T, cfg ProxyConfig) (p *Proxy, l *Link, sent uint64) {
	t.Helper()
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
	l = newLink(t, "", nil)
	to := srv.LocalAddr().(*net.UDPAddr)
	cfg.Link = l
	p, err = NewProxyConn(listen, to, func() (net.PacketConn, error) { return dialUpstream(to) }, cfg)
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
	return p, l, runs*64 + markAll(t, func(b []byte) { c.Send(t, b) }, srv)
}

// markAll sends numbered one-byte markers with send until the latest
// one sent reaches rx, discarding what rx reads before it, and returns
// how many it sent. A socket keeps datagrams in order, so once the
// latest marker has passed, the proxy has read or dropped everything
// sent before it; an earlier marker, slow past a read's wait, says
// nothing of those sent after it.
func markAll(t *testing.T, send func([]byte), rx *net.UDPConn) (sent uint64) {
	t.Helper()
	b := make([]byte, 2048)
	for sent < 100 {
		send([]byte{byte(sent)})
		sent++
		rx.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
		for {
			n, _, err := rx.ReadFrom(b)
			if err != nil {
				break // the marker was dropped, or is slow: another
			}
			if n == 1 && b[0] == byte(sent-1) {
				return sent
			}
		}
	}
	t.Fatalf("none of %d markers came through the proxy", sent)
	return sent
}

// kernelHasGRO asks the kernel, not the proxy under test, whether a
// loopback socket can take coalesced runs.
func kernelHasGRO(t *testing.T) bool {
	t.Helper()
	c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	return batch.NewReader(c, 1, maxDatagram).EnableGRO()
}

// TestProxySocketDropsPerDatagram: with ExactDrops, a client that sends
// runs of equal datagrams (as GSO) overflows the proxy's small listening
// socket, and every datagram sent is either read by the link or counted
// as a socket drop: none is lost uncounted, and the count is exact.
func TestProxySocketDropsPerDatagram(t *testing.T) {
	p, l, sent := groFlood(t, ProxyConfig{ExactDrops: true})
	if p.listenGRO {
		t.Fatal("GRO on with ExactDrops")
	}
	c := p.SocketDrops(Up)
	if l.Stats(Up).Offered+c.N != sent || c.Floor || !c.Known {
		t.Errorf("%d sent, %d offered to the link and socket drops %+v; want the sum, exact", sent, l.Stats(Up).Offered, c)
	}
}

// TestProxySocketDropsFloor: by default the proxy takes coalesced runs
// (GRO), and its socket counts a run it drops once. Then the count says
// it is a floor, and it is one: the datagrams sent lie between the link's
// and the count's sum and that with every drop a run of 64 (the most
// conntest.Bursts puts in one GSO datagram; the kernel allows 128). With no drop
// it is exact.
func TestProxySocketDropsFloor(t *testing.T) {
	if !kernelHasGRO(t) {
		t.Skip("the kernel has no UDP GRO")
	}
	p, l, sent := groFlood(t, ProxyConfig{})
	if !p.listenGRO {
		t.Fatal("the kernel has UDP GRO, but the proxy's listening socket does not take runs")
	}
	c, offered := p.SocketDrops(Up), l.Stats(Up).Offered
	t.Logf("%d sent, %d offered to the link, socket drops %+v", sent, offered, c)
	switch {
	case !c.Known:
		t.Errorf("socket drops unknown on Linux")
	case c.N == 0 && (c.Floor || offered != sent):
		t.Errorf("no socket drop: %d of %d offered, floor %v; want all, exact", offered, sent, c.Floor)
	case c.N > 0 && (!c.Floor || offered+c.N > sent || offered+64*c.N < sent):
		t.Errorf("%d sent, %d offered to the link, socket drops %+v: want a floor, and the sent between %d and %d",
			sent, offered, c, offered+c.N, offered+64*c.N)
	}
}

// TestSocketDropCount: a sum of sockets' counts is a floor where one of
// them took runs and dropped, and unknown where one is unknown.
func TestSocketDropCount(t *testing.T) {
	for _, tt := range []struct {
		add  [][3]any // n, known, gro
		want SocketDropCount
	}{
		{nil, SocketDropCount{Known: true}},
		{[][3]any{{uint64(3), true, false}, {uint64(0), true, true}}, SocketDropCount{N: 3, Known: true}},
		{[][3]any{{uint64(3), true, false}, {uint64(2), true, true}}, SocketDropCount{N: 5, Known: true, Floor: true}},
		{[][3]any{{uint64(3), true, false}, {uint64(0), false, false}}, SocketDropCount{N: 3}},
	} {
		c := SocketDropCount{Known: true}
		for _, a := range tt.add {
			c.add(a[0].(uint64), a[1].(bool), a[2].(bool))
		}
		if c != tt.want {
			t.Errorf("adding %v: %+v, want %+v", tt.add, c, tt.want)
		}
	}
}

// TestProxySocketDropsFloorDown: the upstream sockets take runs too, so
// a server's GSO replies that overflow one make SocketDrops(Down) a floor.
func TestProxySocketDropsFloorDown(t *testing.T) {
	if !kernelHasGRO(t) {
		t.Skip("the kernel has no UDP GRO")
	}
	srv, client := bigConn(t), bigConn(t)
	listen := bigConn(t)
	if !sockstat.Of(listen).Known() {
		t.Skip("socket drops cannot be read here")
	}
	l := newLink(t, "", nil)
	to := srv.LocalAddr().(*net.UDPAddr)
	dial := func() (net.PacketConn, error) {
		up, err := dialUpstream(to)
		if err == nil {
			up.(*net.UDPConn).SetReadBuffer(64 << 10)
		}
		return up, err
	}
	p, err := NewProxyConn(listen, to, dial, ProxyConfig{Link: l})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	if _, err := client.WriteTo([]byte("hi"), p.Addr()); err != nil {
		t.Fatal(err)
	}
	b := make([]byte, 2048)
	srv.SetReadDeadline(time.Now().Add(conntest.Timeout))
	_, upstream, err := srv.ReadFromUDPAddrPort(b)
	if err != nil {
		t.Fatal(err)
	}
	w := batch.NewWriter(srv, 64)
	rep := bytes.Repeat([]byte{'x'}, 1000)
	const runs = 50
	for range runs {
		for range 64 {
			w.Add(rep, upstream, nil)
		}
		if _, err := w.Flush(); err != nil {
			t.Fatal(err)
		}
	}
	sent := runs*64 + markAll(t, func(m []byte) { srv.WriteToUDPAddrPort(m, upstream) }, client)
	c, offered := p.SocketDrops(Down), l.Stats(Down).Offered
	t.Logf("%d sent, %d offered to the link, socket drops %+v", sent, offered, c)
	if c.N == 0 && c.Known && !c.Floor && offered == sent {
		return // the proxy kept up this time: nothing dropped, and the count exact
	}
	if !c.Known || !c.Floor || offered+c.N > sent || offered+64*c.N < sent {
		t.Errorf("%d sent, %d offered to the link, socket drops %+v: want a floor, and the sent between %d and %d",
			sent, offered, c, offered+c.N, offered+64*c.N)
	}
}
