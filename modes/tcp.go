package modes

import (
	"context"
	"flag"
	"net"
	"sync"
	"time"

	"github.com/udplab/udplab/internal/netstack"
	"github.com/udplab/udplab/internal/tcpinfo"
	"github.com/udplab/udplab/message"
	"github.com/udplab/udplab/tcp"
)

// TCP is TCP with udplab's framing: the kernel's over a real address, and
// over a PacketConn (the simulated link) a user-space TCP/IP stack, gVisor's
// netstack, one IP packet per datagram.
var TCP = &Mode{
	Name:        "tcp",
	What:        "TCP: the kernel's on an address, gVisor netstack over the simulated link",
	DefaultAddr: "127.0.0.1:6002",
	flags: func(fs *flag.FlagSet, s *Settings, server bool) {
		if server {
			sessionFlags(fs, s)
		}
	},
	build: func(s *Settings) (Transport, error) {
		return &tcpTransport{cfg: tcp.ServerConfig{Logger: s.logger(), Idle: s.Idle, MaxConns: s.MaxSessions}}, nil
	},
}

// tcpMinRTO is netstack's (and Linux's) smallest retransmission timeout;
// each further try doubles it.
const tcpMinRTO = 200 * time.Millisecond

type tcpTransport struct {
	cfg   tcp.ServerConfig
	tally tally // every netstack host made
}

func (t *tcpTransport) Traits() Traits {
	stack := netstack.Describe()
	return Traits{
		Delivery:      ReliableOrdered,
		Connected:     true,
		HandshakeRTTs: 1,
		HeaderBytes:   40,
		IPPackets:     true,
		Congestion:    "simulated links: netstack's CUBIC, SACK, RACK; on an address: the kernel's; receive window",
		MaxMessage:    tcp.MaxMessage,
		BulkMessage:   streamChunk,
		Stack:         "kernel TCP on an address; over the simulated link " + stack,
		Network:       "tcp",
		Summary:       []string{"TCP: gVisor netstack (CUBIC, SACK, RACK) on simulated links, the kernel's on an address"},
		Settings:      map[string]any{"stack": stack},
	}
}

// track counts a netstack host's retransmissions and header bytes.
func (t *tcpTransport) track(h interface{ Stats() netstack.Stats }) {
	t.tally.add(func() Counters {
		s := h.Stats()
		return Counters{Retransmissions: s.Retransmissions, HeaderBytes: s.HeaderBytesSent}
	})
}

func (t *tcpTransport) Serve(pc net.PacketConn, h message.Handler) (Server, error) {
	l, err := netstack.Listen(pc, nil)
	if err != nil {
		return nil, err
	}
	t.track(l)
	return tcpServer{tcp.NewServer(l, h, &t.cfg)}, nil
}

func (t *tcpTransport) Dial(ctx context.Context, pc net.PacketConn, remote net.Addr) (message.Conn, error) {
	c, err := netstack.Dial(ctx, pc, remote, nil)
	if err != nil {
		return nil, err
	}
	t.track(c)
	return tcp.NewConn(c), nil
}

func (t *tcpTransport) Listen(addr string, h message.Handler) (Server, error) {
	s, err := tcp.Listen(addr, h, &t.cfg)
	if err != nil {
		return nil, err
	}
	return tcpServer{s}, nil
}

func (t *tcpTransport) DialAddr(ctx context.Context, addr string) (message.Conn, error) {
	var d net.Dialer
	c, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	return &kernelConn{Conn: tcp.NewConn(c), tc: c.(*net.TCPConn)}, nil
}

// Chat accepts the first peer at listen, or dials peer.
func (t *tcpTransport) Chat(ctx context.Context, listen, peer string) (message.Conn, error) {
	return connectedChat("tcp", listen, peer,
		func() (message.Conn, error) { return t.DialAddr(ctx, peer) },
		func() (message.Conn, error) {
			l, err := net.Listen("tcp", listen)
			if err != nil {
				return nil, err
			}
			return tcp.AcceptOne(ctx, l)
		})
}

// RetryWait is the smallest timeout's tries with backoff: netstack starts
// at a second before it has measured a round trip, but by the end of a run
// it has, and waits about its floor of 200 ms.
func (t *tcpTransport) RetryWait(retries int) time.Duration {
	var total time.Duration
	for i := range retries {
		total += tcpMinRTO << i
	}
	return total
}

func (t *tcpTransport) Counters() Counters { return t.tally.sum() }

// kernelConn is a kernel TCP conversation that counts its wire from the
// kernel's TCP_INFO. The kernel forgets a connection once it is closed, so
// Close takes a last reading, which Wire returns from then on.
type kernelConn struct {
	*tcp.Conn
	tc *net.TCPConn

	mu     sync.Mutex
	closed bool
	last   Wire
	lastOK bool
}

func (c *kernelConn) Wire() (Wire, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return c.last, c.lastOK
	}
	return c.read()
}

// read is what the kernel says now.
func (c *kernelConn) read() (Wire, bool) {
	info, ok := tcpinfo.Read(c.tc)
	if !ok {
		return Wire{}, false
	}
	packets := info.SegmentsOut + info.SegmentsIn
	headers := packets * info.HeaderBytes
	return Wire{Packets: packets, Bytes: info.BytesSent + info.BytesReceived + headers, HeaderBytes: headers,
		Retransmissions: info.Retransmissions}, true
}

func (c *kernelConn) Close() error {
	c.mu.Lock()
	if !c.closed {
		c.last, c.lastOK = c.read()
		c.closed = true
	}
	c.mu.Unlock()
	return c.Conn.Close()
}

type tcpServer struct{ *tcp.Server }

func (s tcpServer) Stats() message.ServerStats  { return s.Server.Stats().ServerStats }
func (s tcpServer) SocketDrops() (uint64, bool) { return 0, false }

func (s tcpServer) Describe() []any {
	return []any{"delivery", ReliableOrdered, "framing", "4-byte length, or text lines"}
}

func (s tcpServer) Summary() []any {
	st := s.Server.Stats()
	return []any{"connections", st.Accepted, "refused", st.Refused, "reaped", st.Reaped, "text", st.Text, "over_budget", st.OverBudget}
}
