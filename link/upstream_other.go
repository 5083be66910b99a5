//go:build !unix

package link

import "net"

// newUpstreamReader reads a client's upstream socket with a buffer of its
// own: without the unix poller's raw reads there is no borrowing one only
// while a datagram is ready.
func newUpstreamReader(pc net.PacketConn) packetReader { return newSingleReader(pc) }
