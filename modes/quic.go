package modes

import (
	"context"
	"crypto/tls"
	"errors"
	"flag"
	"net"
	"strings"
	"sync"
	"time"

	"github.com/udplab/udplab/message"
	"github.com/udplab/udplab/quic"
)

// QUIC is quic-go's QUIC: TLS 1.3, one bidirectional stream per request,
// so replies are reliable but not ordered across requests.
var QUIC = &Mode{
	Name:        "quic",
	What:        "QUIC (quic-go), one stream per request",
	DefaultAddr: "127.0.0.1:6003",
	flags: func(fs *flag.FlagSet, s *Settings, server bool) {
		if server {
			fs.StringVar(&s.QUIC.Cert, "cert", "", "quic: TLS certificate `FILE` (PEM), with --tls-key; default a self-signed one made at start, its SHA-256 logged")
			fs.StringVar(&s.QUIC.Key, "tls-key", "", "quic: the TLS private key `FILE` (PEM) of --cert")
			sessionFlags(fs, s)
			return
		}
		fs.Var(pinValue{&s.QUIC.Pin}, "pin", "quic: accept only a server certificate with this `SHA256` fingerprint (hex, as serve logs it); without it, only a loopback server's certificate is accepted unverified, with a warning")
	},
	build: newQUIC,
}

// quicInitialRTT is quic-go's round-trip estimate before it has measured
// one (RFC 9002's kInitialRtt is 333 ms; quic-go starts at 100 ms). Its
// first probe timeout is about three of them, and doubles from there.
const quicInitialRTT = 100 * time.Millisecond

type quicTransport struct {
	server quic.ServerConfig
	client quic.ClientConfig

	tally tally // every server and conn made

	mu sync.Mutex
	// own is the fingerprint of the certificate this transport's servers
	// present, and ownAddrs their addresses: a dial to one of them (a
	// comparison in this process) pins it.
	own      string
	ownAddrs map[string]bool
}

func newQUIC(s *Settings) (Transport, error) {
	t := &quicTransport{
		server: quic.ServerConfig{Logger: s.logger(), Idle: s.Idle, MaxConns: s.MaxSessions},
		client: quic.ClientConfig{Pin: s.QUIC.Pin, Logger: s.logger()},
	}
	if (s.QUIC.Cert == "") != (s.QUIC.Key == "") {
		return nil, errors.New("--cert and --tls-key go together: give both files, or neither for a self-signed certificate")
	}
	cert, err := serverCert(s.QUIC)
	if err != nil {
		return nil, errors.New(strings.TrimPrefix(err.Error(), "quic: ")) // New adds the mode's name
	}
	t.server.TLS = &tls.Config{Certificates: []tls.Certificate{cert}}
	t.own, t.ownAddrs = quic.Fingerprint(cert), map[string]bool{}
	return t, nil
}

// serverCert is the certificate files' or, without them, a self-signed
// one, which every server of the transport shares.
func serverCert(s QUICSettings) (tls.Certificate, error) {
	if s.Cert != "" {
		return quic.LoadCert(s.Cert, s.Key)
	}
	return quic.SelfSigned()
}

func (t *quicTransport) Traits() Traits {
	return Traits{
		Delivery:      ReliableUnordered,
		Connected:     true,
		HandshakeRTTs: 1,
		HeaderBytes:   quicHeaderBytes,
		Congestion:    "quic-go's CUBIC, paced; per-stream and per-connection flow control",
		MaxMessage:    quic.MaxMessage,
		BulkMessage:   streamChunk,
		Stack:         "quic-go",
		Network:       "udp",
		Summary:       []string{"QUIC: quic-go, TLS 1.3, a stream per request"},
		Settings:      map[string]any{"alpn": quic.ALPN},
		AcceptQueue:   QUICAcceptQueue,
	}
}

// QUICAcceptQueue is the quic mode's Traits.AcceptQueue: quic-go's
// protocol.MaxAcceptQueueSize, which it does not export.
const QUICAcceptQueue = 32

// quicHeaderBytes is a 1-RTT packet's own bytes around one small STREAM
// frame: a short header (1 byte, quic-go's 4-byte connection ID, a 2-byte
// packet number), the AEAD's 16-byte tag, and the frame's type, stream ID,
// offset and length (about 4).
const quicHeaderBytes = 1 + 4 + 2 + 16 + 4

// track counts a connection's or server's lost packets as its
// retransmissions: QUIC never sends a packet again, it sends the lost
// packet's frames in new ones.
func (t *quicTransport) track(read func() quic.WireStats) {
	t.tally.add(func() Counters { return Counters{Retransmissions: read().PacketsLost} })
}

// Serve serves over pc with the transport's certificate; the transport's
// own dials to it pin that certificate.
func (t *quicTransport) Serve(pc net.PacketConn, h message.Handler) (Server, error) {
	s, err := quic.NewServer(pc, h, &t.server)
	if err != nil {
		return nil, err
	}
	t.mu.Lock()
	t.ownAddrs[s.Addr().String()] = true
	t.mu.Unlock()
	t.track(func() quic.WireStats { return s.Stats().Wire })
	return quicServer{s}, nil
}

// clientConfig is how to trust the server at remote: by the transport's
// own certificate when the transport serves there, else as settings say.
func (t *quicTransport) clientConfig(remote net.Addr) *quic.ClientConfig {
	t.mu.Lock()
	defer t.mu.Unlock()
	c := t.client
	if remote != nil && t.ownAddrs[remote.String()] {
		c.Pin = t.own
	}
	return &c
}

func (t *quicTransport) Dial(ctx context.Context, pc net.PacketConn, remote net.Addr) (message.Conn, error) {
	c, err := quic.NewConn(ctx, pc, remote, t.clientConfig(remote))
	if err != nil {
		return nil, err
	}
	t.track(c.Wire)
	return c, nil
}

func (t *quicTransport) Listen(addr string, h message.Handler) (Server, error) {
	s, err := quic.Listen(addr, h, &t.server)
	if err != nil {
		return nil, err
	}
	return quicServer{s}, nil
}

func (t *quicTransport) DialAddr(ctx context.Context, addr string) (message.Conn, error) {
	c, err := quic.Dial(ctx, addr, t.clientConfig(nil))
	if err != nil {
		return nil, err
	}
	t.track(c.Wire)
	return c, nil
}

// Chat accepts the first peer at listen, or dials peer; each line is one
// unidirectional stream.
func (t *quicTransport) Chat(ctx context.Context, listen, peer string) (message.Conn, error) {
	return connectedChat("quic", listen, peer,
		func() (message.Conn, error) { return quic.DialPeer(ctx, peer, t.clientConfig(nil)) },
		func() (message.Conn, error) { return quic.AcceptPeer(ctx, listen, &t.server) })
}

// RetryWait is quic-go's probe timeouts with backoff from its initial
// round-trip estimate: an upper bound once it has measured the link's.
func (t *quicTransport) RetryWait(retries int) time.Duration {
	var total time.Duration
	for i := range retries {
		total += 3 * quicInitialRTT << i
	}
	return total
}

func (t *quicTransport) Counters() Counters { return t.tally.sum() }

type quicServer struct{ *quic.Server }

func (s quicServer) Stats() message.ServerStats { return s.Server.Stats().ServerStats }

func (s quicServer) Describe() []any {
	return []any{"delivery", ReliableUnordered, "alpn", quic.ALPN, "sha256", s.Fingerprint()}
}

func (s quicServer) Summary() []any {
	st := s.Server.Stats()
	return []any{"connections", st.Accepted, "refused", st.Refused, "streams", st.Streams, "packets_lost", st.Wire.PacketsLost, "over_budget", st.OverBudget}
}

// pinValue is a SHA-256 fingerprint in hex, colons and case ignored.
type pinValue struct{ p *string }

func (v pinValue) String() string {
	if v.p == nil {
		return ""
	}
	return *v.p
}

func (v pinValue) Set(s string) error {
	pin, err := quic.ParsePin(s)
	if err != nil {
		return errors.New("want a SHA-256 fingerprint: 64 hex digits, colons allowed, as serve logs it")
	}
	*v.p = pin
	return nil
}
