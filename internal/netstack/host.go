package netstack

import (
	"errors"
	"fmt"
	"net"
	"sync"
	"sync/atomic"

	"gvisor.dev/gvisor/pkg/buffer"
	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv4"
	"gvisor.dev/gvisor/pkg/tcpip/stack"
	"gvisor.dev/gvisor/pkg/tcpip/transport/tcp"
)

// nicID is the one NIC of each host's stack.
const nicID tcpip.NICID = 1

// host is one user-space TCP/IP host: a gVisor stack whose only link is a
// PacketConn, one IP packet per datagram. It owns the PacketConn and one
// goroutine, the reader; the stack's own goroutines stop in close.
//
// Outbound packets need no goroutine: the stack calls WritePackets on the
// goroutine that produced them (a writer, a TCP processor or a timer), and
// each packet is written there, with WriteTo, as one datagram. Nothing is
// queued between the stack and the PacketConn, so no packet is dropped
// here for want of room: every loss is the network's.
type host struct {
	pc   net.PacketConn
	s    *stack.Stack
	addr [4]byte
	mtu  uint32

	// peer, when set, receives every outbound packet (a dialing host).
	// Otherwise (the listening host) a packet goes to the UDP address
	// the last packet from its destination IP came from.
	peer    net.Addr
	peersMu sync.Mutex
	peers   map[[4]byte]*peer

	// reinject, set by a transport handler during an injection, asks the
	// reader to inject the same datagram once more (see Listener).
	reinject atomic.Bool

	dispatchMu sync.RWMutex
	dispatcher stack.NetworkDispatcher

	closing    atomic.Bool
	readerDone chan struct{}
	closeOnce  sync.Once

	packetsSent, bytesSent, headerBytesSent atomic.Uint64
	packetsReceived, badPackets             atomic.Uint64
	writeErrors, unroutable, throttled      atomic.Uint64
}

// peer is where a listening host sends the packets for one IP address.
// Until the peer is validated (a connection from it was accepted, so it
// answered the SYN-ACK sent to addr), the host sends addr at most
// amplification times the bytes it received from addr, so a forged
// source cannot make it flood someone else.
type peer struct {
	addr      net.Addr
	validated bool
	budget    int // bytes it may still send addr while not validated
}

// newHost builds a stack set up by c with address addr on pc that sends
// everything to remote, or with remote nil learns where to send from what
// it receives. It does not start the reader, so the caller can finish
// setting the stack up first; on error pc is closed.
func newHost(pc net.PacketConn, addr [4]byte, remote net.Addr, c Config) (*host, error) {
	h := &host{
		pc:         pc,
		addr:       addr,
		mtu:        uint32(c.MTU),
		peer:       remote,
		readerDone: make(chan struct{}),
	}
	if remote == nil {
		h.peers = make(map[[4]byte]*peer)
	}
	h.s = stack.New(stack.Options{
		NetworkProtocols:   []stack.NetworkProtocolFactory{ipv4.NewProtocol},
		TransportProtocols: []stack.TransportProtocolFactory{tcp.NewProtocolCUBIC},
	})
	if err := h.setup(c.DisableRACK); err != nil {
		close(h.readerDone) // no reader was started
		h.close()
		return nil, err
	}
	return h, nil
}

// setup configures h's stack like a Linux host (see the package doc),
// without RACK if noRACK, and gives it its NIC, address and default route.
func (h *host) setup(noRACK bool) error {
	sack := tcpip.TCPSACKEnabled(true)
	cc := tcpip.CongestionControlOption("cubic")
	recovery := tcpip.TCPRecovery(tcpip.TCPRACKLossDetection)
	if noRACK {
		recovery = 0 // SACK-based recovery after RFC 6675, and the timer
	}
	moderate := tcpip.TCPModerateReceiveBufferOption(true)
	nagle := tcpip.TCPDelayEnabled(false)
	snd := tcpip.TCPSendBufferSizeRangeOption{Min: bufferMin, Default: sendBufferDefault, Max: sendBufferMax}
	rcv := tcpip.TCPReceiveBufferSizeRangeOption{Min: bufferMin, Default: recvBufferDefault, Max: recvBufferMax}
	for _, opt := range []tcpip.SettableTransportProtocolOption{&sack, &cc, &recovery, &moderate, &nagle, &snd, &rcv} {
		if err := h.s.SetTransportProtocolOption(tcp.ProtocolNumber, opt); err != nil {
			return fmt.Errorf("netstack: setting %T: %s", opt, err)
		}
	}
	if err := h.s.CreateNIC(nicID, (*linkEndpoint)(h)); err != nil {
		return fmt.Errorf("netstack: creating the NIC: %s", err)
	}
	pa := tcpip.ProtocolAddress{
		Protocol:          ipv4.ProtocolNumber,
		AddressWithPrefix: tcpip.AddrFrom4(h.addr).WithPrefix(),
	}
	if err := h.s.AddProtocolAddress(nicID, pa, stack.AddressProperties{}); err != nil {
		return fmt.Errorf("netstack: adding address %v: %s", pa.AddressWithPrefix, err)
	}
	h.s.SetRouteTable([]tcpip.Route{{Destination: header.IPv4EmptySubnet, NIC: nicID}})
	return nil
}

// start starts the reader.
func (h *host) start() {
	go func() {
		defer close(h.readerDone)
		h.read()
	}()
}

// read hands every datagram that arrives on pc to the stack, until pc
// fails or closes.
func (h *host) read() {
	buf := make([]byte, readBuffer)
	for {
		n, from, err := h.pc.ReadFrom(buf)
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() && !h.closing.Load() {
				continue // someone set a deadline on pc; keep serving
			}
			return
		}
		h.receive(buf[:n], from)
	}
}

// receive checks one datagram and injects it into the stack.
func (h *host) receive(b []byte, from net.Addr) {
	src, ok := checkInbound(b, h.addr)
	if !ok {
		h.badPackets.Add(1)
		return
	}
	h.packetsReceived.Add(1)
	if h.peers != nil {
		h.learn(src, from, len(b))
	}
	h.inject(b)
	if h.reinject.Swap(false) {
		h.inject(b)
	}
}

// inject hands a copy of the IPv4 packet b to the stack, which processes
// it up to the TCP endpoint's queue before inject returns.
func (h *host) inject(b []byte) {
	h.dispatchMu.RLock()
	d := h.dispatcher
	h.dispatchMu.RUnlock()
	if d == nil {
		return
	}
	pkt := stack.NewPacketBuffer(stack.PacketBufferOptions{Payload: buffer.MakeWithData(b)})
	d.DeliverNetworkPacket(ipv4.ProtocolNumber, pkt)
	pkt.DecRef()
}

// learn records that packets for src go to from, which sent n bytes.
// A new address for src starts unvalidated.
func (h *host) learn(src [4]byte, from net.Addr, n int) {
	h.peersMu.Lock()
	defer h.peersMu.Unlock()
	p := h.peers[src]
	if p == nil || !sameAddr(p.addr, from) {
		if p == nil && len(h.peers) >= maxPeers {
			h.evictLocked()
		}
		p = &peer{addr: from}
		h.peers[src] = p
	}
	if !p.validated {
		p.budget = min(p.budget+amplification*n, maxBudget)
	}
}

// evictLocked removes a peer to make room for a new one, an unvalidated
// one if one of the first few it looks at is.
func (h *host) evictLocked() {
	var victim [4]byte
	looked := 0
	for ip, p := range h.peers {
		victim = ip
		if looked++; !p.validated || looked == evictScan {
			break
		}
	}
	delete(h.peers, victim)
}

// validate marks the peer at ip validated: it answered what was sent to
// its address.
func (h *host) validate(ip [4]byte) {
	h.peersMu.Lock()
	defer h.peersMu.Unlock()
	if p := h.peers[ip]; p != nil {
		p.validated = true
	}
}

// sameAddr reports whether a and b are the same address, without
// allocating for UDP addresses.
func sameAddr(a, b net.Addr) bool {
	if ua, ok := a.(*net.UDPAddr); ok {
		if ub, ok := b.(*net.UDPAddr); ok {
			return ua.Port == ub.Port && ua.IP.Equal(ub.IP) && ua.Zone == ub.Zone
		}
	}
	return a.Network() == b.Network() && a.String() == b.String()
}

// route returns the UDP address for the IPv4 packet b, charging an
// unvalidated peer's budget; nil if there is none, or no budget left.
func (h *host) route(b []byte) net.Addr {
	if h.peer != nil {
		return h.peer
	}
	h.peersMu.Lock()
	defer h.peersMu.Unlock()
	p := h.peers[[4]byte(b[16:20])]
	if p == nil {
		h.unroutable.Add(1)
		return nil
	}
	if !p.validated {
		if p.budget < len(b) {
			h.throttled.Add(1)
			return nil
		}
		p.budget -= len(b)
	}
	return p.addr
}

// send writes the IPv4 packet b as one datagram. Errors are counted, not
// returned: to the stack a packet the socket refused is a packet the
// network lost.
func (h *host) send(b []byte) {
	if h.closing.Load() || len(b) < ipv4MinHeader {
		return
	}
	to := h.route(b)
	if to == nil {
		return
	}
	if _, err := h.pc.WriteTo(b, to); err != nil {
		h.writeErrors.Add(1)
		return
	}
	h.packetsSent.Add(1)
	h.bytesSent.Add(uint64(len(b)))
	h.headerBytesSent.Add(uint64(headerBytes(b)))
}

// close stops the reader and the stack and closes pc; it returns once
// every goroutine they ran has stopped. Safe to call more than once.
func (h *host) close() {
	h.closeOnce.Do(func() {
		h.closing.Store(true)
		_ = h.pc.Close()
		<-h.readerDone
		h.s.Destroy()
	})
}

// stats returns h's counters and its stack's.
func (h *host) stats() Stats {
	tcpStats := h.s.Stats().TCP
	return Stats{
		PacketsSent:     h.packetsSent.Load(),
		BytesSent:       h.bytesSent.Load(),
		HeaderBytesSent: h.headerBytesSent.Load(),
		PacketsReceived: h.packetsReceived.Load(),
		BadPackets:      h.badPackets.Load(),
		WriteErrors:     h.writeErrors.Load(),
		Unroutable:      h.unroutable.Load(),
		Throttled:       h.throttled.Load(),
		Retransmissions: tcpStats.Retransmits.Value(),
		Timeouts:        tcpStats.Timeouts.Value(),
		SegmentsSent:    tcpStats.SegmentsSent.Value(),
	}
}

// linkEndpoint is a host seen by its stack as the NIC's link: no link
// header, no address resolution, checksums verified on receipt (by
// checkInbound), one packet per datagram.
type linkEndpoint host

var _ stack.LinkEndpoint = (*linkEndpoint)(nil)

func (e *linkEndpoint) MTU() uint32                      { return e.mtu }
func (e *linkEndpoint) SetMTU(uint32)                    {}
func (e *linkEndpoint) MaxHeaderLength() uint16          { return 0 }
func (e *linkEndpoint) LinkAddress() tcpip.LinkAddress   { return "" }
func (e *linkEndpoint) SetLinkAddress(tcpip.LinkAddress) {}
func (e *linkEndpoint) Wait()                            {} // the reader is waited for by host.close
func (e *linkEndpoint) ARPHardwareType() header.ARPHardwareType {
	return header.ARPHardwareNone
}
func (e *linkEndpoint) AddHeader(*stack.PacketBuffer)        {}
func (e *linkEndpoint) ParseHeader(*stack.PacketBuffer) bool { return true }
func (e *linkEndpoint) Close()                               {}
func (e *linkEndpoint) SetOnCloseAction(func())              {}

// Capabilities says that received packets' checksums need no check:
// checkInbound verified the IPv4 and TCP checksums of each.
func (e *linkEndpoint) Capabilities() stack.LinkEndpointCapabilities {
	return stack.CapabilityRXChecksumOffload
}

func (e *linkEndpoint) Attach(d stack.NetworkDispatcher) {
	e.dispatchMu.Lock()
	e.dispatcher = d
	e.dispatchMu.Unlock()
}

func (e *linkEndpoint) IsAttached() bool {
	e.dispatchMu.RLock()
	defer e.dispatchMu.RUnlock()
	return e.dispatcher != nil
}

// WritePackets writes each packet as one datagram. It reports every packet
// written: one the socket refused is lost, as on a network.
func (e *linkEndpoint) WritePackets(pkts stack.PacketBufferList) (int, tcpip.Error) {
	h := (*host)(e)
	for _, pkt := range pkts.AsSlice() {
		v := pkt.ToView()
		h.send(v.AsSlice())
		v.Release()
	}
	return pkts.Len(), nil
}
