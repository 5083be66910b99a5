package link

import "net"

// headerBytes is what a packet to addr carries below its payload: IPv4
// and UDP headers, or IPv6 and UDP headers when addr is an IPv6 address
// (an IPv4-mapped one travels as IPv4).
func headerBytes(addr net.Addr) int {
	if ua, ok := addr.(*net.UDPAddr); ok && len(ua.IP) == net.IPv6len && ua.IP.To4() == nil {
		return HeaderBytesIPv6
	}
	return HeaderBytes
}

// wireBytes is what a datagram of size payload bytes to addr costs the
// rate under p, as netem's packet_time_ns counts: the payload and its
// headers, plus p.Overhead (never below zero in all), then, with a cell
// size, rounded up to whole cells of CellSize+CellOverhead bytes each.
func wireBytes(p *Params, size int, addr net.Addr) int64 {
	n := max(int64(size+headerBytes(addr)+p.Overhead), 0)
	if p.CellSize > 0 {
		cells := (n + int64(p.CellSize) - 1) / int64(p.CellSize)
		n = cells * max(int64(p.CellSize+p.CellOverhead), 0)
	}
	return n
}
