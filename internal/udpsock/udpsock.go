// Package udpsock opens the client sockets udplab's transports send from.
package udpsock

import (
	"fmt"
	"net"
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
