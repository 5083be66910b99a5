package link

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/udplab/udplab/internal/batch"
	"github.com/udplab/udplab/internal/logrl"
	"github.com/udplab/udplab/internal/sockstat"
	"github.com/udplab/udplab/internal/udpsock"
)

// ProxyConfig configures a Proxy. Link is required; NewProxy needs Listen
// and To as well.
type ProxyConfig struct {
	Listen string // address clients send to; NewProxyConn takes a socket instead
	To     string // the server's address; NewProxyConn takes an address instead
	Link   *Link  // the impairments: Up on the way to To, Down on the way back
	// Idle is how long a client may stay silent before its upstream socket
	// is closed. Zero means 60s.
	Idle time.Duration
	// MaxClients bounds the upstream sockets; datagrams from further
	// clients are dropped and counted. Zero means DefaultMaxClients.
	MaxClients int
	// Logger gets client arrivals and expiries at debug level, and
	// refused clients and failed upstream sockets as warnings, each kind
	// at most once a second with a count of those suppressed. Nil means
	// slog.Default().
	Logger *slog.Logger
	// ExactDrops keeps UDP GRO off on the proxy's sockets, so that
	// SocketDrops counts every datagram dropped, at the cost of much of
	// the proxy's speed with senders that use UDP GSO (see Proxy).
	ExactDrops bool
	// Capture, when set, records every datagram entering and leaving the
	// link (see Capture). The proxy does not close it; close it after the
	// proxy, so that it has every packet. Nil captures nothing.
	Capture *Capture
}

// DefaultMaxClients is ProxyConfig.MaxClients when zero. A client costs an
// upstream socket (a file descriptor), a goroutine and a few KiB, and holds
// no read buffer while its socket is idle (see newUpstreamReader), so 1024
// of them, a flood of new source addresses included, take a few MiB. The
// open-files limit (often 1024) may refuse new clients before this does:
// they are counted and logged just the same.
const DefaultMaxClients = 1024

// Proxy relays datagrams between clients and one server through a Link,
// so that any UDP program can be put behind impairments. Each client
// address gets its own upstream socket, so the server's replies find their
// way back.
//
// Where the kernel has UDP GRO, the proxy's sockets take runs of
// datagrams a UDP GSO sender sent together as one (and the proxy cuts
// them again), so that a run crosses the kernel's stack once on the way
// in, as it did on the way out: with GSO senders that is most of the
// proxy's speed. The kernel then drops a run its socket has no room for
// whole, and counts it once, so that once such a socket has dropped
// anything, SocketDrops can say only that at least so many datagrams
// were dropped (SocketDropCount.Floor). ProxyConfig.ExactDrops keeps
// GRO off where exact counts matter more.
type Proxy struct {
	cfg        ProxyConfig
	pc         net.PacketConn
	listenSock sockstat.Socket
	listenGRO  bool // the listening socket takes coalesced runs
	to         net.Addr
	dial       func() (net.PacketConn, error)

	log        *logrl.Logger // cfg.Logger, at most a line a second per kind
	maxClients any           // cfg.MaxClients, boxed once so that a suppressed line allocates nothing

	mu      sync.Mutex
	clients map[clientKey]*proxyClient
	peak    int // most clients in the map since it was made
	closed  bool
	gone    SocketDropCount    // socket drops at the upstream sockets closed so far
	final   [2]SocketDropCount // both directions' socket drops as Close found them

	refused atomic.Uint64
	expired atomic.Uint64

	wg        sync.WaitGroup
	closeOnce sync.Once
	done      chan struct{}
}

// clientKey tells clients apart by their address.
type clientKey struct {
	ap   netip.AddrPort // a UDP client, IPv4-mapped addresses unmapped
	name string         // a client with any other kind of address
}

type proxyClient struct {
	addr net.Addr
	up   net.PacketConn // to the server
	sock sockstat.Socket
	gro  bool         // up takes coalesced runs
	last atomic.Int64 // unix nanoseconds of the last datagram either way

	// Where Up and Down deliver: up and the listening socket, recorded by
	// the proxy's Capture if it has one, with the addresses it records.
	upOut, downOut     sink
	upAddr, listenAddr netip.AddrPort
}

// SocketDropCount is how many datagrams the kernel dropped at some of
// the proxy's sockets because their receive buffers were full.
type SocketDropCount struct {
	N uint64
	// Known is false where the counters cannot be read (outside Linux,
	// or for sockets that are not UDP sockets); then N means nothing.
	Known bool
	// Floor is true where a socket taking coalesced runs (UDP GRO, see
	// Proxy) dropped: each drop it counted was one datagram or a run of
	// up to UDP_MAX_SEGMENTS (128 since Linux 6.9, 64 before), so at
	// least N datagrams were dropped, and at most 128·N.
	Floor bool
}

// add adds n drops at one socket, which takes coalesced runs if gro.
func (c *SocketDropCount) add(n uint64, known, gro bool) {
	c.N += n
	c.Known = c.Known && known
	c.Floor = c.Floor || (gro && n > 0)
}

// NewProxy binds cfg.Listen and starts relaying to cfg.To until Close.
// Every socket it opens gets sockstat.BufferSize buffers.
func NewProxy(cfg ProxyConfig) (*Proxy, error) {
	if cfg.Link == nil {
		return nil, errors.New("link: proxy needs a Link")
	}
	to, err := net.ResolveUDPAddr("udp", cfg.To)
	if err != nil {
		return nil, fmt.Errorf("link: proxy to %q: %w", cfg.To, err)
	}
	laddr, err := net.ResolveUDPAddr("udp", cfg.Listen)
	if err != nil {
		return nil, fmt.Errorf("link: proxy listen %q: %w", cfg.Listen, err)
	}
	pc, err := net.ListenUDP("udp", laddr)
	if err != nil {
		return nil, fmt.Errorf("link: proxy: %w", err)
	}
	sockstat.SetBuffers(pc)
	return NewProxyConn(pc, to, func() (net.PacketConn, error) { return dialUpstream(to) }, cfg)
}

// dialUpstream opens a client's socket towards the server at to.
func dialUpstream(to *net.UDPAddr) (net.PacketConn, error) {
	up, _, err := udpsock.Dial(to.String())
	if err != nil {
		return nil, err
	}
	sockstat.SetBuffers(up)
	return up, nil
}

// NewProxyConn relays as NewProxy does, over sockets the caller opened:
// clients send to listen, and dial opens each new client's upstream
// socket, from which the proxy sends to the server at to. cfg.Listen and
// cfg.To are ignored. The proxy takes listen and every socket dial returns
// over: Close closes them, and NewProxyConn closes listen when it fails.
// Socket drops are known for sockets sockstat can read. The sockets must
// not have UDP_GRO on: the proxy turns it on itself, unless
// cfg.ExactDrops, and reads them accordingly.
func NewProxyConn(listen net.PacketConn, to net.Addr, dial func() (net.PacketConn, error), cfg ProxyConfig) (*Proxy, error) {
	if cfg.Link == nil || to == nil || dial == nil {
		listen.Close()
		return nil, errors.New("link: proxy needs a Link, a server address and a dial function")
	}
	if cfg.Idle == 0 {
		cfg.Idle = 60 * time.Second
	}
	if cfg.MaxClients == 0 {
		cfg.MaxClients = DefaultMaxClients
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	p := &Proxy{
		cfg: cfg, pc: listen, listenSock: sockstat.Of(listen), to: to, dial: dial,
		log: logrl.New(cfg.Logger, logrl.DefaultEvery), maxClients: cfg.MaxClients,
		clients: map[clientKey]*proxyClient{}, gone: SocketDropCount{Known: true}, done: make(chan struct{}),
	}
	r := p.newReader(batch.NewReader(listen, readBatch, maxDatagram))
	p.listenGRO = r.GRO()
	p.wg.Add(2)
	go p.readClients(r)
	go p.expire()
	return p, nil
}

// Addr is the address clients send to.
func (p *Proxy) Addr() net.Addr { return p.pc.LocalAddr() }

// Clients is how many clients have an upstream socket now.
func (p *Proxy) Clients() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.clients)
}

// Refused counts datagrams dropped because MaxClients was reached or an
// upstream socket could not be opened.
func (p *Proxy) Refused() uint64 { return p.refused.Load() }

// Expired counts clients whose upstream socket was closed for idleness.
func (p *Proxy) Expired() uint64 { return p.expired.Load() }

// SocketDrops counts the datagrams the kernel dropped at the proxy's own
// sockets because their receive buffers were full, before the link saw
// them: for Up at the listening socket (from clients), for Down at the
// upstream sockets (from the server), those of expired clients included.
// After Close it returns the counts as Close found them.
func (p *Proxy) SocketDrops(d Direction) SocketDropCount {
	t, ok := p.readTable()
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return p.final[d]
	}
	return p.drops(t, ok)[d]
}

// readTable reads the kernel's drop counters, unless no socket of the
// proxy could be found in them anyway.
func (p *Proxy) readTable() (sockstat.Table, bool) {
	if !p.listenSock.Known() {
		return sockstat.Table{}, false
	}
	return sockstat.Read()
}

// drops counts, with p.mu held, both directions' socket drops in t.
func (p *Proxy) drops(t sockstat.Table, ok bool) [2]SocketDropCount {
	c := [2]SocketDropCount{{Known: true}, p.gone}
	c[Up].add(dropsAt(t, p.listenSock, p.listenGRO))
	c[Down].Known = c[Down].Known && ok
	for _, cl := range p.clients {
		c[Down].add(dropsAt(t, cl.sock, cl.gro))
	}
	return c
}

// dropsAt is SocketDropCount.add's arguments for socket s in t.
func dropsAt(t sockstat.Table, s sockstat.Socket, gro bool) (uint64, bool, bool) {
	n, known := t.Drops(s)
	return n, known, gro
}

// closeClient closes c's upstream socket, with p.mu held, keeping its
// socket drops from t.
func (p *Proxy) closeClient(key clientKey, c *proxyClient, t sockstat.Table) {
	p.gone.add(dropsAt(t, c.sock, c.gro))
	c.up.Close()
	delete(p.clients, key)
}

// Close stops relaying, closes every socket and waits for the proxy's
// goroutines. It does not close the Link.
func (p *Proxy) Close() error {
	var err error
	p.closeOnce.Do(func() {
		t, ok := p.readTable()
		p.mu.Lock()
		p.final = p.drops(t, ok)
		p.closed = true
		for key, c := range p.clients {
			p.closeClient(key, c, t)
		}
		p.mu.Unlock()
		close(p.done)
		err = p.pc.Close()
	})
	p.wg.Wait()
	p.log.Flush()
	return err
}

// readBatch is how many datagrams one read takes from a socket at most:
// with many requests in flight, one recvmmsg call replaces many reads.
const readBatch = 32

// maxDatagram is the room a read needs so that no UDP datagram is cut.
const maxDatagram = 64 << 10

// readClients is the one goroutine reading the listening socket, with r:
// a batch at a time, whose deliveries go out a batch per socket.
func (p *Proxy) readClients(r *batch.Reader) {
	defer p.wg.Done()
	ob := newOutbox()
	for {
		ms, err := r.Read()
		if err != nil {
			if !errors.Is(err, net.ErrClosed) {
				p.cfg.Logger.Error("link: proxy read failed", "err", err)
			}
			return
		}
		for i := range ms {
			p.fromClient(&ms[i], ob)
			if ob.full() {
				ob.flush()
			}
		}
		ob.flush()
	}
}

// newReader is r with arrivals stamped where the kernel can (a
// datagram's delay then counts from when it reached the proxy's socket,
// not from when the proxy got round to reading it), taking coalesced runs
// unless the config wants exact drop counts (see Proxy). It is made
// before its goroutine starts, so that GRO is on before the first
// datagram and the socket's counts know whether it is.
func (p *Proxy) newReader(r *batch.Reader) *batch.Reader {
	r.EnableTimestamps()
	if !p.cfg.ExactDrops {
		r.EnableGRO()
	}
	return r
}

// fromClient passes m into the Up direction towards the server, from its
// client's upstream socket.
func (p *Proxy) fromClient(m *batch.Message, ob *outbox) {
	if !m.Addr.IsValid() && m.NetAddr == nil {
		return
	}
	c := p.client(m.Addr, m.NetAddr)
	if c == nil {
		return
	}
	c.last.Store(m.At.UnixNano())
	if p.cfg.Capture != nil {
		p.cfg.Capture.record(captureEntered, m.At, m.Addr, c.listenAddr, m.Buf)
	}
	p.cfg.Link.send(Up, m.Buf, p.to, c.upOut, ob, m.At)
}

// client returns the client at ap (or, for an address of another kind
// than UDP, at addr), opening its upstream socket on first sight, or nil
// when there is no room.
func (p *Proxy) client(ap netip.AddrPort, addr net.Addr) *proxyClient {
	key := clientKey{ap: ap}
	if !ap.IsValid() {
		key = clientKey{name: addr.String()}
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if c, ok := p.clients[key]; ok {
		return c
	}
	from := addr
	if ap.IsValid() {
		from = net.UDPAddrFromAddrPort(ap) // of its own, kept past this read
	}
	if p.closed {
		p.refused.Add(1)
		return nil
	}
	if len(p.clients) >= p.cfg.MaxClients {
		p.refused.Add(1)
		p.log.Warn("full", "link: proxy refused a client: it has MaxClients already", "client", from, "max_clients", p.maxClients)
		return nil
	}
	up, err := p.dial()
	if err != nil {
		p.refused.Add(1)
		p.log.Warn("dial", "link: proxy refused a client: cannot open an upstream socket", "client", from, "err", err)
		return nil
	}
	r := p.newReader(batch.NewPooledReader(up, upstreamBatch, maxDatagram, &upstreamPool))
	c := &proxyClient{addr: from, up: up, upOut: up, downOut: p.pc, sock: sockstat.Of(up), gro: r.GRO()}
	if cp := p.cfg.Capture; cp != nil {
		c.upAddr, c.listenAddr = captureLocal(up.LocalAddr(), p.to), captureLocal(p.pc.LocalAddr(), from)
		c.upOut, c.downOut = captureOut(up, cp, c.upAddr), captureOut(p.pc, cp, c.listenAddr)
	}
	p.clients[key] = c
	p.peak = max(p.peak, len(p.clients))
	p.log.Debug("new", "link: new client", "client", from, "upstream", up.LocalAddr())
	p.wg.Add(1)
	go p.readServer(c, r)
	return c
}

// upstreamBatch is how many datagrams an upstream read takes at most.
const upstreamBatch = 2

// upstreamPool holds the buffers upstream readers borrow while datagrams
// are ready. A reader that owned its buffers (128 KiB) would keep them
// through every idle moment of every client, and a flood of new source
// addresses would cost the proxy that much per address; borrowed, the
// buffers in use are about as many as the goroutines running.
var upstreamPool = sync.Pool{New: func() any { b := make([]byte, upstreamBatch*maxDatagram); return &b }}

// readServer relays one client's replies, read with r, back through the
// Down direction, a batch at a time.
func (p *Proxy) readServer(c *proxyClient, r *batch.Reader) {
	defer p.wg.Done()
	defer r.Release()
	ob := newOutbox()
	for {
		ms, err := r.Read()
		if err != nil {
			return
		}
		c.last.Store(ms[len(ms)-1].At.UnixNano())
		for i := range ms {
			if p.cfg.Capture != nil {
				p.cfg.Capture.record(captureEntered, ms[i].At, captureAddr(p.to), c.upAddr, ms[i].Buf)
			}
			p.cfg.Link.send(Down, ms[i].Buf, c.addr, c.downOut, ob, ms[i].At)
			if ob.full() {
				ob.flush()
			}
		}
		ob.flush()
		r.Release() // an idle client holds no buffer
	}
}

// expire closes the upstream sockets of clients idle longer than Idle,
// checking a few times per Idle.
func (p *Proxy) expire() {
	defer p.wg.Done()
	tick := time.NewTicker(max(p.cfg.Idle/4, 10*time.Millisecond))
	defer tick.Stop()
	for {
		select {
		case <-p.done:
			return
		case now := <-tick.C:
			p.expireIdle(now)
		}
	}
}

// expireIdle closes the upstream sockets of clients silent for longer
// than Idle at now, keeping their socket drops.
func (p *Proxy) expireIdle(now time.Time) {
	p.mu.Lock()
	defer p.mu.Unlock()
	var (
		t      sockstat.Table
		loaded bool
	)
	for key, c := range p.clients {
		if now.Sub(time.Unix(0, c.last.Load())) <= p.cfg.Idle {
			continue
		}
		if !loaded && c.sock.Known() {
			t, _ = sockstat.Read() // once per round, and only for sockets it can count
			loaded = true
		}
		p.closeClient(key, c, t)
		p.expired.Add(1)
		p.log.Debug("expired", "link: client expired", "client", c.addr)
	}
	if len(p.clients) == 0 && p.peak > remakeMapPast {
		// Go maps never shrink: after a flood of new sources the empty
		// map would keep its buckets for good.
		p.clients, p.peak = map[clientKey]*proxyClient{}, 0
	}
}

// remakeMapPast is how many clients a map must have held before it is
// made anew once empty; below it, its buckets cost less than remaking it.
const remakeMapPast = 64
