package link

import (
	"bytes"
	"context"
	"fmt"
	"math"
	"net"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"testing/synctest"
	"time"

	"github.com/udplab/udplab/internal/conntest"
	"github.com/udplab/udplab/internal/sockstat"
	"github.com/udplab/udplab/message"
	"github.com/udplab/udplab/raw"
)

// proxied starts a raw greeting server and a proxy in front of it with the
// given link, all on loopback, and returns a client dialled to the proxy.
func proxied(t *testing.T, spec string, opts *Options) (*raw.Conn, *Proxy, *Link) {
	t.Helper()
	l := newLink(t, spec, opts)
	c, p, _ := proxiedBy(t, ProxyConfig{Link: l})
	return c, p, l
}

// proxiedBy starts a raw greeting server and a proxy configured by cfg
// in front of it, on loopback, and returns a client dialled to the proxy
// and the server's address. cfg's Listen, To and Idle are set here.
func proxiedBy(t *testing.T, cfg ProxyConfig) (*raw.Conn, *Proxy, net.Addr) {
	t.Helper()
	srv, err := raw.Listen("127.0.0.1:0", message.Greet, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	cfg.Listen, cfg.To, cfg.Idle = "127.0.0.1:0", srv.Addr().String(), time.Minute
	p, err := NewProxy(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	c, err := raw.Dial(p.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c, p, srv.Addr()
}

type reply struct {
	seq int
	rtt time.Duration
}

// greetMany sends n greetings named by sequence number, spaced by gap, and
// collects replies until quiet has passed with none: every wait is bounded.
func greetMany(t *testing.T, c *raw.Conn, n int, gap, quiet time.Duration, size int) []reply {
	t.Helper()
	sent := make([]time.Time, n)
	var mu sync.Mutex
	pad := strings.Repeat("x", max(0, size-8))
	go func() {
		for i := range n {
			mu.Lock()
			sent[i] = time.Now()
			mu.Unlock()
			c.Send(context.Background(), fmt.Appendf(nil, "%08d%s", i, pad))
			if gap > 0 {
				time.Sleep(gap)
			}
		}
	}()
	var got []reply
	deadline := time.Now().Add(time.Duration(n)*gap + 10*time.Second)
	for time.Now().Before(deadline) {
		ctx, cancel := context.WithTimeout(context.Background(), quiet+time.Duration(n-len(got))*gap)
		msg, err := c.Receive(ctx)
		cancel()
		if err != nil {
			break
		}
		seq, err := strconv.Atoi(strings.TrimPrefix(string(msg[:14]), "Hello "))
		if err != nil {
			t.Fatalf("reply %q", msg)
		}
		mu.Lock()
		got = append(got, reply{seq, time.Since(sent[seq])})
		mu.Unlock()
	}
	return got
}

// TestProxyLoss: 20% loss each way lets 0.8 × 0.8 = 64% of round trips
// through.
func TestProxyLoss(t *testing.T) {
	const n = 2000
	c, _, l := proxied(t, "loss=20%", nil)
	got := greetMany(t, c, n, 50*time.Microsecond, 300*time.Millisecond, 8)
	want, sigma := 0.64*n, math.Sqrt(n*0.64*0.36)
	if math.Abs(float64(len(got))-want) > 3*sigma {
		t.Errorf("%d of %d round trips completed, want %.0f ± %.0f", len(got), n, want, 3*sigma)
	}
	up, down := l.Stats(Up), l.Stats(Down)
	if up.Offered != n || down.Offered != up.Delivered || uint64(len(got)) != down.Delivered {
		t.Errorf("up %+v, down %+v, %d replies: the counters do not add up", up, down, len(got))
	}
}

// TestProxyDelay runs in virtual time: 50 ms ± 10 ms each way puts every
// round trip between 80 and 120 ms, and jitter reorders nothing. With
// requests 2 ms apart, closer than the jitter, keeping order holds packets
// back behind later-drawn ones, so the median rises above 100 ms (108 ms
// with the default seed).
func TestProxyDelay(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		m := newMemProxy(t, "delay=50ms,jitter=10ms", time.Minute)
		const n = 200
		start := time.Now()
		go func() { // ends after its last send, long before the replies
			for i := range n {
				m.client.WriteTo(fmt.Appendf(nil, "%08d", i), m.proxy.Addr())
				time.Sleep(2 * time.Millisecond)
			}
		}()
		rtts := make([]time.Duration, n)
		b := make([]byte, 64)
		for i := range n {
			k, _, err := m.client.ReadFrom(b)
			if err != nil {
				t.Fatal(err)
			}
			seq, err := strconv.Atoi(strings.TrimSuffix(strings.TrimPrefix(string(b[:k]), "Hello "), "!\n"))
			if err != nil || seq != i {
				t.Fatalf("reply %d is %q: out of order", i, b[:k])
			}
			rtts[i] = time.Since(start.Add(time.Duration(i) * 2 * time.Millisecond))
			if rtts[i] < 80*time.Millisecond || rtts[i] > 120*time.Millisecond {
				t.Errorf("round trip %d took %v, want 80ms to 120ms", i, rtts[i])
			}
		}
		slices.Sort(rtts)
		if med := rtts[n/2]; med <= 100*time.Millisecond || med > 115*time.Millisecond {
			t.Errorf("median round trip %v, want a little above 100ms", med)
		}
	})
}

func TestProxyReorder(t *testing.T) {
	c, _, l := proxied(t, "delay=20ms,reorder=25%", nil)
	got := greetMany(t, c, 300, time.Millisecond, 200*time.Millisecond, 8)
	late := 0
	for i := 1; i < len(got); i++ {
		if got[i].seq < got[i-1].seq {
			late++
		}
	}
	if late == 0 || l.Stats(Up).Reordered == 0 {
		t.Errorf("reorder=25%%: %d replies out of order, %d reordered; want some", late, l.Stats(Up).Reordered)
	}
}

// memProxy is a proxy over the in-memory network, with a raw greeting
// server behind it, for tests inside a synctest bubble: no real socket,
// so virtual time is exact.
type memProxy struct {
	client *memConn
	proxy  *Proxy
	link   *Link
}

func newMemProxy(t *testing.T, spec string, idle time.Duration) *memProxy {
	t.Helper()
	l := newLink(t, spec, nil)
	n := newMemNet()
	srv := raw.NewServer(n.listen("server"), message.Greet, nil)
	ups := 0
	dial := func() (net.PacketConn, error) { // called by the proxy's reader only
		ups++
		return n.listen(fmt.Sprintf("upstream%d", ups)), nil
	}
	p, err := NewProxyConn(n.listen("proxy"), memAddr("server"), dial, ProxyConfig{Link: l, Idle: idle})
	if err != nil {
		t.Fatal(err)
	}
	m := &memProxy{client: n.listen("client"), proxy: p, link: l}
	t.Cleanup(func() { m.client.Close(); p.Close(); srv.Close() })
	return m
}

func (m *memProxy) send(t *testing.T, name []byte) {
	t.Helper()
	if _, err := m.client.WriteTo(name, m.proxy.Addr()); err != nil {
		t.Fatal(err)
	}
}

// TestProxyRate runs in virtual time: at 1 Mbit/s each way, with four
// requests of 1000 bytes in flight, the 1008-byte replies leave the down
// direction back to back, one every (1008+28)·8 µs, so round trips come
// exactly that often: 120.7 a second.
func TestProxyRate(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		m := newMemProxy(t, "rate=1mbit", time.Minute)
		const size, window, replies = 1000, 4, 120
		serialize := func(n int) time.Duration { // as the rate limiter computes it
			return time.Duration(float64((n+HeaderBytes)*8) / float64(1e6) * float64(time.Second))
		}
		name := bytes.Repeat([]byte("r"), size)
		start := time.Now()
		for range window {
			m.send(t, name)
		}
		prev := start
		for i := range replies {
			b := make([]byte, 2*size)
			n, _, err := m.client.ReadFrom(b)
			if err != nil || n != size+8 {
				t.Fatalf("reply %d: %d bytes, %v", i, n, err)
			}
			want := serialize(size + 8) // the down direction is the bottleneck
			if i == 0 {
				want += serialize(size) // the first request's trip up
			}
			if gap := time.Since(prev); gap != want {
				t.Fatalf("reply %d came %v after the one before, want %v exactly", i, gap, want)
			}
			prev = time.Now()
			m.send(t, name)
		}
		if got, want := time.Since(start), serialize(size)+replies*serialize(size+8); got != want {
			t.Errorf("%d replies took %v, want %v", replies, got, want)
		}
	})
}

// TestProxySameSeedSameTrace: the same traffic through two proxies with
// the same seed gives the same fates, packet by packet. How up and down
// records interleave depends on timing; each line names its direction and
// index, so sorted traces are equal exactly when every packet's fate is.
func TestProxySameSeedSameTrace(t *testing.T) {
	run := func() string {
		var tr bytes.Buffer
		c, p, l := proxied(t, "loss=20%,dup=5%,seed=11", &Options{Trace: &tr})
		greetMany(t, c, 300, 100*time.Microsecond, 200*time.Millisecond, 8)
		p.Close()
		l.Close()
		lines := strings.Split(strings.TrimSpace(tr.String()), "\n")
		slices.Sort(lines)
		return strings.Join(lines, "\n")
	}
	a, b := run(), run()
	if a != b || strings.Count(a, "\n") < 500 {
		la, lb := strings.Split(a, "\n"), strings.Split(b, "\n")
		i := 0
		for i < min(len(la), len(lb)) && la[i] == lb[i] {
			i++
		}
		t.Errorf("traces differ or are short: %d and %d lines, first difference at line %d:\n%s\n---\n%s", len(la), len(lb), i, strings.Join(la[i:min(i+3, len(la))], "\n"), strings.Join(lb[i:min(i+3, len(lb))], "\n"))
	}
}

// TestProxyExpiresIdleClients runs in virtual time: with Idle 40ms the
// proxy looks every 10ms and forgets a client silent for more than 40ms,
// so a client last heard at 0 goes at the look at 50ms, not before.
func TestProxyExpiresIdleClients(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		m := newMemProxy(t, "", 40*time.Millisecond)
		roundTrip := func() {
			t.Helper()
			m.send(t, []byte("Alice"))
			b := make([]byte, 64)
			n, _, err := m.client.ReadFrom(b)
			if got := string(b[:n]); err != nil || got != "Hello Alice!\n" {
				t.Fatalf("through the proxy: %q, %v", got, err)
			}
		}
		roundTrip()
		synctest.Wait()
		if m.proxy.Clients() != 1 {
			t.Fatalf("Clients = %d, want 1", m.proxy.Clients())
		}
		time.Sleep(50*time.Millisecond - time.Nanosecond)
		synctest.Wait()
		if m.proxy.Clients() != 1 || m.proxy.Expired() != 0 {
			t.Fatalf("just before 50ms: Clients = %d, Expired = %d; want 1, 0", m.proxy.Clients(), m.proxy.Expired())
		}
		time.Sleep(time.Nanosecond)
		synctest.Wait()
		if m.proxy.Clients() != 0 || m.proxy.Expired() != 1 {
			t.Fatalf("at 50ms: Clients = %d, Expired = %d; want 0, 1", m.proxy.Clients(), m.proxy.Expired())
		}
		// A client coming back gets a new upstream socket.
		roundTrip()
		if m.proxy.Clients() != 1 {
			t.Errorf("after expiry: Clients = %d, want 1", m.proxy.Clients())
		}
		// In-memory sockets have no kernel counters.
		for _, d := range []Direction{Up, Down} {
			if c := m.proxy.SocketDrops(d); c.Known {
				t.Errorf("SocketDrops(%v) over memory = %+v, known; want unknown", d, c)
			}
		}
	})
}

// stalledConn is a UDP socket whose reads wait until open is closed:
// what arrives before piles up in its small receive buffer, and what does
// not fit the kernel drops and counts.
type stalledConn struct {
	*net.UDPConn
	open, closed chan struct{}
	once         sync.Once
}

func newStalledConn(open chan struct{}) (*stalledConn, error) {
	u, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		return nil, err
	}
	u.SetReadBuffer(32 << 10) // some tens of small datagrams
	return &stalledConn{UDPConn: u, open: open, closed: make(chan struct{})}, nil
}

func (c *stalledConn) ReadFrom(b []byte) (int, net.Addr, error) {
	select {
	case <-c.open:
		return c.UDPConn.ReadFrom(b)
	case <-c.closed:
		return 0, nil, net.ErrClosed
	}
}

// SyscallConn stalls reads through the descriptor too, as the proxy reads
// an upstream socket that way; Control still reaches it, for its drops.
func (c *stalledConn) SyscallConn() (syscall.RawConn, error) {
	rc, err := c.UDPConn.SyscallConn()
	return stalledRaw{rc, c}, err
}

type stalledRaw struct {
	syscall.RawConn
	c *stalledConn
}

func (r stalledRaw) Read(f func(fd uintptr) bool) error {
	select {
	case <-r.c.open:
		return r.RawConn.Read(f)
	case <-r.c.closed:
		return net.ErrClosed
	}
}

func (c *stalledConn) Close() error {
	c.once.Do(func() { close(c.closed) })
	return c.UDPConn.Close()
}

// bigConn is a loopback UDP socket with a big receive buffer.
func bigConn(t testing.TB) *net.UDPConn {
	t.Helper()
	u, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	sockstat.SetBuffers(u)
	t.Cleanup(func() { u.Close() })
	return u
}

// flood sends n datagrams of 100 bytes from c to addr.
func flood(t *testing.T, c *net.UDPConn, addr net.Addr, n int) {
	t.Helper()
	for range n {
		if _, err := c.WriteTo(make([]byte, 100), addr); err != nil {
			t.Fatal(err)
		}
	}
}

// drain reads exactly n datagrams from c, each within a bound, and
// returns where the last came from.
func drain(t *testing.T, c *net.UDPConn, n uint64) net.Addr {
	t.Helper()
	var from net.Addr
	b := make([]byte, 2048)
	for i := range n {
		c.SetReadDeadline(time.Now().Add(conntest.Timeout))
		var err error
		if _, from, err = c.ReadFrom(b); err != nil {
			t.Fatalf("datagram %d of %d: %v", i, n, err)
		}
	}
	return from
}

// settled waits until every datagram sent one way has reached the link or
// been dropped before it, and the link has let go of all of them.
func settled(t *testing.T, p *Proxy, l *Link, d Direction, sent uint64) (Stats, uint64) {
	t.Helper()
	var (
		st    Stats
		drops uint64
	)
	conntest.WaitFor(t, func() bool {
		c := p.SocketDrops(d)
		if !c.Known || c.Floor {
			t.Fatalf("SocketDrops(%v) = %+v on Linux, without GRO: want known and exact", d, c)
		}
		drops = c.N
		st = l.Stats(d)
		return st.Offered+drops+p.Refused() == sent && st.Delivered+st.Lost == st.Offered && st.Queued == 0
	})
	return st, drops
}

// TestProxySocketDropsAddUp floods the proxy while it is not reading, so
// the kernel drops at its sockets, and checks that every datagram has a
// cause, each way: sent = received + lost at the link + dropped at the
// proxy's socket + dropped at the receiver's socket. Then the client
// expires and the proxy closes, and the count stays.
func TestProxySocketDropsAddUp(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("socket drops are read from /proc on Linux only")
	}
	const sent = 400
	upOpen, downOpen := make(chan struct{}), make(chan struct{})
	listen, err := newStalledConn(upOpen)
	if err != nil {
		t.Fatal(err)
	}
	server, client := bigConn(t), bigConn(t)
	l := newLink(t, "loss=25%,seed=5", nil)
	dial := func() (net.PacketConn, error) { return newStalledConn(downOpen) }
	p, err := NewProxyConn(listen, server.LocalAddr(), dial, ProxyConfig{Link: l, Idle: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })

	check := func(d Direction, rx *net.UDPConn) (uint64, net.Addr) {
		t.Helper()
		st, drops := settled(t, p, l, d, sent)
		rxDrops, ok := sockstat.Drops(sockstat.Of(rx))
		if !ok {
			t.Fatal("the receiver's socket drops are unknown")
		}
		got := st.Delivered - rxDrops
		t.Logf("%v: sent %d = received %d + link lost %d + proxy socket drops %d + receiver socket drops %d + refused %d", d, sent, got, st.Lost, drops, rxDrops, p.Refused())
		from := drain(t, rx, got)
		if got+st.Lost+drops+rxDrops+p.Refused() != sent || drops == 0 || st.Lost == 0 {
			t.Errorf("%v: sent %d, received %d + link lost %d + proxy socket drops %d + receiver socket drops %d + refused %d; want the sum equal and some of each drop",
				d, sent, got, st.Lost, drops, rxDrops, p.Refused())
		}
		return drops, from
	}
	flood(t, client, listen.LocalAddr(), sent)
	close(upOpen)
	_, upstream := check(Up, server)
	flood(t, server, upstream, sent)
	close(downOpen)
	downDrops, _ := check(Down, client)
	upDrops := p.SocketDrops(Up).N

	p.expireIdle(time.Now().Add(2 * time.Hour))
	if c := p.SocketDrops(Down); p.Expired() != 1 || c != (SocketDropCount{N: downDrops, Known: true}) {
		t.Errorf("after expiry: Expired %d, SocketDrops(Down) = %+v; want 1, %d known", p.Expired(), c, downDrops)
	}
	p.Close()
	for d, want := range []uint64{Up: upDrops, Down: downDrops} {
		if c := p.SocketDrops(Direction(d)); c != (SocketDropCount{N: want, Known: true}) {
			t.Errorf("after Close: SocketDrops(%v) = %+v; want %d known", Direction(d), c, want)
		}
	}
}

var _ net.Addr = memAddr("")
