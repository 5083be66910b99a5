// Package udpsock opens the client sockets udplab's transports send from.
package udpsock

import (
	"fmt"
	"net"
	"net/netip"
)

// Dial resolves addr ("host:port") and binds an ephemeral UDP socket of the
// same address family to send to it from: an IPv4 server gets an IPv4
// socket, so replies are not seen through IPv4-mapped IPv6 addresses.
func Dial(addr string) (*net.UDPConn, *net.UDPAddr, error) {
	raddr, err := net.ResolveUDPAddr("udp", addr)
	if err != nil {
		return nil, nil, fmt.Errorf("dial %q: %w", addr, err)
	}
	network := "udp4"
	if raddr.IP.To4() == nil {
		network = "udp6"
	}
	pc, err := net.ListenUDP(network, nil)
	if err != nil {
		return nil, nil, fmt.Errorf("dial %s: %w", addr, err)
	}
	return pc, raddr, nil
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
