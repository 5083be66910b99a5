// Package guard holds the checks udplab's UDP servers make before they
// spend anything on a datagram, so that none can be turned against a third
// party: no reply to the server's own address or another listener's of
// this process (a reflection loop), none to
// the ports reflection attacks use (below 1024), and none that carries more
// than Factor times the bytes it answers to an address that has not shown it
// receives what is sent to it (RFC 9000 §8.1's rule, counted as whole
// datagrams on the wire, IP and UDP headers included, as a victim's link
// counts them).
package guard

import (
	"net"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/udplab/udplab/internal/udpsock"
)

// Factor is how many times the wire bytes it received a server may send to
// an address it has not validated: QUIC's anti-amplification limit.
const Factor = 3

// Header sizes the wire adds below a UDP payload.
const (
	IPv4UDPHeader = 20 + 8
	IPv6UDPHeader = 40 + 8
)

// LowPorts is the first port a server answers without AllowLowPorts: below
// it live the services reflection attacks aim at (DNS 53, NTP 123, SSDP
// 1900 aside), and no ordinary client sends from one.
const LowPorts = 1024

// WireBytes is what a datagram of payload bytes to or from ap takes on the
// wire: the payload and its IP and UDP headers. An address that is not IP
// (an in-memory conn's) counts as IPv4.
func WireBytes(payload int, ap netip.AddrPort) int {
	if ap.Addr().Is6() && !ap.Addr().Is4In6() {
		return payload + IPv6UDPHeader
	}
	return payload + IPv4UDPHeader
}

// Within reports whether a reply of out payload bytes to a request of in
// payload bytes from ap stays within Factor times its wire bytes.
func Within(in, out int, ap netip.AddrPort) bool {
	return WireBytes(out, ap) <= Factor*WireBytes(in, ap)
}

// AddrPort returns the IP address and port of a datagram's source, given
// as udpsock.ReadFrom returns it: ap when valid, else from when it is a
// *net.UDPAddr. It is invalid for any other kind of address (an in-memory
// conn's), which no check here applies to.
func AddrPort(from net.Addr, ap netip.AddrPort) netip.AddrPort {
	if !ap.IsValid() {
		if u, ok := from.(*net.UDPAddr); ok {
			ap = u.AddrPort()
		}
	}
	return udpsock.Unmap(ap)
}

// Sources drops datagrams whose source a server must never answer: any
// UDP server socket of this process (its own address, or another
// listener's, whose reply would come back as a request: serve's raw echo
// and kcp's probe would answer each other forever), and ports below
// LowPorts. Its methods are safe for concurrent use.
type Sources struct {
	local         netip.AddrPort // registered with listeners; invalid if not UDP
	allowLowPorts bool
	loops, low    atomic.Uint64
	closeOnce     sync.Once
}

// NewSources checks sources for a server whose socket is at local, and
// registers local as one of this process's listeners until Close. With
// allowLowPorts, sources below LowPorts are answered too.
func NewSources(local net.Addr, allowLowPorts bool) *Sources {
	s := &Sources{allowLowPorts: allowLowPorts}
	if s.local = udpsock.AddrPort(local); s.local.IsValid() {
		listeners.add(s.local)
	}
	return s
}

// Close unregisters the server's socket.
func (s *Sources) Close() {
	s.closeOnce.Do(func() {
		if s.local.IsValid() {
			listeners.remove(s.local)
		}
	})
}

// Allow reports whether a datagram from ap may be answered, and counts
// those that may not. An invalid ap (not an IP source) is allowed.
func (s *Sources) Allow(ap netip.AddrPort) bool {
	if !ap.IsValid() {
		return true
	}
	if listeners.has(ap) {
		s.loops.Add(1)
		return false
	}
	if ap.Port() < LowPorts && !s.allowLowPorts {
		s.low.Add(1)
		return false
	}
	return true
}

// Dropped returns how many datagrams Allow refused: from a listener of
// this process, and from ports below LowPorts.
func (s *Sources) Dropped() (loops, lowPorts uint64) { return s.loops.Load(), s.low.Load() }

// listeners is this process's UDP server sockets, by port.
var listeners = registry{byPort: make(map[uint16][]netip.Addr)}

type registry struct {
	mu     sync.RWMutex
	byPort map[uint16][]netip.Addr
}

func (r *registry) add(ap netip.AddrPort) {
	r.mu.Lock()
	r.byPort[ap.Port()] = append(r.byPort[ap.Port()], ap.Addr())
	r.mu.Unlock()
}

func (r *registry) remove(ap netip.AddrPort) {
	r.mu.Lock()
	defer r.mu.Unlock()
	addrs := r.byPort[ap.Port()]
	if i := slices.Index(addrs, ap.Addr()); i >= 0 {
		addrs = slices.Delete(addrs, i, i+1)
	}
	if len(addrs) == 0 {
		delete(r.byPort, ap.Port())
	} else {
		r.byPort[ap.Port()] = addrs
	}
}

// has reports whether a socket registered at ap's port receives at ap's
// address: one bound to that address, or to all of this host's.
func (r *registry) has(ap netip.AddrPort) bool {
	r.mu.RLock()
	defer r.mu.RUnlock()
	for _, a := range r.byPort[ap.Port()] {
		if a == ap.Addr().Unmap() || a.IsUnspecified() && hostAddr(ap.Addr().Unmap()) {
			return true
		}
	}
	return false
}

// hostAddrs is this host's interface addresses, read at most once per
// hostAddrsAge: a spoofed source with a listener's port must not cost a
// read of them per packet, and an address added later (a new interface,
// a DHCP lease) must still count.
var hostAddrs hostAddrCache

const hostAddrsAge = 10 * time.Second

type hostAddrCache struct {
	mu    sync.Mutex
	addrs []netip.Addr
	read  time.Time
}

func (c *hostAddrCache) get() []netip.Addr {
	c.mu.Lock()
	defer c.mu.Unlock()
	if now := time.Now(); now.Sub(c.read) >= hostAddrsAge {
		c.addrs, c.read = readHostAddrs(), now
	}
	return c.addrs
}

func readHostAddrs() []netip.Addr {
	var out []netip.Addr
	addrs, _ := net.InterfaceAddrs()
	for _, ia := range addrs {
		if n, ok := ia.(*net.IPNet); ok {
			if a, ok := netip.AddrFromSlice(n.IP); ok {
				out = append(out, a.Unmap())
			}
		}
	}
	return out
}

// hostAddr reports whether a is one of this host's addresses: a socket
// bound to all of them receives on each.
func hostAddr(a netip.Addr) bool {
	return a.IsLoopback() || a.IsUnspecified() || slices.Contains(hostAddrs.get(), a)
}

// Capped counts the replies a server left unsent because they would have
// broken the Factor rule. The zero value is ready to use.
type Capped struct {
	datagrams, bytes atomic.Uint64
}

// Allow reports whether a reply of out payload bytes may answer in bytes
// from ap, and counts the reply's wire bytes when it may not.
func (c *Capped) Allow(in, out int, ap netip.AddrPort) bool {
	if Within(in, out, ap) {
		return true
	}
	c.datagrams.Add(1)
	c.bytes.Add(uint64(WireBytes(out, ap)))
	return false
}

// Counts returns the replies left unsent and their wire bytes.
func (c *Capped) Counts() (datagrams, bytes uint64) { return c.datagrams.Load(), c.bytes.Load() }
