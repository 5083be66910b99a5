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
