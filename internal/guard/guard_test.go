package guard

import (
	"net"
	"net/netip"
	"testing"

	"github.com/udplab/udplab/internal/leakcheck"
)

func TestMain(m *testing.M) { leakcheck.VerifyTestMain(m) }

func TestSources(t *testing.T) {
	tests := []struct {
		src                  string
		bound, all, lowPorts bool // allowed by a socket at 127.0.0.1:6000, 0.0.0.0:6000, and with low ports
	}{
		{"127.0.0.1:40000", true, true, true},
		{"127.0.0.1:6000", false, false, false}, // the server itself
		{"127.0.0.2:6000", true, false, true},   // loopback: the wildcard socket gets it too
		{"[::ffff:127.0.0.1]:6000", false, false, false},
		{"127.0.0.1:53", false, false, true}, // DNS
		{"127.0.0.1:1023", false, false, true},
		{"127.0.0.1:1024", true, true, true},
		{"192.0.2.1:6000", true, true, true}, // not this host's
	}
	for _, c := range []struct {
		name  string
		local *net.UDPAddr
		low   bool
		want  func(i int) bool
	}{
		{"bound", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 6000}, false, func(i int) bool { return tests[i].bound }},
		{"wildcard", &net.UDPAddr{IP: net.IPv4zero, Port: 6000}, false, func(i int) bool { return tests[i].all }},
		{"low ports allowed", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 6000}, true, func(i int) bool { return tests[i].lowPorts }},
	} {
		s := NewSources(c.local, c.low)
		for i, tt := range tests {
			if got := s.Allow(AddrPort(nil, netip.MustParseAddrPort(tt.src))); got != c.want(i) {
				t.Errorf("%s: Allow(%s) = %v, want %v", c.name, tt.src, got, c.want(i))
			}
		}
		if c.name == "bound" {
			if loops, low := s.Dropped(); loops != 2 || low != 2 {
				t.Errorf("bound: Dropped() = %d loops, %d low ports; want 2, 2", loops, low)
			}
		}
		if !s.Allow(netip.AddrPort{}) {
			t.Errorf("%s: Allow(invalid) = false, want true: an in-memory source is not an IP source", c.name)
		}
		s.Close()
	}
}

// TestSourcesOtherListeners: a datagram from another listener of the
// process is dropped too (serve's raw echo and kcp's probe would answer
// each other), until that listener closes.
func TestSourcesOtherListeners(t *testing.T) {
	kcp := NewSources(&net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 6001}, false)
	defer kcp.Close()
	raw := NewSources(&net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 6000}, false)
	from := netip.MustParseAddrPort("127.0.0.1:6000")
	if kcp.Allow(from) {
		t.Error("kcp's listener answers raw's")
	}
	raw.Close()
	if !kcp.Allow(from) {
		t.Error("kcp's listener still refuses raw's address once raw has closed")
	}
}

func TestAddrPort(t *testing.T) {
	want := netip.MustParseAddrPort("127.0.0.1:9")
	if got := AddrPort(&net.UDPAddr{IP: net.IPv4(127, 0, 0, 1).To16(), Port: 9}, netip.AddrPort{}); got != want {
		t.Errorf("AddrPort(UDPAddr) = %v, want %v", got, want)
	}
	if got := AddrPort(nil, netip.MustParseAddrPort("[::ffff:127.0.0.1]:9")); got != want {
		t.Errorf("AddrPort(mapped) = %v, want %v", got, want)
	}
}

func TestCapped(t *testing.T) {
	v4 := netip.MustParseAddrPort("127.0.0.1:40000")
	v6 := netip.MustParseAddrPort("[::1]:40000")
	var c Capped
	for _, tt := range []struct {
		in, out int
		ap      netip.AddrPort
		want    bool
	}{
		{1, 9, v4, true},    // "Hello a!\n" to "a": 37 bytes for 29
		{1, 28, v4, true},   // a ctime stamp: 56 for 29
		{1, 59, v4, true},   // 87 = 3 x 29
		{1, 60, v4, false},  // 88
		{0, 56, v4, true},   // 84 = 3 x 28
		{0, 57, v4, false},  // 85
		{1, 99, v6, true},   // 147 = 3 x 49
		{1, 100, v6, false}, // 148
	} {
		if got := c.Allow(tt.in, tt.out, tt.ap); got != tt.want {
			t.Errorf("Allow(%d, %d, %v) = %v, want %v", tt.in, tt.out, tt.ap, got, tt.want)
		}
	}
	if d, b := c.Counts(); d != 3 || b != 88+85+148 {
		t.Errorf("Counts() = %d, %d; want 3 replies, %d bytes", d, b, 88+85+148)
	}
}
