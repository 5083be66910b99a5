package main

import (
	"bytes"
	"net"
	"testing"
	"time"

	"github.com/udplab/udplab/internal/conntest"
	"github.com/udplab/udplab/link"
)

// hidden is a PacketConn that hides its file descriptor, as a socket on a
// platform without drop counters would: its socket drops are unknown.
type hidden struct{ net.PacketConn }

func loopback(t *testing.T) net.PacketConn {
	t.Helper()
	pc, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pc.Close() })
	return pc
}

// TestLinkReport checks the interval and summary lines against counts
// set up exactly: three datagrams of 100 bytes relayed, two refused, over
// an interval of two seconds, with socket drops that cannot be read.
func TestLinkReport(t *testing.T) {
	l, err := link.New(link.Spec{Seed: 1}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	server := loopback(t)
	dial := func() (net.PacketConn, error) {
		pc, err := net.ListenPacket("udp4", "127.0.0.1:0")
		return hidden{pc}, err
	}
	listen := loopback(t)
	p, err := link.NewProxyConn(hidden{listen}, server.LocalAddr(), dial, link.ProxyConfig{Link: l, MaxClients: 1, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	var out bytes.Buffer
	r := newLinkReport(&out, l, p)
	a, b := loopback(t), loopback(t)
	for _, c := range []net.PacketConn{a, a, a, b, b} {
		if _, err := c.WriteTo(make([]byte, 100), listen.LocalAddr()); err != nil {
			t.Fatal(err)
		}
		if c == a {
			conntest.WaitFor(t, func() bool { return p.Clients() == 1 }) // a comes first
		}
	}
	conntest.WaitFor(t, func() bool { return l.Stats(link.Up).Delivered == 3 && p.Refused() == 2 })
	r.interval(r.start.Add(2 * time.Second))
	open := p.Clients()
	p.Close()
	r.summary(open)
	want := []string{
		"[  0.00-  2.00 s] up   offered=3 delivered=3 link_drops=0 socket_drops=unknown pkt/s=1.5 bitrate=1.20kbit/s",
		"[  0.00-  2.00 s] down offered=0 delivered=0 link_drops=0 socket_drops=unknown pkt/s=0.0 bitrate=0.00kbit/s",
		"[  0.00-  2.00 s] clients=1 refused=2 expired=0",
		"summary up   offered=3 delivered=3 lost=0 queue_drops=0 limit_drops=0 mtu_drops=0 outage_drops=0 dup=0 corrupt=0 reordered=0 queue_high=0 bytes_in=300 bytes_out=300 socket_drops=unknown",
		"summary down offered=0 delivered=0 lost=0 queue_drops=0 limit_drops=0 mtu_drops=0 outage_drops=0 dup=0 corrupt=0 reordered=0 queue_high=0 bytes_in=0 bytes_out=0 socket_drops=unknown",
		"summary clients=1 refused=2 expired=0",
	}
	got := bytes.Split(bytes.TrimSpace(out.Bytes()), []byte("\n"))
	if len(got) != len(want) {
		t.Fatalf("report:\n%s\nwant %d lines", out.Bytes(), len(want))
	}
	for i := range want {
		if string(got[i]) != want[i] {
			t.Errorf("line %d:\n got %s\nwant %s", i, got[i], want[i])
		}
	}
}

// TestIntervalLateness: an interval line ends with the lateness of the
// packets the link held in it, and with nothing when it held none.
func TestIntervalLateness(t *testing.T) {
	l := link.Lateness{Count: 2, P50: 1500 * time.Nanosecond, P99: 2 * time.Millisecond, Max: 3*time.Millisecond + 499}
	if got, want := lateness(l), " late_p50=0.002ms late_p99=2.000ms late_max=3.000ms"; got != want {
		t.Errorf("lateness(%+v) = %q, want %q", l, got, want)
	}
	if got := lateness(link.Lateness{}); got != "" {
		t.Errorf("lateness of nothing timed = %q, want nothing", got)
	}
}

func TestCheckLoop(t *testing.T) {
	for _, c := range []struct {
		listen, to string
		loop       bool
	}{
		{"127.0.0.1:7000", "127.0.0.1:7000", true},
		{"127.0.0.1:7000", "127.0.0.1:07000", true},
		{"0.0.0.0:7000", "127.0.0.1:7000", true},
		{"[::]:7000", "[::1]:7000", true},
		{":7000", "127.0.0.1:7000", true},
		{":7000", "localhost:7000", true},
		{":7000", "127.0.0.1:7001", false},
		{"127.0.0.1:7000", "127.0.0.1:7001", false},
		{"127.0.0.1:7000", "127.0.0.2:7000", false},
		{"[::1]:7000", "127.0.0.1:7000", false},
	} {
		if err := checkLoop(c.listen, c.to); (err != nil) != c.loop {
			t.Errorf("checkLoop(%q, %q) = %v, want a loop: %v", c.listen, c.to, err, c.loop)
		}
	}
}

// TestSocketDropsText: a count is a number, N+ where it is a floor (but
// 0 stays 0: nothing was dropped), and unknown where the kernel does not
// say; an interval's difference of floors is a floor.
func TestSocketDropsText(t *testing.T) {
	for _, tt := range []struct {
		c    link.SocketDropCount
		want string
	}{
		{link.SocketDropCount{N: 5, Known: true}, "5"},
		{link.SocketDropCount{N: 5, Known: true, Floor: true}, "5+"},
		{link.SocketDropCount{N: 0, Known: true, Floor: true}, "0"},
		{link.SocketDropCount{N: 5, Floor: true}, "unknown"},
		{since(link.SocketDropCount{N: 9, Known: true, Floor: true}, link.SocketDropCount{N: 5, Known: true}), "4+"},
		{since(link.SocketDropCount{N: 9, Known: true}, link.SocketDropCount{N: 5}), "unknown"},
	} {
		if got := socketDrops(tt.c); got != tt.want {
			t.Errorf("socketDrops(%+v) = %q, want %q", tt.c, got, tt.want)
		}
	}
}
