package netstack

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"
	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/transport/tcp"

	"github.com/udplab/udplab/internal/leakcheck"
	"github.com/udplab/udplab/internal/sockstat"
	"github.com/udplab/udplab/link"
	"github.com/udplab/udplab/link/linktest"
)

func TestMain(m *testing.M) { leakcheck.VerifyTestMain(m) }

// hangGuard bounds every blocking step of a test. It is no assertion on
// speed: it only keeps a broken test from hanging a busy machine's run.
const hangGuard = 2 * time.Minute

// udp returns a loopback UDP socket with large buffers, closed at the end
// of the test unless something took it over and closed it first.
func udp(t testing.TB) net.PacketConn {
	t.Helper()
	pc, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	sockstat.SetBuffers(pc)
	t.Cleanup(func() { pc.Close() })
	return pc
}

// server is a Listener whose every connection runs serve, and which waits
// for those goroutines when the test ends.
type server struct {
	*Listener
	wg sync.WaitGroup
}

// listen starts a Listener on pc whose connections run serve; Close and
// the wait for every goroutine come at the end of the test.
func listen(t testing.TB, pc net.PacketConn, serve func(net.Conn)) *server {
	t.Helper()
	l, err := Listen(pc, nil)
	if err != nil {
		t.Fatal(err)
	}
	s := &server{Listener: l}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			s.wg.Add(1)
			go func() {
				defer s.wg.Done()
				defer c.Close()
				c.SetDeadline(time.Now().Add(hangGuard))
				serve(c)
			}()
		}
	}()
	t.Cleanup(func() {
		l.Close()
		s.wg.Wait()
	})
	return s
}

// echo copies what it reads back until EOF.
func echo(c net.Conn) { io.Copy(c, c) }

// dial connects over pc to the Listener at remote; the Conn closes at the
// end of the test.
func dial(t testing.TB, pc net.PacketConn, remote net.Addr) *Conn {
	t.Helper()
	return dialConfig(t, pc, remote, nil)
}

// dialConfig is dial with a host set up by cfg.
func dialConfig(t testing.TB, pc net.PacketConn, remote net.Addr, cfg *Config) *Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), hangGuard)
	defer cancel()
	c, err := Dial(ctx, pc, remote, cfg)
	if err != nil {
		t.Fatal(err)
	}
	c.SetDeadline(time.Now().Add(hangGuard))
	t.Cleanup(func() { c.Close() })
	return c
}

// payload returns n bytes from a seeded source.
func payload(seed uint64, n int) []byte {
	r := rand.New(rand.NewPCG(seed, 1))
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

// roundTrip writes msg on c and reads back exactly as many bytes, which
// must be msg.
func roundTrip(t testing.TB, c net.Conn, msg []byte) {
	t.Helper()
	errc := make(chan error, 1)
	go func() { _, err := c.Write(msg); errc <- err }()
	got := make([]byte, len(msg))
	if _, err := io.ReadFull(c, got); err != nil {
		t.Fatalf("reading %d bytes back: %v", len(msg), err)
	}
	if err := <-errc; err != nil {
		t.Fatalf("writing %d bytes: %v", len(msg), err)
	}
	if !bytes.Equal(got, msg) {
		t.Fatalf("%d bytes came back different", len(msg))
	}
}

// echoSizes are the message sizes the echo tests send: tiny, around one
// segment, across several, and larger than the socket buffers' start.
var echoSizes = []int{1, 2, 17, 536, 1359, 1360, 1361, 4000, 65535, 65536, 300_000, 1 << 20}

// TestEcho sends messages of many sizes over plain loopback sockets and
// reads each back from an echo server, byte for byte.
func TestEcho(t *testing.T) {
	spc, cpc := udp(t), udp(t)
	srv := listen(t, spc, echo)
	c := dial(t, cpc, spc.LocalAddr())
	for i, n := range echoSizes {
		roundTrip(t, c, payload(uint64(i), n))
	}
	// Many small messages back to back, as a chat would send them.
	for i := range 200 {
		roundTrip(t, c, []byte(fmt.Sprintf("message %d", i)))
	}
	for name, st := range map[string]Stats{"client": c.Stats(), "server": srv.Stats()} {
		if st.PacketsSent == 0 || st.PacketsReceived == 0 {
			t.Errorf("%s: nothing counted: %+v", name, st)
		}
		if st.HeaderBytesSent < 40*st.PacketsSent {
			t.Errorf("%s: %d header bytes in %d packets, want at least 40 each", name, st.HeaderBytesSent, st.PacketsSent)
		}
		if st.BytesSent <= st.HeaderBytesSent {
			t.Errorf("%s: %d bytes sent, of which %d headers", name, st.BytesSent, st.HeaderBytesSent)
		}
		if st.BadPackets != 0 || st.WriteErrors != 0 || st.Unroutable != 0 || st.Throttled != 0 {
			t.Errorf("%s: errors on a clean path: %+v", name, st)
		}
	}
}

// TestLossyTransfer moves 200 KB over a link that loses 10% of the
// datagrams each way: it arrives intact, and the sender retransmitted.
func TestLossyTransfer(t *testing.T) {
	l := linktest.New(t, "loss=10%,delay=5ms,seed=7")
	spc, cpc := udp(t), udp(t)
	sum := make(chan [32]byte, 1)
	srv := listen(t, l.Wrap(spc, link.Down), func(c net.Conn) {
		h := sha256.New()
		n, err := io.Copy(h, c)
		if err != nil {
			t.Errorf("server read %d bytes: %v", n, err)
		}
		sum <- [32]byte(h.Sum(nil))
		c.Write([]byte("done"))
	})
	c := dial(t, l.Wrap(cpc, link.Up), spc.LocalAddr())
	data := payload(1, 200_000)
	if _, err := c.Write(data); err != nil {
		t.Fatal(err)
	}
	if err := c.CloseWrite(); err != nil {
		t.Fatal(err)
	}
	reply, err := io.ReadAll(c)
	if err != nil || string(reply) != "done" {
		t.Fatalf("reply %q, %v", reply, err)
	}
	if got := <-sum; got != sha256.Sum256(data) {
		t.Fatal("the data arrived different")
	}
	st := c.Stats()
	if st.Retransmissions == 0 {
		t.Errorf("no retransmission through 10%% loss: %+v", st)
	}
	if lost := l.Stats(link.Up).Lost; lost == 0 {
		t.Errorf("the link lost nothing")
	}
	t.Logf("client %+v", st)
	t.Logf("server %+v", srv.Stats())
}

// TestManyDialers runs ten clients at once against one listener, each
// with its own socket and so its own address inside the network.
func TestManyDialers(t *testing.T) {
	spc := udp(t)
	srv := listen(t, spc, echo)
	const clients = 10
	var wg sync.WaitGroup
	addrs := make(chan string, clients)
	for i := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := dial(t, udp(t), spc.LocalAddr())
			addrs <- c.LocalAddr().String()
			for j := range 5 {
				roundTrip(t, c, payload(uint64(100*i+j), 10_000*(j+1)))
			}
			if err := c.Close(); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	close(addrs)
	seen := map[string]bool{}
	for a := range addrs {
		ip, _, _ := strings.Cut(a, ":")
		if seen[ip] {
			t.Errorf("two clients at %s", ip)
		}
		seen[ip] = true
	}
	if st := srv.Stats(); st.Unroutable != 0 || st.Throttled != 0 {
		t.Errorf("server could not route %d packets and throttled %d", st.Unroutable, st.Throttled)
	}
}

// garbage returns datagrams that are no valid IPv4 TCP packet for dst:
// random bytes, truncated and malformed headers, another protocol,
// another destination, broken checksums.
func garbage(src, dst [4]byte) [][]byte {
	r := rand.New(rand.NewPCG(3, 4))
	var out [][]byte
	for range 50 {
		b := make([]byte, r.IntN(1500))
		for i := range b {
			b[i] = byte(r.Uint32())
		}
		out = append(out, b)
	}
	good := tcpPacket(src, dst, 1234, 80, tcpSYN, nil)
	for _, n := range []int{0, 1, 10, 19, 20, 39} {
		out = append(out, good[:n])
	}
	mutate := func(f func(b []byte)) {
		b := bytes.Clone(good)
		f(b)
		out = append(out, b)
	}
	mutate(func(b []byte) { b[0] = 0x65 })                 // IPv6 version
	mutate(func(b []byte) { b[0] = 0x46 })                 // IP options claimed
	mutate(func(b []byte) { b[3]++ })                      // total length
	mutate(func(b []byte) { b[10]++ })                     // IP checksum
	mutate(func(b []byte) { b[9] = 17; fixIPChecksum(b) }) // UDP
	mutate(func(b []byte) { b[19]++; fixIPChecksum(b) })   // another host
	mutate(func(b []byte) { b[15] = 255; fixIPChecksum(b) })
	mutate(func(b []byte) { b[6] = 0x20; fixIPChecksum(b) })          // more fragments
	mutate(func(b []byte) { b[len(b)-1]++ })                          // TCP checksum
	mutate(func(b []byte) { b[32] = 0x40; fixTCPChecksum(b) })        // TCP data offset 4
	mutate(func(b []byte) { b[32] = 0xf0; fixTCPChecksum(b) })        // TCP data offset past the end
	mutate(func(b []byte) { b[22], b[23] = 0, 0; fixTCPChecksum(b) }) // port 0
	out = append(out, append(bytes.Clone(good), 0))                   // a trailing byte
	return out
}

// TestGarbage sends garbage to both hosts' sockets, around an echo
// exchange: each datagram is counted as bad, and the connection works.
func TestGarbage(t *testing.T) {
	spc, cpc := udp(t), udp(t)
	srv := listen(t, spc, echo)
	c := dial(t, cpc, spc.LocalAddr())
	roundTrip(t, c, []byte("before"))
	junk := udp(t)
	cliIP := dialIP(cpc.LocalAddr())
	toServer, toClient := garbage(cliIP, listenIP), garbage(listenIP, cliIP)
	for _, b := range toServer {
		junk.WriteTo(b, spc.LocalAddr())
	}
	for _, b := range toClient {
		junk.WriteTo(b, cpc.LocalAddr())
	}
	roundTrip(t, c, payload(9, 100_000))
	// The echo went through after the garbage was sent, but datagrams from
	// another socket can arrive in any order: wait for the count.
	waitFor(t, "the server's bad packets", func() bool { return srv.Stats().BadPackets == uint64(len(toServer)) })
	waitFor(t, "the client's bad packets", func() bool { return c.Stats().BadPackets == uint64(len(toClient)) })
	roundTrip(t, c, []byte("after"))
}

// waitFor polls cond until it holds, failing the test after hangGuard.
func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	for limit := time.Now().Add(hangGuard); !cond(); time.Sleep(time.Millisecond) {
		if time.Now().After(limit) {
			t.Fatalf("gave up waiting for %s", what)
		}
	}
}

// TestClose checks that Close wakes blocked calls with net.ErrClosed,
// can be called twice, stops every goroutine and closes the sockets.
func TestClose(t *testing.T) {
	spc, cpc := udp(t), udp(t)
	l, err := Listen(spc, nil)
	if err != nil {
		t.Fatal(err)
	}
	accepted := make(chan net.Conn, 1)
	go func() {
		c, err := l.Accept()
		if err != nil {
			t.Error(err)
		}
		accepted <- c
	}()
	c := dial(t, cpc, spc.LocalAddr())
	sc := <-accepted
	roundTripBetween(t, c, sc, []byte("ping"))

	// A Read blocked on each side, then Close under it.
	readErr := make(chan error, 2)
	go func() { _, err := c.Read(make([]byte, 1)); readErr <- err }()
	go func() { _, err := sc.Read(make([]byte, 1)); readErr <- err }()
	acceptErr := make(chan error, 1)
	go func() { _, err := l.Accept(); acceptErr <- err }()

	// The listener first: closing the client first would send a FIN, and
	// the server's Read would rightly return io.EOF. The client's Close
	// then lingers for an acknowledgement that cannot come.
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if err := l.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	if err := c.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	for range 2 {
		if err := <-readErr; !errors.Is(err, net.ErrClosed) {
			t.Errorf("blocked Read after Close: %v, want net.ErrClosed", err)
		}
	}
	if err := <-acceptErr; !errors.Is(err, net.ErrClosed) {
		t.Errorf("blocked Accept after Close: %v, want net.ErrClosed", err)
	}
	if _, err := c.Write([]byte("x")); !errors.Is(err, net.ErrClosed) {
		t.Errorf("Write after Close: %v, want net.ErrClosed", err)
	}
	if _, err := l.Accept(); !errors.Is(err, net.ErrClosed) {
		t.Errorf("Accept after Close: %v, want net.ErrClosed", err)
	}
	for _, pc := range []net.PacketConn{spc, cpc} {
		if _, err := pc.WriteTo([]byte("x"), pc.LocalAddr()); !errors.Is(err, net.ErrClosed) {
			t.Errorf("socket still open after Close: %v", err)
		}
	}
	sc.Close()
	goleak.VerifyNone(t, leakcheck.Options()...)
}

// roundTripBetween writes msg on a and reads it on b.
func roundTripBetween(t testing.TB, a, b net.Conn, msg []byte) {
	t.Helper()
	if _, err := a.Write(msg); err != nil {
		t.Fatal(err)
	}
	got := make([]byte, len(msg))
	if _, err := io.ReadFull(b, got); err != nil || !bytes.Equal(got, msg) {
		t.Fatalf("read %q, %v; want %q", got, err, msg)
	}
}

// TestDialNothing dials a socket nobody serves: with a deadline Dial
// fails with os.ErrDeadlineExceeded, with a cancelled context with its
// cause, and either way it closes the socket it was given.
func TestDialNothing(t *testing.T) {
	silent := udp(t) // reads nothing, answers nothing
	t.Run("deadline", func(t *testing.T) {
		pc := udp(t)
		ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
		defer cancel()
		c, err := Dial(ctx, pc, silent.LocalAddr(), nil)
		if err == nil {
			c.Close()
			t.Fatal("Dial to nothing succeeded")
		}
		if !errors.Is(err, os.ErrDeadlineExceeded) || !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("Dial: %v, want os.ErrDeadlineExceeded and context.DeadlineExceeded", err)
		}
		if _, err := pc.WriteTo([]byte("x"), silent.LocalAddr()); !errors.Is(err, net.ErrClosed) {
			t.Errorf("Dial failed but left its socket open: %v", err)
		}
	})
	t.Run("cancel", func(t *testing.T) {
		pc := udp(t)
		ctx, cancel := context.WithCancelCause(context.Background())
		cause := errors.New("the user gave up")
		go func() {
			time.Sleep(20 * time.Millisecond)
			cancel(cause)
		}()
		c, err := Dial(ctx, pc, silent.LocalAddr(), nil)
		if err == nil {
			c.Close()
			t.Fatal("Dial to nothing succeeded")
		}
		if !errors.Is(err, cause) {
			t.Errorf("Dial: %v, want the context's cause", err)
		}
	})
	t.Run("cancelled before", func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		if _, err := Dial(ctx, udp(t), silent.LocalAddr(), nil); !errors.Is(err, context.Canceled) {
			t.Errorf("Dial: %v, want context.Canceled", err)
		}
	})
}

// TestDeadline checks that a read deadline ends a Read with an error
// matching os.ErrDeadlineExceeded, and the connection still works.
func TestDeadline(t *testing.T) {
	spc, cpc := udp(t), udp(t)
	listen(t, spc, echo)
	c := dial(t, cpc, spc.LocalAddr())
	c.SetReadDeadline(time.Now().Add(10 * time.Millisecond))
	_, err := c.Read(make([]byte, 1))
	var ne net.Error
	if !errors.Is(err, os.ErrDeadlineExceeded) || !errors.As(err, &ne) || !ne.Timeout() {
		t.Fatalf("Read past its deadline: %v, want os.ErrDeadlineExceeded", err)
	}
	c.SetDeadline(time.Now().Add(hangGuard))
	roundTrip(t, c, []byte("still there"))
}

// TestConfig checks that a bad MTU is refused and the socket closed.
func TestConfig(t *testing.T) {
	for _, mtu := range []int{-1, 575, 65536} {
		pc := udp(t)
		if _, err := Listen(pc, &Config{MTU: mtu}); err == nil {
			t.Errorf("Listen with MTU %d: no error", mtu)
		}
		if _, err := pc.WriteTo([]byte("x"), pc.LocalAddr()); !errors.Is(err, net.ErrClosed) {
			t.Errorf("Listen failed but left its socket open: %v", err)
		}
	}
}

// TestSmallMTU runs an echo with a small MTU: no packet either host sends
// is larger.
func TestSmallMTU(t *testing.T) {
	l := linktest.New(t, "mtu=576")
	spc, cpc := udp(t), udp(t)
	cfg := &Config{MTU: 576}
	ln, err := Listen(l.Wrap(spc, link.Down), cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	done := make(chan struct{})
	go func() {
		defer close(done)
		if c, err := ln.Accept(); err == nil {
			echo(c)
			c.Close()
		}
	}()
	c, err := Dial(context.Background(), l.Wrap(cpc, link.Up), spc.LocalAddr(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	c.SetDeadline(time.Now().Add(hangGuard))
	roundTrip(t, c, payload(5, 50_000))
	c.Close()
	<-done
	for _, d := range []link.Direction{link.Up, link.Down} {
		if st := l.Stats(d); st.MTUDrops != 0 {
			t.Errorf("%v: %d packets over the MTU", d, st.MTUDrops)
		}
	}
}

// TestSettings checks that a host's stack runs with the settings Describe
// states.
func TestSettings(t *testing.T) {
	l, err := Listen(udp(t), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	s := l.h.s
	var (
		sack     tcpip.TCPSACKEnabled
		cc       tcpip.CongestionControlOption
		recovery tcpip.TCPRecovery
		moderate tcpip.TCPModerateReceiveBufferOption
		delay    tcpip.TCPDelayEnabled
		minRTO   tcpip.TCPMinRTOOption
		snd      tcpip.TCPSendBufferSizeRangeOption
		rcv      tcpip.TCPReceiveBufferSizeRangeOption
	)
	for _, opt := range []tcpip.GettableTransportProtocolOption{&sack, &cc, &recovery, &moderate, &delay, &minRTO, &snd, &rcv} {
		if err := s.TransportProtocolOption(tcp.ProtocolNumber, opt); err != nil {
			t.Fatalf("%T: %v", opt, err)
		}
	}
	if !bool(sack) || cc != "cubic" || recovery&tcpip.TCPRACKLossDetection == 0 || !bool(moderate) || bool(delay) {
		t.Errorf("sack=%v cc=%v recovery=%v moderate=%v delay=%v", sack, cc, recovery, moderate, delay)
	}
	if time.Duration(minRTO) != tcp.MinRTO {
		t.Errorf("min RTO %v", time.Duration(minRTO))
	}
	if snd.Default != sendBufferDefault || rcv.Default != recvBufferDefault || rcv.Max != recvBufferMax {
		t.Errorf("buffers: send %+v, receive %+v", snd, rcv)
	}
	d := Describe()
	for _, want := range []string{"gVisor netstack ", "SACK on", "CUBIC", "RACK", "Nagle off", "min RTO 200ms", "MTU 1400"} {
		if !strings.Contains(d, want) {
			t.Errorf("Describe() = %q, missing %q", d, want)
		}
	}
	if got := (&Config{MTU: 9000}).Describe(); !strings.Contains(got, "MTU 9000") {
		t.Errorf("Describe with MTU 9000 = %q", got)
	}
	t.Log(d)
}

// TestDisableRACK checks that a host with Config.DisableRACK runs without
// RACK, and that Describe says so.
func TestDisableRACK(t *testing.T) {
	cfg := &Config{DisableRACK: true}
	l, err := Listen(udp(t), cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	var recovery tcpip.TCPRecovery
	if err := l.h.s.TransportProtocolOption(tcp.ProtocolNumber, &recovery); err != nil {
		t.Fatal(err)
	}
	if recovery != 0 {
		t.Errorf("recovery = %v, want 0: SACK recovery without RACK", recovery)
	}
	if d := cfg.Describe(); !strings.Contains(d, "RFC 6675 loss recovery (no RACK-TLP)") {
		t.Errorf("Describe() = %q, missing the loss recovery", d)
	}
}

// TestDialIP checks the address each dialer takes inside the network.
func TestDialIP(t *testing.T) {
	for _, tc := range []struct {
		addr net.Addr
		want [4]byte
	}{
		{&net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 0x1234}, [4]byte{10, 65, 0x12, 0x34}},
		{&net.UDPAddr{IP: net.IPv6loopback, Port: 1}, [4]byte{10, 65, 0, 1}},
	} {
		if got := dialIP(tc.addr); got != tc.want {
			t.Errorf("dialIP(%v) = %v, want %v", tc.addr, got, tc.want)
		}
	}
	a, b := dialIP(&net.UnixAddr{Name: "a", Net: "unixgram"}), dialIP(&net.UnixAddr{Name: "b", Net: "unixgram"})
	if a == b || a[0] != 10 || a[1] != 65 {
		t.Errorf("dialIP of two unix addresses: %v, %v", a, b)
	}
}

// TestEchoOverIPv6Sockets runs the simulated IPv4 network over IPv6
// loopback sockets: the UDP layer's family does not matter.
func TestEchoOverIPv6Sockets(t *testing.T) {
	spc, err := net.ListenPacket("udp6", "[::1]:0")
	if err != nil {
		t.Skipf("no IPv6 loopback: %v", err)
	}
	t.Cleanup(func() { spc.Close() })
	cpc, err := net.ListenPacket("udp6", "[::1]:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cpc.Close() })
	listen(t, spc, echo)
	c := dial(t, cpc, spc.LocalAddr())
	roundTrip(t, c, payload(11, 100_000))
}
