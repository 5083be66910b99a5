// Package tcpinfo reads what the kernel counts of one TCP connection
// (TCP_INFO on Linux): its segments, bytes and retransmissions, so that a
// measurement of the kernel's TCP can count its wire as the simulated link
// counts everyone else's.
package tcpinfo

// Info is a connection's counts so far, both directions.
type Info struct {
	SegmentsOut, SegmentsIn uint64
	BytesSent               uint64 // payload bytes sent, retransmissions included
	BytesReceived           uint64 // payload bytes received
	Retransmissions         uint64 // segments sent again
	// HeaderBytes is the IP and TCP header bytes of one segment: 20 + 20,
	// plus 12 when the connection uses timestamps, as Linux does by
	// default (SACK blocks, rarer, are not counted).
	HeaderBytes uint64
}
