// Package udpsock opens the client sockets udplab's transports send from.
package udpsock

import (
	"fmt"
	"net"
	"net/netip"
)

// Dial resolves addr ("host:port") and binds an ephemeral UDP socket of the
// same address family to send to it from: an IPv4 server gets an IPv4
// socket, so replies are not seen through IPv4-mapped IPv6 addresses. The
// socket is not connected: it takes WriteTo, as kcp-go sends.
func Dial(addr string) (*net.UDPConn, *net.UDPAddr, error) {
	raddr, network, err := resolve(addr)
	if err != nil {
		return nil, nil, err
	}
	pc, err := net.ListenUDP(network, nil)
	if err != nil {
		return nil, nil, fmt.Errorf("dial %s: %w", addr, err)
	}
	return pc, raddr, nil
}

// DialConnected resolves addr ("host:port") and returns an ephemeral UDP
// socket of the same address family connected to it. The kernel then
// delivers only the server's datagrams, and reports a closed port (an ICMP
// port unreachable) as an error matching syscall.ECONNREFUSED on a later
// read or write. A connected socket sends with Write; WriteTo fails on it.
func DialConnected(addr string) (*net.UDPConn, error) {
	raddr, network, err := resolve(addr)
	if err != nil {
		return nil, err
	}
	c, err := net.DialUDP(network, nil, raddr)
	if err != nil {
		return nil, fmt.Errorf("dial %s: %w", addr, err)
	}
	return c, nil
}

// resolve returns addr's UDP address and the network of its family.
func resolve(addr string) (*net.UDPAddr, string, error) {
	raddr, err := net.ResolveUDPAddr("udp", addr)
	if err != nil {
		return nil, "", fmt.Errorf("dial %q: %w", addr, err)
	}
	if raddr.IP.To4() == nil {
		return raddr, "udp6", nil
	}
	return raddr, "udp4", nil
}

// Unmap removes any IPv4-in-IPv6 mapping from ap, so that the same peer
// compares equal whether a dual-stack or an IPv4 socket reported it.
func Unmap(ap netip.AddrPort) netip.AddrPort {
	return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
}

// AddrPort returns a's unmapped address and port, or the zero AddrPort when
// a is not a UDP address.
func AddrPort(a net.Addr) netip.AddrPort {
	if u, ok := a.(*net.UDPAddr); ok {
		return Unmap(u.AddrPort())
	}
	return netip.AddrPort{}
}

// Remote is a socket that talks to one remote address by the cheapest
// calls the socket allows: Write on a *net.UDPConn connected to it, the
// allocation-free AddrPort calls on any other *net.UDPConn, and the
// net.PacketConn methods on anything else (an impaired socket).
type Remote struct {
	pc        net.PacketConn
	udp       *net.UDPConn
	connected bool
	addr      net.Addr
	ap        netip.AddrPort // addr, unmapped, for cheap source checks
}

// NewRemote returns pc talking to remote.
func NewRemote(pc net.PacketConn, remote net.Addr) Remote {
	udp, _ := pc.(*net.UDPConn)
	return Remote{pc: pc, udp: udp, connected: udp != nil && udp.RemoteAddr() != nil, addr: remote, ap: AddrPort(remote)}
}

// Write sends b to the remote address as one datagram.
func (r *Remote) Write(b []byte) error {
	var err error
	switch {
	case r.connected:
		_, err = r.udp.Write(b)
	case r.udp != nil && r.ap.IsValid():
		_, err = r.udp.WriteToUDPAddrPort(b, r.ap)
	default:
		_, err = r.pc.WriteTo(b, r.addr)
	}
	return err
}

// Read reads one datagram into buf. ok is false when it came from another
// address than the remote one, which a caller drops; where the remote
// address is no UDP address, every datagram is taken as its.
func (r *Remote) Read(buf []byte) (n int, ok bool, err error) {
	n, _, from, err := ReadFrom(r.pc, buf)
	return n, !r.ap.IsValid() || Unmap(from) == r.ap, err
}

// ReadFrom reads one datagram from pc into buf; on a *net.UDPConn without
// allocating, giving only ap, and otherwise giving from and, for a UDP
// address, ap.
func ReadFrom(pc net.PacketConn, buf []byte) (n int, from net.Addr, ap netip.AddrPort, err error) {
	if udp, ok := pc.(*net.UDPConn); ok {
		n, ap, err = udp.ReadFromUDPAddrPort(buf)
		return n, nil, ap, err
	}
	n, from, err = pc.ReadFrom(buf)
	return n, from, AddrPort(from), err
}

// WriteTo sends b from pc to the address ReadFrom gave: ap on a
// *net.UDPConn, without allocating, or from.
func WriteTo(pc net.PacketConn, b []byte, from net.Addr, ap netip.AddrPort) error {
	var err error
	if udp, ok := pc.(*net.UDPConn); ok && ap.IsValid() {
		_, err = udp.WriteToUDPAddrPort(b, ap)
	} else {
		_, err = pc.WriteTo(b, from)
	}
	return err
}
