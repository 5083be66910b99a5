package netstack

import (
	"time"

	"gvisor.dev/gvisor/pkg/tcpip/transport/tcp"
)

// Every tuning constant of the package, each with why it has its value.
const (
	// DefaultMTU is the IP MTU when Config.MTU is 0: the largest IP
	// packet, so the largest datagram payload, a host sends. 1400 leaves
	// room for a UDP/IPv6 header and a tunnel on a 1500-byte path, so
	// the datagrams are never fragmented on a real network.
	DefaultMTU = 1400

	// minMTU is the smallest IP MTU accepted: 576, the datagram every
	// IPv4 host must accept (RFC 791), well above the stack's smallest
	// send MSS, so a segment always fits.
	minMTU = 576

	// maxMTU is the largest IP MTU accepted: the IPv4 total length field
	// cannot say more.
	maxMTU = 65535

	// DefaultPort is the TCP port Dial connects to when Config.Port is 0.
	// The listener accepts on every port; 80 reads as a server port in
	// captures.
	DefaultPort = 80

	// DefaultLinger is how long Conn.Close waits, when Config.Linger is
	// 0, for the data still unsent and the FIN to be acknowledged before
	// it stops the host: five minimum RTOs, enough for a few losses of
	// the last segments on a lossy link, short enough not to stall a run.
	DefaultLinger = 5 * tcp.MinRTO

	// lingerPoll is how often Close looks at the connection's state while
	// it lingers: the stack signals no event when the FIN is acknowledged.
	lingerPoll = 2 * time.Millisecond

	// sendBufferDefault and sendBufferMax are the TCP send buffer's
	// initial size and ceiling: the stack's own defaults, 1 MiB and
	// 4 MiB. The stack does not grow a send buffer by itself as Linux
	// does, so it starts large enough to keep a bulk transfer's window
	// full at udplab's rates and delays.
	sendBufferDefault = tcp.DefaultSendBufferSize
	sendBufferMax     = tcp.MaxBufferSize

	// recvBufferDefault and recvBufferMax are the TCP receive buffer's
	// initial size and the ceiling receive-buffer moderation grows it to:
	// the stack's own defaults, 1 MiB and 4 MiB.
	recvBufferDefault = tcp.DefaultReceiveBufferSize
	recvBufferMax     = tcp.MaxBufferSize

	// bufferMin is the smallest a TCP buffer may be set to, as on Linux.
	bufferMin = tcp.MinBufferSize

	// listenBacklog is each listening port's queue of connections that
	// completed the handshake and wait for Accept: Linux's default
	// somaxconn.
	listenBacklog = 4096

	// maxListenPorts bounds how many TCP ports a Listener opens on
	// demand. Each costs a listening endpoint, created by a SYN from
	// anyone; past the bound a SYN to a new port is answered with a RST,
	// as a host with nothing listening there would.
	maxListenPorts = 64

	// maxPeers bounds a Listener's table from a peer's IP address inside
	// the simulated network to the UDP address its packets came from.
	// Each entry is a few dozen bytes; when the table is full a new peer
	// evicts another, unvalidated if possible (see evictScan), which
	// relearns its entry from its next packet.
	maxPeers = 4096

	// amplification is how many times the bytes received from a peer's
	// UDP address a listening host may send there before the peer is
	// validated: DESIGN's bound for every udplab server. A SYN-ACK and
	// its first two retransmissions fit; a forged SYN buys no more.
	amplification = 3

	// maxBudget caps what an unvalidated peer can bank by sending, so a
	// long stream of junk from one address buys no large burst later.
	maxBudget = 64 << 10

	// evictScan is how many peers a full table looks at for an
	// unvalidated one to evict before it evicts a validated one.
	evictScan = 32

	// readBuffer is the size of the buffer each host reads datagrams
	// into: the largest IPv4 packet, so no datagram is cut short.
	readBuffer = 65535
)

// Addresses inside the simulated network. The listening host always has
// listenIP; a dialing host takes 10.65.hi.lo, from the high and low bytes
// of its PacketConn's local UDP port.
var (
	listenIP   = [4]byte{10, 64, 0, 1}
	dialPrefix = [2]byte{10, 65}
)
