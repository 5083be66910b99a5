// Package netstack runs a user-space TCP/IP host over a net.PacketConn:
// gVisor's netstack, whose every IP packet (segment, ACK, retransmission)
// travels as exactly one datagram. Over a link-wrapped PacketConn, TCP
// then meets the same seeded fates as every other transport's datagrams,
// without root and without the kernel's TCP.
//
// # Hosts and addresses
//
// Listen starts a host that accepts TCP connections on every port; Dial
// starts a host that opens one connection to a Listen host, named by the
// UDP address of its PacketConn. Inside the simulated network the
// listening host is 10.64.0.1 and a dialing host is 10.65.hi.lo, hi and lo
// being the bytes of its PacketConn's local UDP port, so that many dialers
// in one process, each on its own socket, have distinct addresses (two
// dialers whose sockets share a port number on different IPs would
// collide; a PacketConn whose address is not UDP is hashed to the two
// bytes instead). A dialing host sends every packet to the remote address
// it was given. The listening host sends a packet for a peer to the UDP
// address that peer's last packet came from, so a peer is reachable once
// it has sent (its SYN, at the latest). Until a connection from a peer has
// been accepted, which shows that it receives what is sent to it, the
// listening host sends its address at most 3× the bytes it received from
// there: a SYN with a forged source buys a SYN-ACK and two retransmissions
// at most. The listening host opens a port when the first SYN for it
// arrives, up to 64 ports.
//
// Each datagram received is checked before the stack sees it: a whole
// IPv4 packet without options or fragmentation, with valid IP and TCP
// checksums, carrying TCP, for this host. Anything else is counted in
// Stats.BadPackets and dropped.
//
// # TCP settings
//
// Each host is set up like a Linux host, on IPv4: SACK on, CUBIC
// congestion control, RACK loss detection (unless Config.DisableRACK,
// which a stream that must never hang wants: see there), receive-buffer
// moderation on, Nagle off (TCP_NODELAY, as Go sets on every kernel TCP
// connection).
// Timestamps and window scaling are negotiated, as the stack always does.
// The RTO bounds are the stack's defaults, the same as Linux's: at least
// 200ms, at most 120s, 1s before the first RTT sample. The send buffer is
// 1 MiB (the stack does not grow it by itself, as Linux does, so it
// starts large enough for bulk transfers), up to 4 MiB if a program asks;
// the receive buffer starts at 1 MiB and moderation grows it up to 4 MiB.
// Describe says all this for reports.
//
// # Ownership
//
// Listen and Dial take the PacketConn over, and close it when they fail.
// Each host owns one goroutine, its reader, plus the stack's own TCP
// workers (one per CPU); Close stops them all and returns after they have stopped.
// Outbound packets are written by whichever goroutine the stack produced
// them on, with no queue in between: no goroutine and no timer per
// packet.
package netstack

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"maps"
	"net"
	"os"
	"runtime/debug"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/adapters/gonet"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv4"
	"gvisor.dev/gvisor/pkg/tcpip/stack"
	"gvisor.dev/gvisor/pkg/tcpip/transport/tcp"
	"gvisor.dev/gvisor/pkg/waiter"

	"github.com/udplab/udplab/internal/deadline"
)

// Config tunes a host. The zero value, and a nil *Config, work.
type Config struct {
	// MTU is the IP MTU, the largest IP packet and so the largest
	// datagram payload the host sends; TCP's MSS follows from it. If
	// zero, DefaultMTU (1400). It must lie between 576 and 65535.
	MTU int

	// Port is the TCP port Dial connects to. If zero, DefaultPort (80).
	// Listen ignores it: the listening host accepts on every port.
	Port uint16

	// Linger is how long Conn.Close waits for data still unsent and the
	// FIN to be acknowledged before it stops the host. If zero,
	// DefaultLinger (1s); if negative, Close does not wait.
	Linger time.Duration

	// DisableRACK turns the stack's RACK loss detection, and with it its
	// tail loss probes, off: the host then finds losses by SACK (RFC
	// 6675: a hole with three segments' worth SACKed above it is sent
	// again at once) and otherwise by the retransmission timer, as Linux
	// did before RACK-TLP. If false, RACK is on, as on Linux.
	//
	// RACK recovers faster (a lost tail is probed after about two round
	// trips instead of waiting a timeout, 200 ms at least), but gVisor's
	// can hang a connection: after a recovery that repaired two holes or
	// more its count of segments in flight can be zero while the
	// stream's last data and FIN are unacknowledged (the count leaves out
	// the FIN, and every hole's retransmission after the first, since
	// RACK does not advance the RFC 6675 HighRxt it relies on, yet
	// subtracts them when they are acknowledged). Its tail loss probe
	// then sends the FIN again, which the receiver does not SACK, and
	// the sender arms its retransmission timer only when that count is
	// above zero: a lost last segment is never sent again, and the
	// connection waits until the program writes more, for ever after a
	// CloseWrite. TestTailAfterRecovery reproduces it. Without RACK every
	// ACK that advances arms the timer while anything is unacknowledged.
	DisableRACK bool
}

// populateConfig returns a copy of cfg with defaults filled in.
func populateConfig(cfg *Config) Config {
	var c Config
	if cfg != nil {
		c = *cfg
	}
	if c.MTU == 0 {
		c.MTU = DefaultMTU
	}
	if c.Port == 0 {
		c.Port = DefaultPort
	}
	if c.Linger == 0 {
		c.Linger = DefaultLinger
	}
	return c
}

// validateConfig rejects a populated config that cannot work.
func validateConfig(c Config) error {
	if c.MTU < minMTU || c.MTU > maxMTU {
		return fmt.Errorf("netstack: MTU %d: want %d to %d", c.MTU, minMTU, maxMTU)
	}
	return nil
}

// Stats counts what one host did. Packets are IP packets, one per
// datagram.
type Stats struct {
	PacketsSent, BytesSent uint64 // handed to the PacketConn, whole IP packets
	HeaderBytesSent        uint64 // IP and TCP headers (options included) in those packets
	PacketsReceived        uint64 // valid packets handed to the stack
	BadPackets             uint64 // datagrams that were not a valid IP packet for this host: dropped
	WriteErrors            uint64 // packets the PacketConn refused: lost
	Unroutable             uint64 // packets for a peer never heard from: dropped
	Throttled              uint64 // packets for a peer not yet validated, past 3× what it sent: dropped
	Retransmissions        uint64 // segments the stack sent again
	Timeouts               uint64 // retransmission timer expiries
	SegmentsSent           uint64 // TCP segments the stack sent, retransmissions included
}

// Describe says what the stack is and how it is set up with the default
// Config, for reports.
func Describe() string { return (*Config)(nil).Describe() }

// Describe says what the stack is and how a host with cfg is set up, for
// reports. cfg may be nil.
func (cfg *Config) Describe() string {
	c := populateConfig(cfg)
	recovery := "RACK"
	if c.DisableRACK {
		recovery = "RFC 6675 loss recovery (no RACK-TLP)"
	}
	return fmt.Sprintf("gVisor netstack %s; IPv4, SACK on, CUBIC, %s, Nagle off, min RTO %v, "+
		"send buffer %d KiB, receive buffer %d KiB moderated up to %d KiB, MTU %d",
		stackVersion(), recovery, tcp.MinRTO, sendBufferDefault>>10, recvBufferDefault>>10, recvBufferMax>>10, c.MTU)
}

// stackVersion is gVisor's module version as built into this binary, or
// "unknown" where the build recorded none (as in some test binaries).
func stackVersion() string {
	info, ok := debug.ReadBuildInfo()
	if !ok {
		return "unknown"
	}
	for _, dep := range info.Deps {
		if dep.Path != "gvisor.dev/gvisor" {
			continue
		}
		if dep.Replace != nil {
			dep = dep.Replace
		}
		if dep.Version == "" {
			break
		}
		return dep.Version
	}
	return "unknown"
}

// Listen starts a host on pc that accepts TCP connections, on every port,
// from the peers whose datagrams reach pc. It takes pc over: Close closes
// it, and so does Listen when it fails.
func Listen(pc net.PacketConn, cfg *Config) (*Listener, error) {
	c := populateConfig(cfg)
	if err := validateConfig(c); err != nil {
		_ = pc.Close()
		return nil, err
	}
	h, err := newHost(pc, listenIP, nil, c)
	if err != nil {
		return nil, err
	}
	l := &Listener{h: h, ports: make(map[uint16]tcpip.Endpoint), done: make(chan struct{})}
	h.s.SetTransportProtocolHandler(tcp.ProtocolNumber, l.handleUnknown)
	h.start()
	return l, nil
}

// Listener is a host that accepts TCP connections. It implements
// net.Listener; its methods are safe for concurrent use.
//
// A SYN to a port nobody listens on yet opens that port (up to 64 ports)
// and is then processed as if the port had been open all along.
type Listener struct {
	h    *host
	wq   waiter.Queue // every listening endpoint's, so Accept waits on one queue
	done chan struct{}

	mu    sync.Mutex
	ports map[uint16]tcpip.Endpoint
	next  uint16 // port Accept tries first, so no port starves the others

	closeOnce sync.Once
}

// handleUnknown is the stack's handler for TCP segments no endpoint
// matched. It runs on the reader, within the injection of the segment: for
// a SYN it opens the port and asks the reader to inject the segment once
// more, which the new listening endpoint then takes. Anything else it
// leaves to the stack, which answers with a RST.
func (l *Listener) handleUnknown(id stack.TransportEndpointID, pkt *stack.PacketBuffer) bool {
	th := header.TCP(pkt.TransportHeader().Slice())
	if len(th) < header.TCPMinimumSize {
		return false
	}
	if f := th.Flags(); !f.Contains(header.TCPFlagSyn) || f.Contains(header.TCPFlagAck) {
		return false
	}
	if !l.open(id.LocalPort) {
		return false
	}
	l.h.reinject.Store(true)
	return true
}

// open starts listening on port, unless the Listener is closed or has as
// many ports open as it may.
func (l *Listener) open(port uint16) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.ports == nil || len(l.ports) >= maxListenPorts {
		return false
	}
	if _, ok := l.ports[port]; ok {
		return false // open but not listening: closed
	}
	ep, err := l.h.s.NewEndpoint(tcp.ProtocolNumber, ipv4.ProtocolNumber, &l.wq)
	if err != nil {
		return false
	}
	if err := ep.Bind(tcpip.FullAddress{NIC: nicID, Addr: tcpip.AddrFrom4(l.h.addr), Port: port}); err != nil {
		ep.Close()
		return false
	}
	if err := ep.Listen(listenBacklog); err != nil {
		ep.Close()
		return false
	}
	l.ports[port] = ep
	return true
}

// Accept waits for the next connection on any port and returns it. After
// Close it returns an error matching net.ErrClosed.
func (l *Listener) Accept() (net.Conn, error) {
	entry, notify := waiter.NewChannelEntry(waiter.ReadableEvents)
	l.wq.EventRegister(&entry)
	defer l.wq.EventUnregister(&entry)
	for {
		select {
		case <-l.done:
			return nil, &net.OpError{Op: "accept", Net: "tcp", Addr: l.Addr(), Err: net.ErrClosed}
		default:
		}
		if c := l.tryAccept(); c != nil {
			return c, nil
		}
		select {
		case <-notify:
		case <-l.done:
		}
	}
}

// tryAccept returns a connection waiting on any port, or nil. Ports take
// turns: the search starts after the port that gave the last connection.
func (l *Listener) tryAccept() net.Conn {
	l.mu.Lock()
	defer l.mu.Unlock()
	ports := slices.Sorted(maps.Keys(l.ports))
	start, _ := slices.BinarySearch(ports, l.next)
	for i := range ports {
		p := ports[(start+i)%len(ports)]
		n, wq, err := l.ports[p].Accept(nil)
		if err != nil {
			continue
		}
		l.next = p + 1
		if ra, err := n.GetRemoteAddress(); err == nil && ra.Addr.Len() == 4 {
			l.h.validate(ra.Addr.As4())
		}
		return newStream(n, wq, l.h)
	}
	return nil
}

// Close stops the host: every connection it accepted is aborted, its
// goroutines stop, and pc is closed. Blocked and later calls on the
// Listener and its connections return errors matching net.ErrClosed.
// Close them first if their unsent data matters. Safe to call twice.
func (l *Listener) Close() error {
	l.closeOnce.Do(func() {
		close(l.done)
		l.mu.Lock()
		l.ports = nil // no more ports open
		l.mu.Unlock()
		l.h.close()
	})
	return nil
}

// Addr returns the local address of the Listener's PacketConn: the one a
// Dial names as remote.
func (l *Listener) Addr() net.Addr { return l.h.pc.LocalAddr() }

// Stats returns the host's counters, over all its connections.
func (l *Listener) Stats() Stats { return l.h.stats() }

// Dial starts a host on pc and opens a TCP connection to the Listen host
// whose PacketConn's address is remote. It takes pc over: the Conn's Close
// closes it, and so does Dial when it fails. If ctx ends first, Dial
// returns its cause, also matching os.ErrDeadlineExceeded for a deadline.
func Dial(ctx context.Context, pc net.PacketConn, remote net.Addr, cfg *Config) (*Conn, error) {
	c := populateConfig(cfg)
	if err := validateConfig(c); err != nil {
		_ = pc.Close()
		return nil, err
	}
	h, err := newHost(pc, dialIP(pc.LocalAddr()), remote, c)
	if err != nil {
		return nil, err
	}
	h.start()
	st, err := connect(ctx, h, c.Port)
	if err != nil {
		h.close()
		return nil, fmt.Errorf("netstack: dial %v: %w", remote, err)
	}
	return &Conn{Conn: st, st: st, linger: c.Linger}, nil
}

// dialIP derives a dialing host's address from its PacketConn's address.
func dialIP(a net.Addr) [4]byte {
	var port uint16
	if ua, ok := a.(*net.UDPAddr); ok && ua.Port != 0 {
		port = uint16(ua.Port)
	} else {
		f := fnv.New32a()
		_, _ = io.WriteString(f, a.Network()+" "+a.String())
		port = uint16(f.Sum32())
	}
	return [4]byte{dialPrefix[0], dialPrefix[1], byte(port >> 8), byte(port)}
}

// connect opens a TCP connection from h to the listening host's port.
func connect(ctx context.Context, h *host, port uint16) (*stream, error) {
	if err := ctx.Err(); err != nil {
		return nil, deadline.Err(ctx, err)
	}
	wq := new(waiter.Queue)
	ep, terr := h.s.NewEndpoint(tcp.ProtocolNumber, ipv4.ProtocolNumber, wq)
	if terr != nil {
		return nil, tcpipError(terr)
	}
	entry, notify := waiter.NewChannelEntry(waiter.WritableEvents)
	wq.EventRegister(&entry)
	defer wq.EventUnregister(&entry)
	to := tcpip.FullAddress{NIC: nicID, Addr: tcpip.AddrFrom4(listenIP), Port: port}
	terr = ep.Connect(to)
	if _, ok := terr.(*tcpip.ErrConnectStarted); ok {
		select {
		case <-ctx.Done():
			ep.Close()
			return nil, deadline.Err(ctx, ctx.Err())
		case <-notify:
		}
		terr = ep.LastError()
	}
	if terr != nil {
		ep.Close()
		return nil, tcpipError(terr)
	}
	return newStream(ep, wq, h), nil
}

// tcpipError turns a stack error into a Go error, as a syscall.Errno where
// one says the same, so callers can use errors.Is as with kernel TCP.
func tcpipError(err tcpip.Error) error {
	switch err.(type) {
	case *tcpip.ErrConnectionRefused:
		return syscall.ECONNREFUSED
	case *tcpip.ErrConnectionReset:
		return syscall.ECONNRESET
	case *tcpip.ErrConnectionAborted:
		return syscall.ECONNABORTED
	case *tcpip.ErrTimeout:
		return syscall.ETIMEDOUT
	case *tcpip.ErrHostUnreachable, *tcpip.ErrNetworkUnreachable:
		return syscall.EHOSTUNREACH
	}
	return errors.New(err.String())
}

// Conn is a TCP connection over its own host; it implements net.Conn,
// deadlines included. Its methods are safe for concurrent use as a
// net.Conn's are.
type Conn struct {
	net.Conn
	st     *stream
	linger time.Duration
}

// CloseWrite sends a FIN: the peer reads EOF, and this side can still read.
func (c *Conn) CloseWrite() error { return c.st.CloseWrite() }

// Close closes the connection, waits up to Config.Linger for the data
// still unsent and the FIN to be acknowledged, then stops the host and
// closes its PacketConn. Blocked and later calls return errors matching
// net.ErrClosed. Safe to call twice.
func (c *Conn) Close() error {
	if !c.st.close() {
		return nil
	}
	if c.linger > 0 {
		c.st.awaitFinAcked(c.linger)
	}
	c.st.h.close()
	return nil
}

// Stats returns the host's counters.
func (c *Conn) Stats() Stats { return c.st.h.stats() }

// stream is one TCP connection: gVisor's net.Conn adapter, with errors
// made to read like the net package's.
type stream struct {
	*gonet.TCPConn
	ep     tcpip.Endpoint
	h      *host
	closed atomic.Bool
}

func newStream(ep tcpip.Endpoint, wq *waiter.Queue, h *host) *stream {
	return &stream{TCPConn: gonet.NewTCPConn(wq, ep), ep: ep, h: h}
}

// Read reads as net.Conn's Read does: io.EOF once the peer's FIN and
// all data before it are read; after a deadline, an error matching
// os.ErrDeadlineExceeded; after Close, one matching net.ErrClosed.
func (s *stream) Read(b []byte) (int, error) {
	n, err := s.TCPConn.Read(b)
	if err == io.EOF && !s.isClosed() {
		return n, err
	}
	return n, s.opError("read", err)
}

// Write writes as net.Conn's Write does, with errors as Read's.
func (s *stream) Write(b []byte) (int, error) {
	n, err := s.TCPConn.Write(b)
	return n, s.opError("write", err)
}

// Close closes the connection, sending a FIN after any unsent data. The
// host, and so delivery, goes on. Safe to call twice.
func (s *stream) Close() error {
	s.close()
	return nil
}

// close closes the connection; it reports whether this call did.
func (s *stream) close() bool {
	if s.closed.Swap(true) {
		return false
	}
	_ = s.TCPConn.Close()
	return true
}

func (s *stream) isClosed() bool { return s.closed.Load() || s.h.closing.Load() }

// awaitFinAcked waits up to d for the connection, closed, to have every
// byte and its FIN acknowledged, or to have ended otherwise.
func (s *stream) awaitFinAcked(d time.Duration) {
	done := func() bool {
		if s.h.closing.Load() {
			return true // Abort stopped the host
		}
		switch tcp.EndpointState(s.ep.State()) {
		case tcp.StateFinWait2, tcp.StateTimeWait, tcp.StateClose, tcp.StateError:
			return true
		}
		return false
	}
	if done() {
		return
	}
	t := time.NewTicker(lingerPoll)
	defer t.Stop()
	limit := time.Now().Add(d)
	for range t.C {
		if done() || time.Now().After(limit) {
			return
		}
	}
}

// opError rewrites a failed call's error as the net package would make it.
func (s *stream) opError(op string, err error) error {
	if err == nil {
		return nil
	}
	var inner error
	switch {
	case s.isClosed():
		inner = net.ErrClosed
	case isTimeout(err):
		inner = os.ErrDeadlineExceeded
	default:
		return err
	}
	return &net.OpError{Op: op, Net: "tcp", Source: s.LocalAddr(), Addr: s.RemoteAddr(), Err: inner}
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}
