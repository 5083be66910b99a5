package batch

import (
	"bytes"
	"errors"
	"net"
	"net/netip"
	"os"
	"testing"
	"time"

	"github.com/udplab/udplab/internal/leakcheck"
	"github.com/udplab/udplab/internal/udpsock"
)

func TestMain(m *testing.M) { leakcheck.VerifyTestMain(m) }

// listen binds network on addr for the test, with buffers big enough to
// hold a batch of the largest datagrams; it skips where addr cannot bind.
func listen(t testing.TB, network, addr string) *net.UDPConn {
	t.Helper()
	c, err := net.ListenUDP(network, net.UDPAddrFromAddrPort(netip.MustParseAddrPort(addr)))
	if err != nil {
		t.Skipf("cannot bind %s: %v", addr, err)
	}
	c.SetReadBuffer(4 << 20)
	c.SetWriteBuffer(4 << 20)
	t.Cleanup(func() { c.Close() })
	return c
}

func apOf(pc net.PacketConn) netip.AddrPort { return udpsock.AddrPort(pc.LocalAddr()) }

// wrapped hides the *net.UDPConn, as an impaired PacketConn does.
type wrapped struct{ net.PacketConn }

// payload is a datagram of size bytes that says which one it is.
func payload(size, seed int) []byte {
	b := make([]byte, size)
	for i := range b {
		b[i] = byte(seed + i*7)
	}
	return b
}

// readN reads until want datagrams came, checking each against the next
// of want, and their source.
func readN(t *testing.T, r *Reader, pc net.PacketConn, want [][]byte, from netip.AddrPort) {
	t.Helper()
	pc.SetReadDeadline(time.Now().Add(10 * time.Second))
	for len(want) > 0 {
		ms, err := r.Read()
		if err != nil {
			t.Fatalf("Read: %v (%d datagrams still to come)", err, len(want))
		}
		if len(ms) == 0 {
			t.Fatal("Read returned no datagram and no error")
		}
		for _, m := range ms {
			if !bytes.Equal(m.Buf, want[0]) {
				t.Fatalf("read %d bytes, want the %d-byte datagram sent next", len(m.Buf), len(want[0]))
			}
			if m.Addr != from {
				t.Fatalf("source %v, want %v", m.Addr, from)
			}
			want = want[1:]
		}
	}
}

// sizes is every size up to 1500 and a sample up to the largest.
func sizes() []int {
	var s []int
	for n := 0; n <= 1500; n++ {
		s = append(s, n)
	}
	for n := 1501; n < 65507; n = n*3/2 + 1 {
		s = append(s, n)
	}
	return append(s, 65507)
}

// TestEverySize sends every size through a Writer to a Reader, on IPv4
// and IPv6, batched and one at a time.
func TestEverySize(t *testing.T) {
	for _, fam := range []struct{ network, addr string }{{"udp4", "127.0.0.1:0"}, {"udp6", "[::1]:0"}} {
		for _, wrap := range []bool{false, true} {
			name := fam.network
			if wrap {
				name += "/one-at-a-time"
			}
			t.Run(name, func(t *testing.T) {
				src, dst := listen(t, fam.network, fam.addr), listen(t, fam.network, fam.addr)
				var spc, dpc net.PacketConn = src, dst
				if wrap {
					spc, dpc = wrapped{src}, wrapped{dst}
				}
				w, r := NewWriter(spc, 16), NewReader(dpc, 16, 64<<10)
				all := sizes()
				for len(all) > 0 {
					k := min(len(all), 16)
					var want [][]byte
					for _, n := range all[:k] {
						b := payload(n, n)
						want = append(want, b)
						w.Add(b, apOf(dst), nil)
					}
					if _, err := w.Flush(); err != nil {
						t.Fatalf("Flush: %v", err)
					}
					readN(t, r, dst, want, apOf(src))
					all = all[k:]
				}
			})
		}
	}
}

// TestReadCutShort: with more queued than a batch holds, reads take a
// batch at most, and every datagram comes, in order.
func TestReadCutShort(t *testing.T) {
	src, dst := listen(t, "udp4", "127.0.0.1:0"), listen(t, "udp4", "127.0.0.1:0")
	w, r := NewWriter(src, 64), NewReader(dst, 4, 2048)
	var want [][]byte
	for i := range 50 {
		b := payload(100, i)
		want = append(want, b)
		w.Add(b, apOf(dst), nil)
	}
	if _, err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(10 * time.Millisecond) // let them all queue; the check below holds either way
	dst.SetReadDeadline(time.Now().Add(10 * time.Second))
	for len(want) > 0 {
		ms, err := r.Read()
		if err != nil {
			t.Fatal(err)
		}
		if len(ms) > 4 {
			t.Fatalf("Read returned %d datagrams, want at most the batch of 4", len(ms))
		}
		for _, m := range ms {
			if !bytes.Equal(m.Buf, want[0]) {
				t.Fatalf("datagram out of order: got seed %d, want %d", m.Buf[0], want[0][0])
			}
			want = want[1:]
		}
	}
}

// TestWriteErrorOnOne: a message the kernel refuses (too large for a
// datagram) fails alone; those before it and after it go, in order. The
// kernel stops the batch at it, so the rest is written from there.
func TestWriteErrorOnOne(t *testing.T) {
	for _, wrap := range []bool{false, true} {
		src, dst := listen(t, "udp4", "127.0.0.1:0"), listen(t, "udp4", "127.0.0.1:0")
		var spc net.PacketConn = src
		if wrap {
			spc = wrapped{src}
		}
		w, r := NewWriter(spc, 8), NewReader(dst, 8, 64<<10)
		var want [][]byte
		for i := range 10 { // more than a batch: the queue grows, and goes in two calls
			b := payload(10+i, i)
			if i == 3 || i == 8 {
				b = make([]byte, 70000)
			} else {
				want = append(want, b)
			}
			w.Add(b, apOf(dst), nil)
		}
		ms, err := w.Flush()
		if err == nil {
			t.Fatal("Flush of a batch with too large datagrams: no error")
		}
		for i, m := range ms {
			if failed := m.Err != nil; failed != (i == 3 || i == 8) {
				t.Errorf("wrapped=%v: message %d: Err = %v", wrap, i, m.Err)
			}
		}
		readN(t, r, dst, want, apOf(src))
	}
}

// TestSources: each datagram carries its own source, from several
// senders, and a reply to that source arrives; an IPv4 client of a
// dual-stack socket is seen unmapped and answered mapped.
func TestSources(t *testing.T) {
	srv := listen(t, "udp", "[::]:0")
	r, w := NewReader(srv, 8, 2048), NewWriter(srv, 8)
	port := apOf(srv).Port()
	c4 := listen(t, "udp4", "127.0.0.1:0")
	c6 := listen(t, "udp6", "[::1]:0")
	for _, c := range []*net.UDPConn{c4, c6, c4} {
		to := netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), port)
		if c == c6 {
			to = netip.AddrPortFrom(netip.IPv6Loopback(), port)
		}
		if _, err := c.WriteToUDPAddrPort([]byte(c.LocalAddr().String()), to); err != nil {
			t.Fatal(err)
		}
		srv.SetReadDeadline(time.Now().Add(10 * time.Second))
		ms, err := r.Read()
		if err != nil {
			t.Fatal(err)
		}
		if ms[0].Addr != apOf(c) {
			t.Errorf("source %v, want %v", ms[0].Addr, apOf(c))
		}
		w.Add(append([]byte("re "), ms[0].Buf...), ms[0].Addr, nil)
		if _, err := w.Flush(); err != nil {
			t.Fatal(err)
		}
		buf := make([]byte, 100)
		c.SetReadDeadline(time.Now().Add(10 * time.Second))
		n, err := c.Read(buf)
		if err != nil || string(buf[:n]) != "re "+c.LocalAddr().String() {
			t.Errorf("reply %q, %v", buf[:n], err)
		}
	}
}

// TestConnected: with no address, a Writer sends to a connected socket's
// peer.
func TestConnected(t *testing.T) {
	dst := listen(t, "udp4", "127.0.0.1:0")
	c, err := net.DialUDP("udp4", nil, dst.LocalAddr().(*net.UDPAddr))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	for _, pc := range []net.PacketConn{c, wrapped{c}} {
		w := NewWriter(pc, 4)
		w.Add([]byte("a"), netip.AddrPort{}, nil)
		w.Add([]byte("b"), netip.AddrPort{}, nil)
		if _, err := w.Flush(); err != nil && pc == net.PacketConn(c) {
			t.Fatal(err)
		}
	}
	readN(t, NewReader(dst, 4, 64), dst, [][]byte{[]byte("a"), []byte("b")}, apOf(c))
}

// TestFallbackNetAddr: over a PacketConn that is not a *net.UDPConn, the
// source comes as the net.Addr it gave too.
func TestFallbackNetAddr(t *testing.T) {
	src, dst := listen(t, "udp4", "127.0.0.1:0"), listen(t, "udp4", "127.0.0.1:0")
	src.WriteTo([]byte("x"), dst.LocalAddr())
	dst.SetReadDeadline(time.Now().Add(10 * time.Second))
	ms, err := NewReader(wrapped{dst}, 4, 64).Read()
	if err != nil {
		t.Fatal(err)
	}
	if len(ms) != 1 || ms[0].NetAddr == nil || ms[0].NetAddr.String() != src.LocalAddr().String() {
		t.Errorf("read %+v, want one datagram from %v", ms, src.LocalAddr())
	}
}

// TestClosedAndDeadline: errors match net.ErrClosed after Close and
// os.ErrDeadlineExceeded past a read deadline.
func TestClosedAndDeadline(t *testing.T) {
	for _, wrap := range []bool{false, true} {
		c := listen(t, "udp4", "127.0.0.1:0")
		var pc net.PacketConn = c
		if wrap {
			pc = wrapped{c}
		}
		r, w := NewReader(pc, 4, 64), NewWriter(pc, 4)
		c.SetReadDeadline(time.Now())
		if _, err := r.Read(); !errors.Is(err, os.ErrDeadlineExceeded) {
			t.Errorf("Read past the deadline: %v", err)
		}
		c.Close()
		if _, err := r.Read(); !errors.Is(err, net.ErrClosed) {
			t.Errorf("Read after Close: %v", err)
		}
		w.Add([]byte("x"), apOf(c), nil)
		if ms, err := w.Flush(); !errors.Is(err, net.ErrClosed) || !errors.Is(ms[0].Err, net.ErrClosed) {
			t.Errorf("Flush after Close: %v", err)
		}
	}
}

// TestSteadyStateAllocatesNothing locks both directions' batched paths at
// zero allocations.
func TestSteadyStateAllocatesNothing(t *testing.T) {
	for _, fam := range []struct{ network, addr string }{{"udp4", "127.0.0.1:0"}, {"udp6", "[::1]:0"}} {
		src, dst := listen(t, fam.network, fam.addr), listen(t, fam.network, fam.addr)
		w, r := NewWriter(src, 8), NewReader(dst, 8, 64<<10)
		r.EnableGRO() // where the kernel has them: coalesced runs and timestamps cost nothing either
		r.EnableTimestamps()
		b, to := payload(100, 1), apOf(dst)
		dst.SetReadDeadline(time.Now().Add(time.Minute))
		allocs := testing.AllocsPerRun(200, func() {
			for range 8 {
				w.Add(b, to, nil)
			}
			if _, err := w.Flush(); err != nil {
				t.Fatal(err)
			}
			for got := 0; got < 8; {
				ms, err := r.Read()
				if err != nil {
					t.Fatal(err)
				}
				got += len(ms)
			}
		})
		if allocs != 0 {
			t.Errorf("%s: a batch written and read allocated %v times, want 0", fam.network, allocs)
		}
	}
}

// TestStampsNeverGoBack: a datagram read after another is never given an
// earlier arrival. The kernel stamps the first datagrams when they are
// read until stamping is on for the system, and those can seem to have
// come after the ones behind them in the queue.
func TestStampsNeverGoBack(t *testing.T) {
	var r Reader
	t0 := time.Now()
	for i, c := range []struct{ at, want time.Time }{
		{t0, t0},
		{t0.Add(-time.Millisecond), t0}, // stamped as it came, before the first was read
		{t0.Add(time.Millisecond), t0.Add(time.Millisecond)},
	} {
		if got := r.notBefore(c.at); !got.Equal(c.want) {
			t.Errorf("datagram %d: At = %v, want %v", i, got.Sub(t0), c.want.Sub(t0))
		}
	}
}
