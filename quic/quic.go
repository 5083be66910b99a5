// Package quic is udplab's QUIC transport, on quic-go: one message is one
// QUIC stream. Its delivery class is reliable-unordered: every reply
// arrives, retransmitted as needed, but a lost packet delays only the
// streams it carried, so replies to requests in flight together may come
// back in any order. Its price is QUIC's: a TLS 1.3 handshake (one round
// trip), encryption, acknowledgements and congestion control, which the
// compare harness measures against the other transports.
//
// # Protocol
//
// This is the protocol; any QUIC client that follows it can talk to a
// Server.
//
//   - QUIC version 1 (RFC 9000) with TLS 1.3, ALPN "udplab".
//   - Each request is one bidirectional stream, opened by the client. The
//     client writes the request bytes and closes its sending side (FIN).
//     The server reads to the FIN, at most MaxMessage bytes; a longer
//     request gets STOP_SENDING and RESET_STREAM with CodeTooLarge, and the
//     server counts a bad request. Otherwise the server runs the handler,
//     writes the reply and closes the stream (FIN): the reply is every byte
//     up to the FIN, possibly none.
//   - An empty request (a FIN with no bytes), a request the handler
//     refuses (message.ErrBadRequest), and one whose reply would exceed
//     MaxMessage get RESET_STREAM with CodeRefused and no reply: no udplab
//     server answers an empty request (see message.Counters.Reply). A
//     reset is not an empty reply, which only a handler of one's own could
//     make: that would be a FIN with no bytes.
//   - Streams are independent: many may be in flight at once (a Server
//     allows MaxStreams per connection), and each reply comes back on its
//     request's stream, in whatever order they complete. A server opens no
//     streams and accepts no unidirectional ones.
//   - "exit" is a request like any other: message.Greet answers it with
//     "Good bye!\n". The server does not close the connection after it,
//     since closing at once would discard reply data the client has not yet
//     acknowledged; the client closes.
//   - Chat (two peers, see DialPeer and AcceptPeer): each message is one
//     unidirectional stream from sender to receiver, closed (FIN) after the
//     message, at most MaxMessage bytes. Neither peer opens bidirectional
//     streams; each allows the other 64 unidirectional ones at once. A
//     receiver reads them in stream order, so lines arrive in the order
//     sent (a lost packet holds back the lines after it, as in TCP).
//   - Closing: a connection is closed with application error code
//     CodeNormal (0). A client that gives up on a request resets its stream
//     with CodeCancelled.
//
// For example, to greet a server with quic-go: dial with
// tls.Config{NextProtos: []string{"udplab"}}, OpenStreamSync, write
// "Alice", Close the stream, and read it to io.EOF: "Hello Alice!\n".
//
// # Trust
//
// A Server presents a certificate: the one in ServerConfig.TLS, or a fresh
// self-signed one (SelfSigned). Its fingerprint (Fingerprint, the SHA-256
// of the certificate, in hex) is what a client pins (ClientConfig.Pin).
// Without a pin, a client verifies the certificate against its roots, as
// any TLS client does, except on a loopback address when it was given no
// roots: there it accepts any certificate and logs a warning naming the
// fingerprint.
//
// # Sockets
//
// Every Server and Conn runs one quic-go Transport over its own
// net.PacketConn, and closes both. On a *net.UDPConn quic-go batches reads
// and writes (recvmmsg, GSO), reads ECN marks and discovers the path MTU;
// on any other PacketConn, such as the link's, it sends and receives one
// datagram at a time, in packets of at most 1280 bytes. It also grows a
// socket's buffers to 7 MiB where the system allows, and otherwise logs a
// warning on the standard logger, as it does for every PacketConn without
// SetReadBuffer. Since udplab counts socket drops itself (SocketDrops),
// this package sets QUIC_GO_DISABLE_RECEIVE_BUFFER_WARNING=true before its
// first Transport, unless the environment already sets it.
package quic

import (
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"sync"
	"time"

	quicgo "github.com/quic-go/quic-go"

	"github.com/udplab/udplab/internal/budget"
	"github.com/udplab/udplab/message"
)

// ALPN is the application protocol a client and a server agree on in the
// TLS handshake.
const ALPN = "udplab"

// MaxMessage is the largest request or reply, in bytes. It bounds what
// either side buffers for one stream.
const MaxMessage = 1 << 20

// Application error codes: on CONNECTION_CLOSE for the connection, on
// RESET_STREAM and STOP_SENDING for a stream. They are untyped so they
// serve as quic-go's ApplicationErrorCode and StreamErrorCode alike.
const (
	// CodeNormal closes a connection that is done.
	CodeNormal = 0x0
	// CodeRefused resets a request's stream instead of a reply: the
	// handler refused the request, or its reply exceeded MaxMessage.
	CodeRefused = 0x1
	// CodeTooLarge stops and resets a stream that carried more than
	// MaxMessage bytes.
	CodeTooLarge = 0x2
	// CodeCancelled resets a stream its sender gave up on: a Send cut
	// short, or a request the server stopped reading.
	CodeCancelled = 0x3
)

// Tuning, each with the reason for its value.
const (
	// DefaultIdle is how long a connection may stay silent before it is
	// closed (quic-go's MaxIdleTimeout), as tcp.DefaultIdle keeps a silent
	// connection: long enough for a person typing, short enough that
	// abandoned connections do not pile up.
	DefaultIdle = 60 * time.Second
	// DefaultMaxConns bounds a Server's connections, handshaking or
	// served, like tcp.DefaultMaxConns.
	DefaultMaxConns = 1024
	// DefaultMaxBuffered bounds what a Server's request streams together
	// buffer beyond startBuffer each, as tcp.DefaultMaxBuffered does its
	// connections': without it, MaxStreams streams of MaxMessage on each
	// of DefaultMaxConns connections could ask for a terabyte.
	DefaultMaxBuffered = 64 << 20
	// MaxStreams is how many requests a client may have in flight on one
	// connection: the Server's MaxIncomingStreams, and the replies a Conn
	// holds before Send waits for Receive. Benchmarks keep 32 in flight;
	// the rest absorbs bursts. Each stream in flight holds one goroutine on
	// each side.
	MaxStreams = 1024
	// maxPeerMessages is how many unidirectional streams a peer may have
	// open at once, and how many of their messages a Conn holds before it
	// stops accepting more: a chat peer is untrusted, so at most this many
	// MaxMessage buffers.
	maxPeerMessages = 64
	// chatKeepAlive keeps a chat connection alive while neither person
	// types, well inside DefaultIdle.
	chatKeepAlive = 15 * time.Second
	// maxLinger bounds how long a chat Conn's Close waits for its last
	// messages to reach the peer (see Conn.linger): long enough for a few
	// retransmissions across the world, short enough for a person leaving.
	maxLinger = time.Second
	// startBuffer is a message buffer's first size: room for a greeting.
	// It doubles as a longer message arrives.
	startBuffer = 512
	// keepBuffer is the largest buffer kept for reuse: after a longer
	// message the buffer is dropped, so idle buffers stay small.
	keepBuffer = 64 << 10
)

// serverConfig is the quic-go configuration of a request Server.
func serverConfig(idle time.Duration) *quicgo.Config {
	return &quicgo.Config{
		MaxIdleTimeout:        idle,
		MaxIncomingStreams:    MaxStreams,
		MaxIncomingUniStreams: -1, // requests come on bidirectional streams only
	}
}

// clientConfig is the quic-go configuration of a request Conn. The server
// opens no streams, but a Conn takes what a peer sends on unidirectional
// ones (see Conn.Receive). Its idle timeout defers to the server's.
func clientConfig() *quicgo.Config {
	return &quicgo.Config{
		MaxIdleTimeout:        DefaultIdle,
		MaxIncomingStreams:    -1,
		MaxIncomingUniStreams: maxPeerMessages,
	}
}

// chatConfig is the quic-go configuration of both chat peers: messages on
// unidirectional streams only, and keep-alives, since a chat may be silent
// longer than idle.
func chatConfig(idle time.Duration) *quicgo.Config {
	return &quicgo.Config{
		MaxIdleTimeout:        idle,
		KeepAlivePeriod:       chatKeepAlive,
		MaxIncomingStreams:    -1,
		MaxIncomingUniStreams: maxPeerMessages,
	}
}

// envBufferWarning is quic-go's switch for its socket-buffer warning.
const envBufferWarning = "QUIC_GO_DISABLE_RECEIVE_BUFFER_WARNING"

var quietOnce sync.Once

// newTransport returns a quic-go Transport over pc, with quic-go's
// socket-buffer warning off (see the package comment): a PacketConn that is
// not a *net.UDPConn, as the link's are, would always trigger it.
func newTransport(pc net.PacketConn) *quicgo.Transport {
	quietOnce.Do(func() {
		if _, set := os.LookupEnv(envBufferWarning); !set {
			_ = os.Setenv(envBufferWarning, "true")
		}
	})
	return &quicgo.Transport{Conn: pc}
}

// WireStats is what QUIC put on the wire, from quic-go's ConnectionStats:
// UDP payloads, without UDP or IP headers, retransmissions included.
type WireStats struct {
	PacketsSent     uint64
	PacketsLost     uint64 // declared lost by quic-go's loss detection
	BytesSent       uint64
	PacketsReceived uint64
	BytesReceived   uint64
}

func wireOf(s quicgo.ConnectionStats) WireStats {
	return WireStats{
		PacketsSent: s.PacketsSent, PacketsLost: s.PacketsLost, BytesSent: s.BytesSent,
		PacketsReceived: s.PacketsReceived, BytesReceived: s.BytesReceived,
	}
}

func (w WireStats) add(o WireStats) WireStats {
	return WireStats{
		PacketsSent: w.PacketsSent + o.PacketsSent, PacketsLost: w.PacketsLost + o.PacketsLost,
		BytesSent: w.BytesSent + o.BytesSent, PacketsReceived: w.PacketsReceived + o.PacketsReceived,
		BytesReceived: w.BytesReceived + o.BytesReceived,
	}
}

// errTooLarge is a stream that carried more than MaxMessage bytes.
var errTooLarge = fmt.Errorf("%w: a stream longer than %d bytes", message.ErrTooLarge, MaxMessage)

// buffer is a message buffer, pooled: a pointer, so the pool does not
// allocate to hold it.
type buffer struct {
	b    []byte
	held int // bytes of a server's budget it holds
}

var buffers = sync.Pool{New: func() any { return &buffer{b: make([]byte, 0, startBuffer)} }}

func getBuffer() *buffer { return buffers.Get().(*buffer) }

func putBuffer(b *buffer) {
	if cap(b.b) > keepBuffer {
		return
	}
	b.b = b.b[:0]
	buffers.Put(b)
}

// errOverBudget is a stream that needs more buffer than the server's
// shared budget has left.
var errOverBudget = errors.New("quic: request buffers of all streams at their limit")

// readMessage reads r to its end into buf's spare capacity and returns the
// bytes. It grows buf, doubling, only as bytes arrive, and stops with
// errTooLarge once more than MaxMessage have: a stream never makes it hold
// more than twice what was sent, nor more than MaxMessage+1 bytes.
func readMessage(r io.Reader, buf []byte) ([]byte, error) {
	msg, _, err := readWithin(r, buf, nil)
	return msg, err
}

// readWithin is readMessage taking every byte it grows buf by from b
// first: held is how many, for the caller to give back. It stops with
// errOverBudget when b has not enough left.
func readWithin(r io.Reader, buf []byte, b *budget.Bytes) (msg []byte, held int, err error) {
	buf = buf[:0]
	for {
		if len(buf) == cap(buf) {
			size := min(2*cap(buf)+startBuffer, MaxMessage+1)
			if !b.Take(size - cap(buf)) {
				return buf, held, errOverBudget
			}
			held += size - cap(buf)
			grown := make([]byte, len(buf), size)
			buf = grown[:copy(grown, buf)]
		}
		n, err := r.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		switch {
		case len(buf) > MaxMessage:
			return buf, held, errTooLarge
		case errors.Is(err, io.EOF):
			return buf, held, nil
		case err != nil:
			return buf, held, err
		}
	}
}
