package netstack

import (
	"encoding/binary"
	"net"
	"testing"
	"time"
)

// TCP flags for the packets tests build.
const (
	tcpFIN = 0x01
	tcpSYN = 0x02
	tcpRST = 0x04
	tcpACK = 0x10
)

// tcpPacket builds an IPv4 TCP packet from src to dst with valid
// checksums, independently of the code under test.
func tcpPacket(src, dst [4]byte, sport, dport uint16, flags byte, data []byte) []byte {
	b := make([]byte, 40+len(data))
	b[0] = 0x45
	binary.BigEndian.PutUint16(b[2:], uint16(len(b)))
	b[8] = 64
	b[9] = 6
	copy(b[12:], src[:])
	copy(b[16:], dst[:])
	binary.BigEndian.PutUint16(b[20:], sport)
	binary.BigEndian.PutUint16(b[22:], dport)
	binary.BigEndian.PutUint32(b[24:], 1000)
	b[32] = 5 << 4
	b[33] = flags
	binary.BigEndian.PutUint16(b[34:], 65535)
	copy(b[40:], data)
	fixIPChecksum(b)
	fixTCPChecksum(b)
	return b
}

// refSum is the Internet checksum's one's complement sum of the 16-bit
// words of bs, as RFC 1071 defines it, written plainly.
func refSum(bs ...[]byte) uint16 {
	var sum uint32
	for _, b := range bs {
		for i := 0; i+1 < len(b); i += 2 {
			sum += uint32(b[i])<<8 | uint32(b[i+1])
		}
		if len(b)%2 == 1 {
			sum += uint32(b[len(b)-1]) << 8
		}
	}
	for sum > 0xffff {
		sum = sum&0xffff + sum>>16
	}
	return uint16(sum)
}

// pseudo returns the TCP pseudo-header of IPv4 packet b.
func pseudo(b []byte) []byte {
	p := make([]byte, 12)
	copy(p, b[12:20])
	p[9] = 6
	binary.BigEndian.PutUint16(p[10:], uint16(len(b)-20))
	return p
}

func fixIPChecksum(b []byte) {
	b[10], b[11] = 0, 0
	binary.BigEndian.PutUint16(b[10:], ^refSum(b[:20]))
}

func fixTCPChecksum(b []byte) {
	b[36], b[37] = 0, 0
	binary.BigEndian.PutUint16(b[36:], ^refSum(pseudo(b), b[20:]))
}

// refCheck is checkInbound's rules written plainly, as a second opinion.
func refCheck(b []byte, local [4]byte) bool {
	if len(b) < 40 || b[0]>>4 != 4 || b[0]&15 != 5 || int(binary.BigEndian.Uint16(b[2:])) != len(b) {
		return false
	}
	if b[6]&0x20 != 0 || binary.BigEndian.Uint16(b[6:])&0x1fff != 0 || b[9] != 6 || refSum(b[:20]) != 0xffff {
		return false
	}
	src, dst := [4]byte(b[12:16]), [4]byte(b[16:20])
	if dst != local || src == local || src[0] == 0 || src[0] == 127 || src[0] >= 224 {
		return false
	}
	off := int(b[32]>>4) * 4
	if off < 20 || 20+off > len(b) || binary.BigEndian.Uint16(b[20:]) == 0 || binary.BigEndian.Uint16(b[22:]) == 0 {
		return false
	}
	return refSum(pseudo(b), b[20:]) == 0xffff
}

func TestCheckInbound(t *testing.T) {
	cli := [4]byte{10, 65, 1, 2}
	good := tcpPacket(cli, listenIP, 40000, 80, tcpSYN, []byte("hello"))
	if src, ok := checkInbound(good, listenIP); !ok || src != cli {
		t.Fatalf("checkInbound(good) = %v, %v", src, ok)
	}
	if _, ok := checkInbound(good, cli); ok {
		t.Error("accepted a packet for another host")
	}
	for i, b := range garbage(cli, listenIP) {
		if _, ok := checkInbound(b, listenIP); ok {
			t.Errorf("garbage %d (%d bytes) accepted", i, len(b))
		}
	}
	for _, src := range [][4]byte{{0, 1, 2, 3}, {127, 0, 0, 1}, {224, 0, 0, 1}, {255, 255, 255, 255}, listenIP} {
		if _, ok := checkInbound(tcpPacket(src, listenIP, 1, 80, tcpSYN, nil), listenIP); ok {
			t.Errorf("accepted a packet from %v", src)
		}
	}
	// An odd-length segment: the checksum pads it.
	if _, ok := checkInbound(tcpPacket(cli, listenIP, 1, 80, tcpACK, []byte("abc")), listenIP); !ok {
		t.Error("refused an odd-length segment")
	}
}

func TestHeaderBytes(t *testing.T) {
	p := tcpPacket([4]byte{10, 65, 0, 1}, listenIP, 1, 80, tcpACK, make([]byte, 100))
	if got := headerBytes(p); got != 40 {
		t.Errorf("headerBytes(plain) = %d, want 40", got)
	}
	p[32] = 8 << 4 // 12 bytes of options
	if got := headerBytes(p); got != 52 {
		t.Errorf("headerBytes(with options) = %d, want 52", got)
	}
	for _, n := range []int{0, 5, 20, 39} {
		if got := headerBytes(p[:n]); got > n {
			t.Errorf("headerBytes of %d bytes = %d", n, got)
		}
	}
}

// FuzzCheckInbound holds checkInbound to the plain rules of refCheck on
// any datagram: it never panics, and accepts exactly what they accept.
// Half the inputs get their checksums fixed, so the fuzzer also reaches
// the checks behind them.
func FuzzCheckInbound(f *testing.F) {
	cli := [4]byte{10, 65, 1, 2}
	f.Add(tcpPacket(cli, listenIP, 40000, 80, tcpSYN, nil), false)
	f.Add(tcpPacket(cli, listenIP, 40000, 80, tcpACK|tcpFIN, []byte("data")), false)
	for _, b := range garbage(cli, listenIP) {
		f.Add(b, true)
	}
	f.Fuzz(func(t *testing.T, b []byte, fix bool) {
		if fix && len(b) >= 40 {
			fixIPChecksum(b)
			fixTCPChecksum(b)
		}
		src, ok := checkInbound(b, listenIP)
		if want := refCheck(b, listenIP); ok != want {
			t.Fatalf("checkInbound(% x) = %v, rules say %v", b, ok, want)
		}
		if ok && src != [4]byte(b[12:16]) {
			t.Fatalf("source %v, packet says %v", src, b[12:16])
		}
		if h := headerBytes(b); h < 0 || h > len(b) {
			t.Fatalf("headerBytes = %d of %d", h, len(b))
		}
	})
}

// nullConn is a PacketConn that receives nothing and discards what it is
// sent, for feeding a host packets by hand.
type nullConn struct{ closed chan struct{} }

func (c nullConn) ReadFrom([]byte) (int, net.Addr, error) {
	<-c.closed
	return 0, nil, net.ErrClosed
}
func (c nullConn) WriteTo(b []byte, _ net.Addr) (int, error) { return len(b), nil }
func (c nullConn) Close() error {
	select {
	case <-c.closed:
	default:
		close(c.closed)
	}
	return nil
}
func (c nullConn) LocalAddr() net.Addr              { return &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 9} }
func (nullConn) SetDeadline(t time.Time) error      { return nil }
func (nullConn) SetReadDeadline(t time.Time) error  { return nil }
func (nullConn) SetWriteDeadline(t time.Time) error { return nil }

// FuzzListenerReceive hands whatever passes checkInbound to a listening
// host's stack: SYNs to new ports, stray segments, options of every
// shape. Nothing may panic, and the host must still close cleanly.
func FuzzListenerReceive(f *testing.F) {
	cli := [4]byte{10, 65, 1, 2}
	f.Add(tcpPacket(cli, listenIP, 40000, 80, tcpSYN, nil))
	f.Add(tcpPacket(cli, listenIP, 40000, 81, tcpACK, []byte("data")))
	f.Add(tcpPacket(cli, listenIP, 40000, 82, tcpRST, nil))
	syn := tcpPacket(cli, listenIP, 40000, 83, tcpSYN, []byte{2, 4, 5, 0xb4, 1, 3, 3, 7, 4, 2, 8, 10, 0, 0, 0, 1, 0, 0, 0, 0})
	syn[32] = 10 << 4
	fixTCPChecksum(syn)
	f.Add(syn)
	l, err := Listen(nullConn{make(chan struct{})}, nil)
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { l.Close() })
	from := &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 5}
	f.Fuzz(func(t *testing.T, b []byte) {
		if len(b) < 40 {
			return
		}
		b[0] = 0x45
		binary.BigEndian.PutUint16(b[2:], uint16(len(b)))
		b[6], b[7] = 0, 0
		b[9] = 6
		copy(b[16:], listenIP[:])
		fixIPChecksum(b)
		fixTCPChecksum(b)
		l.h.receive(b, from)
	})
}

// TestAmplificationBound checks that a listening host sends an address it
// has not validated at most 3× the bytes it received from there, that an
// accepted connection lifts the bound, and that a new address for the
// same IP starts bound again.
func TestAmplificationBound(t *testing.T) {
	l, err := Listen(nullConn{make(chan struct{})}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	h := l.h
	src := [4]byte{10, 66, 0, 1}
	victim := &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 7}
	pkt := tcpPacket(listenIP, src, 80, 1000, tcpSYN|tcpACK, make([]byte, 20)) // 60 bytes
	sendN := func(n int) (sent, throttled uint64) {
		before := h.stats()
		for range n {
			h.send(pkt)
		}
		after := h.stats()
		return after.PacketsSent - before.PacketsSent, after.Throttled - before.Throttled
	}
	h.learn(src, victim, len(pkt))
	if sent, throttled := sendN(5); sent != 3 || throttled != 2 {
		t.Errorf("unvalidated: %d sent, %d throttled; want 3 and 2", sent, throttled)
	}
	h.learn(src, victim, len(pkt))
	if sent, _ := sendN(5); sent != 3 {
		t.Errorf("after another packet from the peer: %d sent, want 3", sent)
	}
	h.validate(src)
	if sent, throttled := sendN(100); sent != 100 || throttled != 0 {
		t.Errorf("validated: %d sent, %d throttled", sent, throttled)
	}
	other := &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 8}
	h.learn(src, other, len(pkt))
	if sent, _ := sendN(5); sent != 3 {
		t.Errorf("after the address changed: %d sent, want 3", sent)
	}
	if st := h.stats(); st.Unroutable != 0 {
		t.Errorf("%d unroutable", st.Unroutable)
	}
	h.send(tcpPacket(listenIP, [4]byte{10, 66, 0, 2}, 80, 1000, tcpRST, nil))
	if st := h.stats(); st.Unroutable != 1 {
		t.Errorf("a packet for a peer never heard from: %d unroutable, want 1", st.Unroutable)
	}
}
