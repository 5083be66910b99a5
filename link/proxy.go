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

	"golang.org/x/net/ipv4"
	"golang.org/x/net/ipv6"

	"github.com/udplab/udplab/internal/udpsock"
)

// ProxyConfig configures a Proxy. Listen, To and Link are required.
type ProxyConfig struct {
	Listen string // address clients send to
	To     string // the server's address
	Link   *Link  // the impairments: Up on the way to To, Down on the way back
	// Idle is how long a client may stay silent before its upstream socket
	// is closed. Zero means 60s.
	Idle time.Duration
	// MaxClients bounds the upstream sockets; datagrams from further
	// clients are dropped and counted. Zero means 1024.
	MaxClients int
	// Logger gets client arrivals and expiries at debug level. Nil means
	// slog.Default().
	Logger *slog.Logger
}

// Proxy relays datagrams between clients and one server through a Link,
// so that any UDP program can be put behind impairments. Each client
// address gets its own upstream socket, so the server's replies find their
// way back.
type Proxy struct {
	cfg ProxyConfig
	pc  *net.UDPConn
	to  *net.UDPAddr

	mu      sync.Mutex
	clients map[netip.AddrPort]*proxyClient
	closed  bool

	refused atomic.Uint64
	expired atomic.Uint64

	wg        sync.WaitGroup
	closeOnce sync.Once
	done      chan struct{}
}

type proxyClient struct {
	addr net.Addr
	up   *net.UDPConn // to the server
	last atomic.Int64 // unix nanoseconds of the last datagram either way
}

// NewProxy binds cfg.Listen and starts relaying until Close.
func NewProxy(cfg ProxyConfig) (*Proxy, error) {
	if cfg.Link == nil {
		return nil, errors.New("link: proxy needs a Link")
	}
	if cfg.Idle == 0 {
		cfg.Idle = 60 * time.Second
	}
	if cfg.MaxClients == 0 {
		cfg.MaxClients = 1024
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
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
	pc.SetReadBuffer(4 << 20)
	pc.SetWriteBuffer(4 << 20)
	p := &Proxy{cfg: cfg, pc: pc, to: to, clients: map[netip.AddrPort]*proxyClient{}, done: make(chan struct{})}
	p.wg.Add(2)
	go p.readClients()
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

// Refused counts datagrams dropped because MaxClients was reached.
func (p *Proxy) Refused() uint64 { return p.refused.Load() }

// Close stops relaying, closes every socket and waits for the proxy's
// goroutines. It does not close the Link.
func (p *Proxy) Close() error {
	var err error
	p.closeOnce.Do(func() {
		close(p.done)
		err = p.pc.Close()
		p.mu.Lock()
		p.closed = true
		for _, c := range p.clients {
			c.up.Close()
		}
		p.mu.Unlock()
	})
	p.wg.Wait()
	return err
}

// readBatch is how many datagrams one read takes from a socket at most:
// with many requests in flight, one recvmmsg call replaces many reads.
const readBatch = 32

// batchReader reads datagrams in batches where the platform can (recvmmsg
// on Linux), one at a time elsewhere.
type batchReader struct {
	pc *net.UDPConn
	bc interface {
		ReadBatch([]ipv4.Message, int) (int, error)
	}
	msgs []ipv4.Message
}

func newBatchReader(pc *net.UDPConn) *batchReader {
	r := &batchReader{pc: pc, msgs: make([]ipv4.Message, readBatch)}
	for i := range r.msgs {
		r.msgs[i].Buffers = [][]byte{make([]byte, 64<<10)}
	}
	if a, ok := pc.LocalAddr().(*net.UDPAddr); ok && a.IP.To4() != nil {
		r.bc = ipv4.NewPacketConn(pc)
	} else {
		r.bc = ipv6.NewPacketConn(pc)
	}
	return r
}

// read calls f for each datagram of the next batch, with its source.
func (r *batchReader) read(f func(b []byte, from *net.UDPAddr)) error {
	n, err := r.bc.ReadBatch(r.msgs, 0)
	if err != nil {
		return err
	}
	for _, m := range r.msgs[:n] {
		from, _ := m.Addr.(*net.UDPAddr)
		f(m.Buffers[0][:m.N], from)
	}
	return nil
}

// readClients is the one goroutine reading the listening socket.
func (p *Proxy) readClients() {
	defer p.wg.Done()
	r := newBatchReader(p.pc)
	for {
		err := r.read(func(b []byte, from *net.UDPAddr) {
			if from == nil {
				return
			}
			c := p.client(from.AddrPort())
			if c == nil {
				return
			}
			c.last.Store(time.Now().UnixNano())
			p.cfg.Link.send(Up, b, p.to, c.up)
		})
		if err != nil {
			if !errors.Is(err, net.ErrClosed) {
				p.cfg.Logger.Error("link: proxy read failed", "err", err)
			}
			return
		}
	}
}

// client returns from's client, opening its upstream socket on first sight,
// or nil when there is no room.
func (p *Proxy) client(from netip.AddrPort) *proxyClient {
	key := udpsock.Unmap(from)
	p.mu.Lock()
	defer p.mu.Unlock()
	if c, ok := p.clients[key]; ok {
		return c
	}
	if p.closed || len(p.clients) >= p.cfg.MaxClients {
		p.refused.Add(1)
		return nil
	}
	up, _, err := udpsock.Dial(p.to.String())
	if err != nil {
		p.cfg.Logger.Error("link: proxy cannot open an upstream socket", "client", from, "err", err)
		p.refused.Add(1)
		return nil
	}
	up.SetReadBuffer(4 << 20)
	c := &proxyClient{addr: net.UDPAddrFromAddrPort(from), up: up}
	p.clients[key] = c
	p.cfg.Logger.Debug("link: new client", "client", from, "upstream", up.LocalAddr())
	p.wg.Add(1)
	go p.readServer(c)
	return c
}

// readServer relays one client's replies back through the Down direction.
func (p *Proxy) readServer(c *proxyClient) {
	defer p.wg.Done()
	r := newBatchReader(c.up)
	for {
		err := r.read(func(b []byte, _ *net.UDPAddr) {
			c.last.Store(time.Now().UnixNano())
			p.cfg.Link.send(Down, b, c.addr, p.pc)
		})
		if err != nil {
			return
		}
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
			p.mu.Lock()
			for key, c := range p.clients {
				if now.Sub(time.Unix(0, c.last.Load())) > p.cfg.Idle {
					c.up.Close()
					delete(p.clients, key)
					p.expired.Add(1)
					p.cfg.Logger.Debug("link: client expired", "client", c.addr)
				}
			}
			p.mu.Unlock()
		}
	}
}

// Expired counts clients whose upstream socket was closed for idleness.
func (p *Proxy) Expired() uint64 { return p.expired.Load() }
