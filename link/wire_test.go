package link

import (
	"net"
	"net/netip"
	"testing"
	"testing/synctest"
	"time"
)

// TestWireBytes: what the rate counts, as netem's packet_time_ns does.
func TestWireBytes(t *testing.T) {
	v4 := &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 9}
	v6 := &net.UDPAddr{IP: net.IPv6loopback, Port: 9}
	mapped := &net.UDPAddr{IP: net.ParseIP("::ffff:10.0.0.1"), Port: 9}
	for _, tt := range []struct {
		spec string
		size int
		addr net.Addr
		want int64
	}{
		{"rate=1mbit", 1000, v4, 1028},
		{"rate=1mbit", 1000, memAddr("x"), 1028},
		{"rate=1mbit", 1000, v6, 1048},
		{"rate=1mbit", 1000, mapped, 1028},
		{"rate=1mbit,overhead=14", 1000, v4, 1042},
		{"rate=1mbit,overhead=-28", 1000, v4, 1000},
		{"rate=1mbit,overhead=-2000", 1000, v4, 0},
		{"rate=1mbit,cellsize=48/5", 1000, v4, 22 * 53},       // 1028 bytes: 21.4 cells, so 22
		{"rate=1mbit,cellsize=48/5", 1028, v4, 22 * 53},       // 1056 bytes: exactly 22 cells
		{"rate=1mbit,cellsize=48/5", 1029, v4, 23 * 53},       // one byte over
		{"rate=1mbit,overhead=10,cellsize=48", 0, v6, 48 * 2}, // 58 bytes: 2 cells
		{"rate=1mbit,cellsize=10/-20", 1, v4, 0},
	} {
		s, err := Parse(tt.spec)
		if err != nil {
			t.Fatal(err)
		}
		if got := wireBytes(&s.Up, tt.size, tt.addr); got != tt.want {
			t.Errorf("wireBytes(%s, %d bytes to %v) = %d, want %d", tt.spec, tt.size, tt.addr, got, tt.want)
		}
	}
}

// TestRateCountsWire: through a link, the rate limiter spaces datagrams
// by their wire size: ATM cells with an Ethernet-sized overhead, and an
// IPv6 destination's 48 header bytes.
func TestRateCountsWire(t *testing.T) {
	for _, tt := range []struct {
		spec string
		to   string // the receiver's address
		wire int64  // bytes per 1000-byte datagram
	}{
		{"rate=1mbit", "server", 1028},
		{"rate=1mbit", "[::1]:9", 1048},
		{"rate=1mbit,overhead=14,cellsize=48/5", "server", 22 * 53}, // 1042 bytes in 22 cells of 53
	} {
		synctest.Test(t, func(t *testing.T) {
			l := newLink(t, tt.spec, nil)
			n := newMemNet()
			src, dst := n.listen("client"), n.listen(tt.to)
			out := l.Wrap(src, Up)
			t.Cleanup(func() { out.Close(); dst.Close() })
			var to net.Addr = dst.addr
			if tt.to != "server" {
				to = net.UDPAddrFromAddrPort(mustAddrPort(t, tt.to))
			}
			start := time.Now()
			for range 100 {
				if _, err := out.WriteTo(make([]byte, 1000), to); err != nil {
					t.Fatal(err)
				}
			}
			settle()
			var last time.Time
			for {
				pk, ok := dst.recv()
				if !ok {
					break
				}
				last = pk.at
			}
			per := time.Duration(float64(tt.wire*8) / 1e6 * float64(time.Second))
			if got, want := last.Sub(start), 100*per; got < want-100*time.Nanosecond || got > want+100*time.Nanosecond {
				t.Errorf("%s to %s: 100 datagrams took %v, want %v (%d wire bytes each)", tt.spec, tt.to, got, want, tt.wire)
			}
		})
	}
}

func mustAddrPort(t *testing.T, s string) netip.AddrPort {
	t.Helper()
	ap, err := netip.ParseAddrPort(s)
	if err != nil {
		t.Fatal(err)
	}
	return ap
}
