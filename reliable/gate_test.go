package reliable

import (
	"bytes"
	"context"
	"encoding/binary"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	kcp "github.com/xtaci/kcp-go/v5"

	"github.com/udplab/udplab/internal/conntest"
	"github.com/udplab/udplab/internal/guard"
	"github.com/udplab/udplab/message"
)

// spoofConn is a server's real socket that also reads datagrams a test
// injects from any source address, as a spoofer on the path would send
// them, in one order with what arrives; it records what the server read
// from real sources, and tallies the bytes the server sent to each address.
type spoofConn struct {
	net.PacketConn
	in   chan spoofed
	done chan struct{} // closed when pump has returned

	mu   sync.Mutex
	read []spoofed // what came from the real socket
	sent map[netip.AddrPort]int
}

type spoofed struct {
	pkt  []byte
	from net.Addr
	err  error
}

func newSpoofConn(t testing.TB) *spoofConn {
	t.Helper()
	pc, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	c := &spoofConn{PacketConn: pc, in: make(chan spoofed, 1<<16), done: make(chan struct{}),
		sent: make(map[netip.AddrPort]int)}
	go c.pump()
	return c
}

// pump moves what the socket receives into the same queue as what the
// test injects, until the socket is closed.
func (c *spoofConn) pump() {
	defer close(c.done)
	for {
		buf := make([]byte, 2048)
		n, addr, err := c.PacketConn.ReadFrom(buf)
		if err != nil {
			c.in <- spoofed{err: err}
			return
		}
		s := spoofed{pkt: buf[:n], from: addr}
		c.mu.Lock()
		c.read = append(c.read, s)
		c.mu.Unlock()
		c.in <- s
	}
}

func (c *spoofConn) Close() error {
	err := c.PacketConn.Close()
	<-c.done
	return err
}

func (c *spoofConn) inject(pkt []byte, from string) {
	c.in <- spoofed{pkt: pkt, from: net.UDPAddrFromAddrPort(netip.MustParseAddrPort(from))}
}

func (c *spoofConn) ReadFrom(p []byte) (int, net.Addr, error) {
	s := <-c.in
	if s.err != nil {
		c.in <- s // every later read fails too
		return 0, nil, s.err
	}
	return copy(p, s.pkt), s.from, nil
}

func (c *spoofConn) WriteTo(p []byte, addr net.Addr) (int, error) {
	c.mu.Lock()
	c.sent[addr.(*net.UDPAddr).AddrPort()] += guard.WireBytes(len(p), netip.AddrPort{})
	c.mu.Unlock()
	return c.PacketConn.WriteTo(p, addr)
}

func (c *spoofConn) sentTo(ap string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.sent[netip.MustParseAddrPort(ap)]
}

func (c *spoofConn) captured() []spoofed {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]spoofed(nil), c.read...)
}

func serveSpoofed(t testing.TB, cfg Config) (*Server, *spoofConn) {
	t.Helper()
	pc := newSpoofConn(t)
	cfg.Logger = quiet
	s, err := NewServer(pc, message.Greet, &cfg)
	if err != nil {
		pc.Close()
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s, pc
}

// kcpPush is a bare KCP push of data in conversation conv, as a client's
// first packet is.
func kcpPush(conv uint32, data string) []byte {
	b := appendSegment(nil, segment{conv: conv, cmd: kcp.IKCP_CMD_PUSH, wnd: 128})
	binary.LittleEndian.PutUint32(b[20:], uint32(len(data)))
	return append(b, data...)
}

// greetAfter greets the server from a fresh client; the server reads its
// socket in order, so once the reply is in, every packet injected before
// was dealt with.
func greetAfter(t *testing.T, s *Server, cfg Config) {
	t.Helper()
	if got := conntest.RoundTrip(t, dial(t, s.Addr(), cfg), "Alice"); got != "Hello Alice!\n" {
		t.Fatalf("reply = %q", got)
	}
}

// spoofedSource names the i'th of up to 2^24 spoofed sources in
// 127.0.0.0/8.
func spoofedSource(i int) string {
	return fmt.Sprintf("127.%d.%d.%d:40000", 1+i>>16, i>>8&0xff, i&0xff)
}

// TestFloodOpensNoSession sends KCP pushes and garbage from 100,000
// spoofed sources that never answer, while real clients greet: every real
// client is answered, during the flood and after; no session opens for a
// spoofed source, probation stays within its bounds, and no source gets
// back more than the bytes it sent (let alone guard.Factor times them).
func TestFloodOpensNoSession(t *testing.T) {
	s, pc := serveSpoofed(t, Config{NoFEC: true})
	const sources, clients = 100000, 20
	flooded := make(chan struct{})
	go func() {
		defer close(flooded)
		for i := range sources {
			if i%2 == 0 {
				pc.inject(kcpPush(uint32(i), "x"), spoofedSource(i))
			} else {
				pc.inject([]byte("garbage of twenty-four..."), spoofedSource(i))
			}
		}
	}()
	for range clients { // during the flood
		greetAfter(t, s, Config{NoFEC: true})
	}
	<-flooded
	greetAfter(t, s, Config{NoFEC: true}) // and after it
	st := s.Stats()
	// A real client sends its first packet again if the flood delays its
	// probe past its retransmission timeout: each copy is probed too.
	if st.Accepted != clients+1 || st.Probes < sources/2+clients+1 || st.Unvalidated != sources/2 {
		t.Errorf("stats = %+v; want %d sessions (the real clients'), %d probes and more for them, %d unvalidated",
			st, clients+1, sources/2, sources/2)
	}
	if st.Probation > probationMax {
		t.Errorf("probation = %d, want at most %d", st.Probation, probationMax)
	}
	push := guard.WireBytes(len(kcpPush(0, "x")), netip.AddrPort{})
	for _, i := range []int{0, 31234 * 2, sources - 2} {
		if got := pc.sentTo(spoofedSource(i)); got > push {
			t.Errorf("sent %d bytes to %s, which sent %d", got, spoofedSource(i), push)
		}
	}
	if got := pc.sentTo(spoofedSource(1)); got != 0 {
		t.Errorf("sent %d bytes to a source of garbage, want 0", got)
	}
}

// floodPackets is how many packets TestKeyedFloodOpensNothing sends:
// go test ./reliable -run KeyedFlood -args -flood 1000000 for the
// issue's figure.
var floodPackets = flag.Int("flood", 100000, "packets TestKeyedFloodOpensNothing sends")

// TestKeyedFloodOpensNothing sends, under a key, garbage, packets under a
// wrong key and replays of a real client's packets, from spoofed sources
// and from the client's own address: no session opens, each is counted,
// and real clients are answered.
func TestKeyedFloodOpensNothing(t *testing.T) {
	// No FEC: a real client's parity shards would be counted too.
	cfg := Config{Key: "secret", NoFEC: true}
	s, pc := serveSpoofed(t, cfg)
	c := dial(t, s.Addr(), cfg)
	conntest.RoundTrip(t, c, "Alice")
	captured := pc.captured()
	wrong := sealedPush(t, Config{Key: "wrong"})
	n := *floodPackets
	go func() {
		for i := range n {
			switch src := spoofedSource(i % (1 << 20)); i % 3 {
			case 0:
				pc.inject([]byte("forty bytes of garbage, forty bytes....."), src)
			case 1:
				pc.inject(wrong, src)
			default:
				cp := captured[i%len(captured)]
				if i%7 == 2 {
					src = cp.from.String()
				}
				pc.inject(cp.pkt, src)
			}
		}
	}()
	for range 10 {
		greetAfter(t, s, cfg)
	}
	conntest.WaitFor(t, func() bool { st := s.Stats(); return st.AuthFailures+st.Replays+st.Unvalidated >= uint64(n) })
	greetAfter(t, s, cfg)
	st := s.Stats()
	if st.Accepted != 12 || st.Validated != 12 {
		t.Errorf("stats = %+v; want 12 sessions, all real clients'", st)
	}
	if got := st.AuthFailures + st.Replays + st.Unvalidated; got != uint64(n) {
		t.Errorf("auth failures %d + replays %d + unvalidated %d = %d, want every one of the %d sent",
			st.AuthFailures, st.Replays, st.Unvalidated, got, n)
	}
}

// sealedPush is a KCP push sealed under cfg's cipher, as a client with
// cfg would send it.
func sealedPush(t *testing.T, cfg Config) []byte {
	t.Helper()
	_, block, err := cfg.populate()
	if err != nil {
		t.Fatal(err)
	}
	c := newCodec(block)
	return append([]byte(nil), c.seal(kcpPush(1, "Mallory"))...)
}

// TestSpoofedResetLeavesSession sends, from a live client's address,
// packets of another conversation with sn 0, which kcp-go takes as a
// reset (one of them with a length past its end, which kcp-go's listener
// does not look at); the client's session goes on answering.
func TestSpoofedResetLeavesSession(t *testing.T) {
	// A stopped clock: however slow the machine, the session is live when
	// the resets arrive.
	defer func(c func() time.Time) { gateClock = c }(gateClock)
	stopped := time.Now()
	gateClock = func() time.Time { return stopped }
	for _, cfg := range []Config{{NoFEC: true}, {}} {
		t.Run(cfg.FECString(), func(t *testing.T) {
			s, pc := serveSpoofed(t, cfg)
			c := dial(t, s.Addr(), cfg)
			conntest.RoundTrip(t, c, "Alice")
			// The server sees the client at 127.0.0.1 and its port.
			port := c.LocalAddr().(*net.UDPAddr).Port
			from := fmt.Sprintf("127.0.0.1:%d", port)
			pc.inject(kcpPush(0xdead, "x"), from)
			badLength := kcpPush(0xbeef, "")
			binary.LittleEndian.PutUint32(badLength[20:], 1000)
			pc.inject(badLength, from)
			if got := conntest.RoundTrip(t, c, "Bob"); got != "Hello Bob!\n" {
				t.Errorf("after a spoofed reset, reply = %q", got)
			}
			if st := s.Stats(); st.ResetsRefused != 2 || st.Accepted != 1 {
				t.Errorf("stats = %+v, want the reset refused and one session", st)
			}
		})
	}
}

// TestReplayOpensNothing replays a keyed client's first packet from 1,000
// spoofed sources, and to its own address: nothing opens, and each copy is
// counted.
func TestReplayOpensNothing(t *testing.T) {
	cfg := Config{Key: "secret"}
	s, pc := serveSpoofed(t, cfg)
	c := dial(t, s.Addr(), cfg)
	conntest.RoundTrip(t, c, "Alice")
	first := pc.captured()[0]
	for i := range 1000 {
		pc.inject(first.pkt, fmt.Sprintf("127.2.%d.%d:40000", i>>8, i&0xff))
	}
	pc.inject(first.pkt, first.from.String())
	greetAfter(t, s, cfg)
	// A real client probed again when its first packet is resent before
	// the probe's round trip ends (a loaded machine) makes more probes.
	if st := s.Stats(); st.Accepted != 2 || st.Replays != 1001 || st.Probes < 2 {
		t.Errorf("stats = %+v; want 2 sessions (the real clients), 1001 replays, 2 probes or more", st)
	}
}

// TestLoopsAndLowPortsDropped injects the greeting from the server's own
// address and from port 53: neither is answered, or probed.
func TestLoopsAndLowPortsDropped(t *testing.T) {
	s, pc := serveSpoofed(t, Config{NoFEC: true})
	pc.inject(kcpPush(1, "Mallory"), s.Addr().String())
	pc.inject(kcpPush(2, "Mallory"), "127.0.0.1:53")
	greetAfter(t, s, Config{NoFEC: true})
	st := s.Stats()
	if st.LoopsDropped != 1 || st.LowPortsDropped != 1 || st.Probes < 1 {
		t.Errorf("stats = %+v; want 1 loop and 1 low port dropped, 1 probe (the real client's)", st)
	}
	if got := pc.sentTo(s.Addr().String()) + pc.sentTo("127.0.0.1:53"); got != 0 {
		t.Errorf("sent %d bytes to the server itself and port 53, want 0", got)
	}
}

// TestPlainKCPClients greets from kcp-go itself, under each cipher family
// and with and without FEC: the probe is something every kcp-go client
// acknowledges unchanged.
func TestPlainKCPClients(t *testing.T) {
	for name, cfg := range map[string]Config{
		"plain": {NoFEC: true}, "fec": {}, "fec+aes-gcm": {Key: "secret"}, "salsa20": {NoFEC: true, Key: "secret", Crypt: "salsa20"},
		"none": {Key: "secret", Crypt: "none"},
	} {
		t.Run(name, func(t *testing.T) {
			s := startServer(t, "udp4", "127.0.0.1:0", message.Greet, cfg)
			c, block, err := cfg.populate()
			if err != nil {
				t.Fatal(err)
			}
			d, p := c.DataShards, c.ParityShards
			if c.NoFEC {
				d, p = 0, 0
			}
			sess, err := kcp.DialWithOptions(s.Addr().String(), block, d, p)
			if err != nil {
				t.Fatal(err)
			}
			defer sess.Close()
			sess.SetDeadline(time.Now().Add(conntest.Timeout))
			if _, err := sess.Write([]byte("Alice")); err != nil {
				t.Fatal(err)
			}
			buf := make([]byte, 1500)
			n, err := sess.Read(buf)
			if err != nil || string(buf[:n]) != "Hello Alice!\n" {
				t.Errorf("plain kcp-go client got %q, %v", buf[:n], err)
			}
		})
	}
}

// TestShutdownAnswersAccepted pipelines requests from several clients,
// then drains: every request the server read is answered, every answer
// arrives, in order, and the drain ends on its own. On an idle machine
// every request is read before the drain settles; a loaded one may leave
// some unsent by the clients, which the server never acknowledged.
func TestShutdownAnswersAccepted(t *testing.T) {
	s := startServer(t, "udp4", "127.0.0.1:0", message.Greet, Config{})
	const clients, n = 5, 100
	ctx := context.Background()
	conns := make([]*Conn, clients)
	for k := range conns {
		conns[k] = dial(t, s.Addr(), Config{})
		conntest.RoundTrip(t, conns[k], "first")
		for i := range n {
			if err := conns[k].Send(ctx, fmt.Appendf(nil, "c%dn%d", k, i)); err != nil {
				t.Fatal(err)
			}
		}
	}
	before := s.Stats().Requests
	dctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	if err := s.Shutdown(dctx); err != nil {
		t.Fatalf("Shutdown = %v, want nil", err)
	}
	st := s.Stats()
	if st.Replies != st.Requests || st.Requests < before {
		t.Fatalf("after the drain: %d requests read (%d before it), %d answered; want every one answered", st.Requests, before, st.Replies)
	}
	received := 0
	for k, c := range conns {
		for i := 0; i < n && received < int(st.Replies)-clients; i++ {
			rctx, cancel := context.WithTimeout(ctx, conntest.Timeout)
			got, err := c.Receive(rctx)
			cancel()
			if err != nil {
				break // this client had fewer requests read
			}
			if want := fmt.Sprintf("Hello c%dn%d!\n", k, i); string(got) != want {
				t.Fatalf("client %d's reply %d = %q; want %q", k, i, got, want)
			}
			received++
		}
	}
	if received != int(st.Replies)-clients {
		t.Errorf("received %d replies; the server answered %d requests after the first of each client", received, int(st.Replies)-clients)
	}
	t.Logf("%d of %d requests read and answered before the drain settled", st.Requests-clients, clients*n)
	// A new client finds the server closed.
	if _, err := conntest.Request(dial(t, s.Addr(), Config{}), []byte("late"), 200*time.Millisecond); err == nil {
		t.Error("a client after the drain was answered")
	}
}

// clockedGate is a gate over a recordConn on a clock the test moves by
// setting *now.
func clockedGate(t *testing.T) (g *gate, rc *recordConn, now *time.Time) {
	rc = &recordConn{}
	g = newGate(rc, nil, &Config{ReceiveWindow: 512})
	t.Cleanup(g.sources.Close)
	at := time.Unix(1e9, 0)
	g.now = func() time.Time { return at }
	return g, rc, &at
}

// recordConn is a PacketConn that records what is written to it and reads
// nothing.
type recordConn struct {
	net.PacketConn // nil: only WriteTo and LocalAddr are called
	writes         [][]byte
}

func (c *recordConn) WriteTo(p []byte, _ net.Addr) (int, error) {
	c.writes = append(c.writes, append([]byte(nil), p...))
	return len(p), nil
}

func (c *recordConn) LocalAddr() net.Addr {
	return &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 6001}
}

// TestGateSteps walks one source through the gate on a fake clock: its
// push is held and probed; the probe is a push one below the client's una,
// of no data, within the bytes it answers; the acknowledgement validates
// the source and releases the held packet; a second acknowledgement of a
// probe is kept from kcp-go; another conversation from the same address is
// refused until the session has been silent for resetIdle.
func TestGateSteps(t *testing.T) {
	g, rc, now := clockedGate(t)
	src := &net.UDPAddr{IP: net.IPv4(127, 0, 0, 9), Port: 40000}

	first := kcpPush(7, "Alice")
	binary.LittleEndian.PutUint32(first[16:], 3) // una: the client expects sn 3 next
	if g.admit(first, src) {
		t.Fatal("a new source's push went through")
	}
	if len(rc.writes) != 1 || len(rc.writes[0]) > len(first) {
		t.Fatalf("probes = %q, want one no longer than the push", rc.writes)
	}
	probe, _, ok := nextSegment(rc.writes[0])
	if want := (segment{conv: 7, cmd: kcp.IKCP_CMD_PUSH, wnd: 512, ts: probe.ts, sn: 2}); !ok || probe != want {
		t.Fatalf("probe = %+v, want %+v", probe, want)
	}

	ack := appendSegment(nil, segment{conv: 7, cmd: kcp.IKCP_CMD_ACK, ts: probe.ts, sn: 2, una: 3})
	if g.admit(ack, src) || g.pending == nil || len(g.pending.pkts) != 1 || string(g.pending.pkts[0]) != string(first) {
		t.Fatalf("after the acknowledgement: pending = %+v, want the held push", g.pending)
	}
	if g.admit(ack, src) {
		t.Error("a second acknowledgement of a probe went through to kcp-go")
	}
	if !g.admit(kcpPush(7, "Bob"), src) {
		t.Error("a validated source's push was refused")
	}
	// A datagram as long as an FEC type field, and no longer (the
	// fuzzer's first find: cutting its header off panicked): from a new
	// source it is dropped; from a validated one it goes on to kcp-go,
	// which drops what is shorter than a segment.
	for _, short := range [][]byte{{0, 0, 0, 0, 0xf1, 0}, {0, 0, 0, 0, 0xf1, 0, 0}} {
		g.admit(short, src)
		if g.admit(short, &net.UDPAddr{IP: net.IPv4(127, 0, 0, 10), Port: 40000}) {
			t.Errorf("%q from a new source went through", short)
		}
	}
	// A parity shard has no conversation id of its own to check.
	parity := append([]byte{9, 0, 0, 0, 0xf2, 0, 30, 0}, make([]byte, 28)...)
	if !g.admit(parity, src) {
		t.Error("a validated source's FEC parity shard was refused")
	}
	if g.admit(kcpPush(8, "reset"), src) {
		t.Error("another conversation from a live session's address went through")
	}
	// kcp-go reads a conversation id where this reader finds no whole
	// segment: a push whose length runs past the packet, and an
	// out-of-band packet. Each would end the session there.
	badLength := kcpPush(9, "")
	binary.LittleEndian.PutUint32(badLength[20:], 1000)
	oob := append([]byte{0, 0, 0, 0, 0xf3, 0, 12, 0}, 9, 0, 0, 0)
	for _, reset := range [][]byte{badLength, oob} {
		if g.admit(reset, src) {
			t.Errorf("%q from a live session's address went through", reset)
		}
	}
	if st := g.counts.resets.Load(); st != 3 {
		t.Errorf("resets refused = %d, want 3", st)
	}
	// Silent for resetIdle, the source may start another conversation,
	// once it has answered a probe for it: a spoofer cannot.
	*now = now.Add(resetIdle / 2)
	g.admit([]byte("0123456789"), src) // garbage, which anyone may send: it must not keep the session live
	*now = now.Add(resetIdle / 2)
	restart := kcpPush(8, "restart")
	if g.admit(restart, src) || len(rc.writes) != 2 {
		t.Fatalf("another conversation after %s of silence: probes %d, want it probed, not let through", resetIdle, len(rc.writes))
	}
	probe, _, _ = nextSegment(rc.writes[1])
	ack = appendSegment(nil, segment{conv: 8, cmd: kcp.IKCP_CMD_ACK, ts: probe.ts, sn: probe.sn})
	if g.admit(ack, src) || g.pending == nil || len(g.pending.pkts) != 1 || string(g.pending.pkts[0]) != string(restart) {
		t.Fatalf("after the restart's acknowledgement: pending = %+v, want the held push", g.pending)
	}
	if p := g.peers[sourceKey(src)]; p == nil || p.conv != 8 {
		t.Errorf("peer = %+v, want conversation 8", p)
	}
	// Draining, no data segment or FEC shard goes on (kcp-go would
	// acknowledge a request the server would not answer); a bare
	// acknowledgement of a reply does.
	g.drain()
	if g.admit(kcpPush(8, "late"), src) || g.admit(parity, src) {
		t.Error("draining, a request or a parity shard went through")
	}
	if !g.admit(appendSegment(nil, segment{conv: 8, cmd: kcp.IKCP_CMD_ACK, sn: 0}), src) {
		t.Error("draining, an acknowledgement was refused")
	}
}

// TestAcceptOneFirstValidated: a chat listener's peer is the first source
// validated, not the first to send; once it has one, it hears no other
// source, and a spoofed reset does not end it.
func TestAcceptOneFirstValidated(t *testing.T) {
	pc := newSpoofConn(t)
	cfg := Config{NoFEC: true}
	// A spoofer's push arrives first; it never answers the probe.
	pc.inject(kcpPush(1, "I am your peer"), "127.0.0.77:40000")
	accepted := make(chan *Conn, 1)
	go func() {
		c, err := AcceptOne(context.Background(), pc, &cfg)
		if err != nil {
			t.Error(err)
		}
		accepted <- c
	}()
	dialer := dial(t, pc.LocalAddr(), cfg)
	ctx, cancel := context.WithTimeout(context.Background(), conntest.Timeout)
	defer cancel()
	if err := dialer.Send(ctx, []byte("hi")); err != nil {
		t.Fatal(err)
	}
	listener := <-accepted
	if listener == nil {
		t.FailNow()
	}
	defer listener.Close()
	if got := listener.RemoteAddr().(*net.UDPAddr).Port; got != dialer.LocalAddr().(*net.UDPAddr).Port {
		t.Fatalf("peer = %v, want the dialer", listener.RemoteAddr())
	}
	// A second peer is not heard from, and costs no session.
	if err := dial(t, pc.LocalAddr(), cfg).Send(ctx, []byte("intruder")); err != nil {
		t.Fatal(err)
	}
	pc.inject(kcpPush(0xdead, "reset"), fmt.Sprintf("127.0.0.1:%d", dialer.LocalAddr().(*net.UDPAddr).Port))
	for _, step := range []struct {
		from, to message.Conn
		msg      string
	}{{dialer, listener, "hi"}, {listener, dialer, "after the reset"}} {
		if step.msg != "hi" {
			if err := step.from.Send(ctx, []byte(step.msg)); err != nil {
				t.Fatal(err)
			}
		}
		got, err := step.to.Receive(ctx)
		if err != nil || string(got) != step.msg {
			t.Fatalf("Receive = %q, %v; want %q", got, err, step.msg)
		}
	}
}

// TestReassemblyBudget: a long message that would take reassembly past the
// server's budget drops its session, counted, gives its memory back, and
// the server goes on greeting.
func TestReassemblyBudget(t *testing.T) {
	defer func(n int64) { reassemblyBudget = n }(reassemblyBudget)
	reassemblyBudget = 10000 // the first growth of a reader (6 kB) fits, the second does not
	s := startServer(t, "udp4", "127.0.0.1:0", message.Echo, Config{})
	c := dial(t, s.Addr(), Config{})
	ctx, cancel := context.WithTimeout(context.Background(), conntest.Timeout)
	defer cancel()
	if err := c.Send(ctx, make([]byte, 100000)); err != nil {
		t.Fatal(err)
	}
	conntest.WaitFor(t, func() bool { return s.Stats().ReassemblyRefused == 1 })
	conntest.WaitFor(t, func() bool { return s.asm.Left() == reassemblyBudget })
	if got := conntest.RoundTrip(t, dial(t, s.Addr(), Config{}), "Alice"); got != "Alice" {
		t.Errorf("after the refusal, echo = %q", got)
	}
}

// TestWarnsOfUnauthenticatedCipher: a key under a cipher that only carries
// a CRC32 (or nothing) is logged as not authenticating packets.
func TestWarnsOfUnauthenticatedCipher(t *testing.T) {
	for _, tt := range []struct {
		crypt string
		warn  bool
	}{{"aes-128-gcm", false}, {"salsa20", true}, {"none", true}, {"xor", true}, {"null", true}} {
		var logs bytes.Buffer
		pc, err := net.ListenPacket("udp4", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		s, err := NewServer(pc, message.Greet, &Config{Key: "k", Crypt: tt.crypt, Logger: slog.New(slog.NewTextHandler(&logs, nil))})
		if err != nil {
			t.Fatal(err)
		}
		s.Close()
		if got := strings.Contains(logs.String(), "does not authenticate packets"); got != tt.warn {
			t.Errorf("--crypt %s: warned = %v, want %v; logs: %s", tt.crypt, got, tt.warn, logs.String())
		}
	}
}

// TestGatePeerLifetime: a validated source stays while kcp-go has a
// session at its address, whichever order a restart's sessions open and
// close in, and is forgotten with its last; one that never opens a
// session is forgotten after probationLease.
func TestGatePeerLifetime(t *testing.T) {
	g, rc, now := clockedGate(t)
	src := &net.UDPAddr{IP: net.IPv4(127, 0, 0, 9), Port: 40000}
	validate := func(conv uint32) {
		t.Helper()
		n := len(rc.writes)
		g.admit(kcpPush(conv, "hi"), src)
		if len(rc.writes) != n+1 {
			t.Fatalf("no probe for conversation %d", conv)
		}
		probe, _, _ := nextSegment(rc.writes[n])
		g.admit(appendSegment(nil, segment{conv: conv, cmd: kcp.IKCP_CMD_ACK, ts: probe.ts, sn: probe.sn}), src)
		g.pending = nil
	}
	passes := func() bool { return g.admit(kcpPush(7, "x"), src) }

	validate(7)
	*now = now.Add(probationLease)
	if passes() {
		t.Fatal("a source with no session was kept past probationLease")
	}
	validate(7)
	g.bind(src) // session C
	g.bind(src) // a restart's session X opens before C ends
	g.unbind(src)
	*now = now.Add(2 * probationLease)
	if !passes() {
		t.Fatal("a source with a session open was forgotten")
	}
	g.unbind(src) // X ends: nothing left
	if passes() {
		t.Fatal("a source whose last session ended is still validated")
	}
	validate(7)
	g.bind(src)
	g.unbind(src) // C ends before X is accepted: forgotten
	g.bind(src)   // X
	validate(7)   // X's next packet is probed once more
	*now = now.Add(2 * probationLease)
	if !passes() {
		t.Fatal("a source validated again while its session is open was expired")
	}
}

// TestReplacedSessionEnds restarts a keyed kcp-go client on the same port
// under a new conversation, which replaces its session: the old one is
// forgotten as any ended session is (out of the server's set, the gate and
// the drain's count), so the server holds one session and drains at once.
func TestReplacedSessionEnds(t *testing.T) {
	cfg := Config{Key: "secret", NoFEC: true}
	s := startServer(t, "udp4", "127.0.0.1:0", message.Greet, cfg)
	_, block, err := cfg.populate()
	if err != nil {
		t.Fatal(err)
	}
	port := 0
	for conv := uint32(1); conv <= 3; conv++ {
		uc, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: port})
		if err != nil {
			t.Fatal(err)
		}
		port = uc.LocalAddr().(*net.UDPAddr).Port
		sess, err := kcp.NewConn3(conv, s.Addr(), block, 0, 0, uc)
		if err != nil {
			t.Fatal(err)
		}
		sess.SetDeadline(time.Now().Add(conntest.Timeout))
		buf := make([]byte, 1500)
		if _, err := sess.Write([]byte("Alice")); err != nil {
			t.Fatal(err)
		}
		if n, err := sess.Read(buf); err != nil || string(buf[:n]) != "Hello Alice!\n" {
			t.Fatalf("conversation %d got %q, %v", conv, buf[:n], err)
		}
		sess.Close()
		uc.Close()
	}
	if st := s.Stats(); st.Sessions != 1 || st.Accepted != 3 {
		t.Errorf("stats = %+v; want 1 session open of 3 accepted", st)
	}
	if n := s.drain.open.Load(); n != 1 {
		t.Errorf("the drain counts %d sessions open, want 1", n)
	}
	ctx, cancel := context.WithTimeout(context.Background(), conntest.Timeout)
	defer cancel()
	if err := s.Shutdown(ctx); err != nil {
		t.Errorf("Shutdown: %v", err)
	}
}
