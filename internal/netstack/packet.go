package netstack

import (
	"encoding/binary"

	"gvisor.dev/gvisor/pkg/tcpip/checksum"
)

// IPv4 and TCP header layout, as far as the checks below need it.
const (
	ipv4MinHeader = 20 // IPv4 header without options
	tcpMinHeader  = 20 // TCP header without options
	protoTCP      = 6  // IP protocol number of TCP
)

// checkInbound reports whether b, one datagram, is a whole IPv4 packet that
// this host should hand to its stack: version 4, a header without options
// (no host here sends any), a total length equal to the datagram's, a
// valid header checksum, not a fragment (no host here fragments, and
// reassembly would be state kept for anyone), TCP, addressed to local from
// a unicast source other than local, with a sane TCP header, non-zero
// ports and a valid TCP checksum. It returns the source address.
//
// Everything the stack would verify is verified here, so that each
// datagram the stack is handed is a packet it accepts at the IP layer,
// and every one that is not is counted by the caller in one place; the
// link endpoint then tells the stack the checksums are already checked.
func checkInbound(b []byte, local [4]byte) (src [4]byte, ok bool) {
	if len(b) < ipv4MinHeader+tcpMinHeader {
		return src, false
	}
	if b[0] != 0x45 { // version 4, header length 5 words
		return src, false
	}
	if int(binary.BigEndian.Uint16(b[2:4])) != len(b) {
		return src, false
	}
	if binary.BigEndian.Uint16(b[6:8])&0x3fff != 0 { // MF flag or a fragment offset
		return src, false
	}
	if b[9] != protoTCP {
		return src, false
	}
	if checksum.Checksum(b[:ipv4MinHeader], 0) != 0xffff {
		return src, false
	}
	copy(src[:], b[12:16])
	if [4]byte(b[16:20]) != local || src == local || !unicast(src) {
		return src, false
	}
	seg := b[ipv4MinHeader:]
	off := int(seg[12]>>4) * 4
	if off < tcpMinHeader || off > len(seg) {
		return src, false
	}
	if binary.BigEndian.Uint16(seg[0:2]) == 0 || binary.BigEndian.Uint16(seg[2:4]) == 0 {
		return src, false
	}
	// The TCP checksum covers a pseudo-header of both addresses, the
	// protocol and the segment's length, then the segment itself.
	xsum := checksum.Checksum(b[12:20], 0)
	xsum = checksum.Combine(xsum, protoTCP)
	xsum = checksum.Combine(xsum, uint16(len(seg)))
	if checksum.Checksum(seg, xsum) != 0xffff {
		return src, false
	}
	return src, true
}

// unicast reports whether a is an address a host can have: not 0.0.0.0/8,
// loopback, multicast, or the reserved and broadcast 240.0.0.0/4.
func unicast(a [4]byte) bool {
	return a[0] != 0 && a[0] != 127 && a[0] < 224
}

// headerBytes returns how many bytes of the outbound IPv4 packet b are IP
// and TCP headers, options included: what a byte count "with headers"
// adds on top of the payload. A packet too short to say counts whole.
func headerBytes(b []byte) int {
	if len(b) < ipv4MinHeader {
		return len(b)
	}
	ihl := int(b[0]&0x0f) * 4
	if b[9] != protoTCP || len(b) < ihl+tcpMinHeader {
		return min(ihl, len(b))
	}
	return min(ihl+int(b[ihl+12]>>4)*4, len(b))
}
