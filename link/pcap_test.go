package link

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
	"github.com/google/gopacket/pcapgo"

	"github.com/udplab/udplab/internal/udpsock"
)

// captured is one packet read back from a capture.
type captured struct {
	intf     int
	src, dst netip.AddrPort
	payload  string
}

// readCapture reads a capture back with gopacket's own reader, checking
// every packet's lengths and checksums as it goes.
func readCapture(t *testing.T, r io.Reader) []captured {
	t.Helper()
	nr, err := pcapgo.NewNgReader(r, pcapgo.DefaultNgReaderOptions)
	if err != nil {
		t.Fatal(err)
	}
	var got []captured
	for {
		data, ci, err := nr.ReadPacketData()
		if errors.Is(err, io.EOF) {
			// The reader learns of an interface where the file describes it.
			if n := nr.NInterfaces(); n != 2 {
				t.Fatalf("%d interfaces, want 2", n)
			}
			for i, name := range []string{"entered", "left"} {
				intf, _ := nr.Interface(i)
				if intf.Name != name || intf.LinkType != layers.LinkTypeEthernet {
					t.Errorf("interface %d is %q of link type %v, want %q of %v", i, intf.Name, intf.LinkType, name, layers.LinkTypeEthernet)
				}
			}
			return got
		}
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, decodeCaptured(t, ci, data))
	}
}

func decodeCaptured(t *testing.T, ci gopacket.CaptureInfo, data []byte) captured {
	t.Helper()
	pkt := gopacket.NewPacket(data, layers.LayerTypeEthernet, gopacket.Default)
	data = data[14:] // the IP packet
	udp, _ := pkt.Layer(layers.LayerTypeUDP).(*layers.UDP)
	if udp == nil || pkt.ErrorLayer() != nil {
		t.Fatalf("packet %x: no UDP layer (%v)", data, pkt.ErrorLayer())
	}
	c := captured{intf: ci.InterfaceIndex, payload: string(udp.Payload)}
	var pseudo []byte
	switch ip := pkt.NetworkLayer().(type) {
	case *layers.IPv4:
		if int(ip.Length) != len(data) || checksum(data[:20]) != 0 {
			t.Errorf("IPv4 header %x: length %d of %d or checksum wrong", data[:20], ip.Length, len(data))
		}
		c.src = netip.AddrPortFrom(netip.AddrFrom4([4]byte(ip.SrcIP.To4())), uint16(udp.SrcPort))
		c.dst = netip.AddrPortFrom(netip.AddrFrom4([4]byte(ip.DstIP.To4())), uint16(udp.DstPort))
		pseudo = append(append(append([]byte{}, ip.SrcIP.To4()...), ip.DstIP.To4()...), 0, 17)
		pseudo = binary.BigEndian.AppendUint16(pseudo, udp.Length)
	case *layers.IPv6:
		if int(ip.Length) != len(data)-40 {
			t.Errorf("IPv6 payload length %d of %d", ip.Length, len(data))
		}
		c.src = netip.AddrPortFrom(netip.AddrFrom16([16]byte(ip.SrcIP)), uint16(udp.SrcPort))
		c.dst = netip.AddrPortFrom(netip.AddrFrom16([16]byte(ip.DstIP)), uint16(udp.DstPort))
		pseudo = append(append(append([]byte{}, ip.SrcIP...), ip.DstIP...), 0, 0)
		pseudo = binary.BigEndian.AppendUint16(pseudo, udp.Length)
		pseudo = append(pseudo, 0, 0, 0, 17)
	default:
		t.Fatalf("packet %x: no IP layer", data)
	}
	seg := data[len(data)-int(udp.Length):]
	if int(udp.Length) != 8+len(udp.Payload) || checksum(append(pseudo, seg...)) != 0 {
		t.Errorf("UDP %v → %v: length %d for %d payload bytes, or checksum wrong", c.src, c.dst, udp.Length, len(udp.Payload))
	}
	return c
}

// checksum is the Internet checksum of b: zero over a header that holds
// its correct checksum.
func checksum(b []byte) uint16 {
	var sum uint32
	for i := 0; i+1 < len(b); i += 2 {
		sum += uint32(b[i])<<8 | uint32(b[i+1])
	}
	if len(b)%2 == 1 {
		sum += uint32(b[len(b)-1]) << 8
	}
	for sum > 0xffff {
		sum = sum>>16 + sum&0xffff
	}
	return ^uint16(sum)
}

// TestCaptureMatchesCounters runs greetings through a real proxy on
// loopback with seeded loss (and duplicates) each way, captures them,
// and reads the file back: "entered" holds every datagram the link was
// offered, "left" every one it delivered, each with its sockets' real
// addresses, the payloads intact.
func TestCaptureMatchesCounters(t *testing.T) {
	for _, spec := range []string{"loss=30%,seed=3", "loss=30%,dup=20%,seed=3"} {
		t.Run(spec, func(t *testing.T) {
			const n = 400
			l := newLink(t, spec, nil)
			var file bytes.Buffer
			capt, err := NewCapture(&file)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { capt.Close() })
			c, p, srv := proxiedBy(t, ProxyConfig{Link: l, Capture: capt})
			client, proxy, server := udpsock.AddrPort(c.LocalAddr()), udpsock.AddrPort(p.Addr()), udpsock.AddrPort(srv)

			replies := greetMany(t, c, n, 50*time.Microsecond, 300*time.Millisecond, 8)
			p.Close() // nothing enters the link after this
			up, down := l.Stats(Up), l.Stats(Down)
			if err := capt.Close(); err != nil {
				t.Fatal(err)
			}
			if st := capt.Stats(); st.EnteredDropped != 0 || st.LeftDropped != 0 {
				t.Fatalf("capture dropped packets: %+v", st)
			}
			if up.Offered != n || uint64(len(replies)) != down.Delivered {
				t.Fatalf("up %v, down %v, %d replies: the load did not go through as sent", up, down, len(replies))
			}

			var count [2]uint64
			entered := map[string]int{} // payloads entered, per direction and payload
			var upstream netip.AddrPort // the proxy's socket towards the server
			for _, pk := range readCapture(t, &file) {
				count[pk.intf]++
				toServer := pk.dst == server || pk.dst == proxy
				dir := "up "
				if !toServer {
					dir = "down "
				}
				switch {
				case pk.intf == captureEntered && toServer:
					if pk.src != client || pk.dst != proxy {
						t.Errorf("entered up %v → %v, want %v → %v", pk.src, pk.dst, client, proxy)
					}
					entered[dir+pk.payload]++
				case pk.intf == captureEntered:
					if upstream == (netip.AddrPort{}) {
						upstream = pk.dst
					}
					if pk.src != server || pk.dst != upstream {
						t.Errorf("entered down %v → %v, want %v → %v", pk.src, pk.dst, server, upstream)
					}
					entered[dir+pk.payload]++
				case toServer:
					if upstream == (netip.AddrPort{}) {
						upstream = pk.src
					}
					if pk.src != upstream {
						t.Errorf("left up from %v, want %v", pk.src, upstream)
					}
				default:
					if pk.src != proxy || pk.dst != client {
						t.Errorf("left down %v → %v, want %v → %v", pk.src, pk.dst, proxy, client)
					}
				}
				if pk.intf == captureLeft && entered[dir+pk.payload] == 0 {
					t.Errorf("left %s%q never entered (or left more often than it entered, unduplicated)", dir, pk.payload)
				}
			}
			if !upstream.Addr().IsLoopback() || upstream.Port() == 0 || upstream == proxy {
				t.Errorf("upstream socket %v: not a loopback socket of its own", upstream)
			}
			offered, delivered := up.Offered+down.Offered, up.Delivered+down.Delivered
			if count[captureEntered] != offered || count[captureLeft] != delivered {
				t.Errorf("captured entered=%d left=%d, link offered=%d delivered=%d (up %v; down %v)",
					count[captureEntered], count[captureLeft], offered, delivered, up, down)
			}
			if strings.Contains(spec, "dup") && up.Duplicated+down.Duplicated == 0 {
				t.Errorf("no duplicates: the case tests nothing")
			}
			if up.Lost == 0 || down.Lost == 0 {
				t.Errorf("up %v, down %v: no loss, the case tests nothing", up, down)
			}
		})
	}
}

// TestCaptureReadByTools has tcpdump and tshark, where installed, read a
// capture of an IPv4 and an IPv6 datagram and check their checksums.
func TestCaptureReadByTools(t *testing.T) {
	path := filepath.Join(t.TempDir(), "cap.pcapng")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	c, err := NewCapture(f)
	if err != nil {
		t.Fatal(err)
	}
	v4 := netip.MustParseAddrPort("127.0.0.1:40000")
	v6 := netip.MustParseAddrPort("[::1]:40002")
	at := time.Unix(1e9, 0)
	c.record(captureEntered, at, v4, netip.MustParseAddrPort("127.0.0.1:40001"), []byte("hello"))
	c.record(captureLeft, at, v6, netip.MustParseAddrPort("[::1]:40001"), []byte("world"))
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		tool string
		args []string
		want []string
	}{
		{"tcpdump", []string{"-r", path, "-n", "-vv"}, []string{
			"127.0.0.1.40000 > 127.0.0.1.40001: [udp sum ok] UDP, length 5",
			"::1.40002 > ::1.40001: [udp sum ok] UDP, length 5",
		}},
		{"tshark", []string{"-r", path, "-o", "udp.check_checksum:TRUE", "-o", "ip.check_checksum:TRUE",
			"-T", "fields", "-e", "frame.interface_name", "-e", "ip.checksum.status", "-e", "ipv6.src", "-e", "udp.checksum.status", "-e", "udp.length"}, []string{
			"entered\t1\t\t1\t13\n",
			"left\t\t::1\t1\t13\n",
		}},
	} {
		t.Run(tc.tool, func(t *testing.T) {
			bin, err := exec.LookPath(tc.tool)
			if err != nil {
				t.Skipf("%s is not installed", tc.tool)
			}
			out, err := exec.Command(bin, tc.args...).Output()
			if err != nil {
				t.Fatalf("%s: %v\n%s", tc.tool, err, out)
			}
			for _, want := range tc.want {
				if !strings.Contains(string(out), want) {
					t.Errorf("%s printed\n%s\nwithout %q", tc.tool, out, want)
				}
			}
		})
	}
}

// blockingWriter passes writes through until block is set, then blocks
// each until release closes, telling blocked once.
type blockingWriter struct {
	block            atomic.Bool
	blocked, release chan struct{}
}

func (w *blockingWriter) Write(b []byte) (int, error) {
	if w.block.CompareAndSwap(true, false) {
		close(w.blocked)
		<-w.release
	}
	return len(b), nil
}

// TestCaptureDropsWhenBehind: with the writer stuck in a write, the
// capture queues what its bounds allow, drops and counts the rest, and
// never blocks the caller.
func TestCaptureDropsWhenBehind(t *testing.T) {
	for _, tc := range []struct {
		size, n    int
		wantQueued int
	}{
		{size: 100, n: captureQueue + 10, wantQueued: captureQueue},
		{size: 60000, n: 200, wantQueued: captureQueueBytes / 60000},
	} {
		w := &blockingWriter{blocked: make(chan struct{}), release: make(chan struct{})}
		c, err := NewCapture(w)
		if err != nil {
			t.Fatal(err)
		}
		w.block.Store(true) // the header went through; the writer blocks on the first packet's flush
		a := netip.MustParseAddrPort("127.0.0.1:1")
		c.record(captureEntered, time.Now(), a, a, []byte("first"))
		<-w.blocked
		b := make([]byte, tc.size)
		for range tc.n {
			c.record(captureLeft, time.Now(), a, a, b)
		}
		close(w.release)
		if err := c.Close(); err != nil {
			t.Fatal(err)
		}
		want := CaptureStats{Entered: 1, Left: uint64(tc.wantQueued), LeftDropped: uint64(tc.n - tc.wantQueued)}
		if got := c.Stats(); got != want {
			t.Errorf("%d datagrams of %d bytes behind a stuck writer: %+v, want %+v", tc.n, tc.size, got, want)
		}
		c.record(captureEntered, time.Now(), a, a, b)
		if got := c.Stats().EnteredDropped; got != 1 {
			t.Errorf("after Close, entered_dropped=%d, want 1", got)
		}
	}
}

func TestCaptureAddrs(t *testing.T) {
	for _, tc := range []struct{ src, dst, wantSrc, wantDst string }{
		{"127.0.0.1", "127.0.0.2", "127.0.0.1", "127.0.0.2"},
		{"::ffff:127.0.0.1", "127.0.0.2", "127.0.0.1", "127.0.0.2"},
		{"127.0.0.1", "::", "127.0.0.1", "0.0.0.0"},
		{"::1", "0.0.0.0", "::1", "::"},
		{"::1", "", "::1", "::"},
		{"", "", "0.0.0.0", "0.0.0.0"},
		{"10.0.0.1", "fe80::1", "::ffff:10.0.0.1", "fe80::1"},
	} {
		parse := func(s string) netip.Addr {
			a, _ := netip.ParseAddr(s)
			return a
		}
		s, d := captureAddrs(parse(tc.src), parse(tc.dst))
		if s.String() != tc.wantSrc || d.String() != tc.wantDst {
			t.Errorf("captureAddrs(%q, %q) = %v, %v, want %s, %s", tc.src, tc.dst, s, d, tc.wantSrc, tc.wantDst)
		}
	}
}

// TestCaptureSerializesLongest: the longest datagram a UDP socket takes
// over IPv4 fits its header; one byte more is refused, not wrapped.
func TestCaptureSerializesLongest(t *testing.T) {
	s := newCaptureSerializer()
	a := netip.MustParseAddrPort("127.0.0.1:1")
	if data, err := s.serialize(a, a, make([]byte, 65507)); err != nil || len(data) != 14+65535 {
		t.Errorf("65507 bytes: %d bytes, %v", len(data), err)
	}
	if _, err := s.serialize(a, a, make([]byte, 65508)); !errors.Is(err, errCaptureTooLong) {
		t.Errorf("65508 bytes: %v, want %v", err, errCaptureTooLong)
	}
}
