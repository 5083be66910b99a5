// Package modes is udplab's one list of transport modes. A mode is a
// transport in one configuration (raw, fec, kcp, kcp-fec, tcp, quic), defined once:
// its name, how it serves and dials over a net.PacketConn (the seam the
// simulated link plugs into) and over a real address, its traits for the
// report, its counters for a run, and its flags. serve, client, chat and
// compare iterate over this list; nothing else switches on a mode's name.
//
// Adding a transport is a new package behind package message plus one
// registration here (a file with its Mode value, listed in All), with its
// conformance tests from internal/conntest.
package modes

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/udplab/udplab/message"
	"github.com/udplab/udplab/reliable"
)

// Mode is one transport in one configuration.
type Mode struct {
	// Name is the mode's name everywhere: --mode, --modes, --target, serve's
	// --NAME flag, reports.
	Name string
	// Aliases are older names that still work and mean this mode.
	Aliases []string
	// What says what the mode is, for help texts.
	What string
	// DefaultAddr is where serve listens, and client and chat look, by
	// default.
	DefaultAddr string
	// Agree names the flags whose settings client and server must share.
	Agree []string

	flags func(fs *flag.FlagSet, s *Settings, server bool)
	build func(s *Settings) (Transport, error)
}

// New returns the mode's transport with settings s (nil means defaults).
// Its error names the setting the mode refuses; every setting comes from a
// flag on the command line, so callers there report it as a usage error.
func (m *Mode) New(s *Settings) (Transport, error) {
	if s == nil {
		s = &Settings{}
	}
	t, err := m.build(s)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", m.Name, err)
	}
	return t, nil
}

// TakesFlag reports whether the mode has a flag called name (with server,
// among serve's flags).
func (m *Mode) TakesFlag(name string, server bool) bool {
	if m.flags == nil {
		return false
	}
	fs := flag.NewFlagSet("", flag.ContinueOnError)
	m.flags(fs, &Settings{}, server)
	return fs.Lookup(name) != nil
}

// ListenFlag is the name of serve's flag for the mode's listening
// address: the mode's name, or NAME-addr where a setting already has that
// name (fec's shards are --fec, so the fec listener is --fec-addr).
func (m *Mode) ListenFlag() string {
	for _, o := range all {
		if o.TakesFlag(m.Name, true) {
			return m.Name + "-addr"
		}
	}
	return m.Name
}

// Bulk message sizes: a UDP payload that fills a 1500-byte Ethernet frame
// over IPv4, and the chunk a stream mode sends, large enough that its
// framing costs little and small enough that the receiver's progress shows
// every few milliseconds on a slow link.
const (
	ethernetPayload = 1500 - 20 - 8
	streamChunk     = 8 << 10
)

// Settings are every mode's settings, as flags or code set them. The zero
// value means every transport's defaults.
type Settings struct {
	// KCP configures kcp and kcp-fec; kcp-fec and fec take their FEC
	// shards from it, kcp turns FEC off.
	KCP reliable.Config
	// FECFlush is how long fec holds a group's parity for more messages;
	// zero means the fec package's default.
	FECFlush time.Duration
	// QUIC is quic's TLS: certificate files for a server, a pin for a
	// client.
	QUIC QUICSettings
	// Idle is how long a server keeps a session or connection that sends
	// nothing; zero means the transport's default.
	Idle time.Duration
	// MaxSessions bounds a server's sessions or connections; zero means the
	// transport's default.
	MaxSessions int
	// AllowLowPorts lets the UDP servers answer sources on ports below
	// 1024, which they otherwise drop (see package guard).
	AllowLowPorts bool
	// Logger receives servers' warnings and, at debug level, a line per
	// request. Nil discards them.
	Logger *slog.Logger
}

func (s *Settings) logger() *slog.Logger {
	if s.Logger == nil {
		return discard
	}
	return s.Logger
}

// QUICSettings are quic's TLS settings.
type QUICSettings struct {
	Cert, Key string // the server's certificate and key files; empty: self-signed
	Pin       string // the SHA-256 fingerprint a client accepts
}

// Delivery is what a mode promises about the messages it carries.
type Delivery string

// The delivery classes.
const (
	Unreliable        Delivery = "unreliable-unordered" // each message arrives once, or never, in any order
	ReliableOrdered   Delivery = "reliable-ordered"     // every message arrives, once, in the order sent
	ReliableUnordered Delivery = "reliable-unordered"   // every message arrives, once, in any order
)

// Traits are what the report says about a mode, as configured.
type Traits struct {
	Delivery Delivery
	// Connected modes have one side that listens and accepts and one that
	// dials (chat takes --listen or --peer); the others exchange datagrams
	// between two addresses (chat takes both).
	Connected bool
	// HandshakeRTTs is how many round trips pass before the first request
	// can leave: 0 for modes that send at once.
	HandshakeRTTs int
	// HeaderBytes is the mode's own header in each datagram, below the IP
	// and UDP headers; for IPPackets modes, the IP and transport headers of
	// a segment without options.
	HeaderBytes int
	// IPPackets is true when, over a PacketConn, each datagram is a whole
	// IP packet (a user-space TCP/IP stack): its headers are in its bytes,
	// so the wire's IP and UDP headers are not added to it.
	IPPackets bool
	// Congestion says what paces the mode's sending, for the report.
	Congestion string
	// MaxMessage is the largest message, in bytes.
	MaxMessage int
	// BulkMessage is the message size a bulk transfer uses when given
	// none: the most one datagram carries under a 1500-byte MTU for the
	// datagram modes, a chunk a stream carries in a few segments for the
	// stream modes.
	BulkMessage int
	// Stack names what implements the mode, for reports.
	Stack string
	// Network is what a real address means to the mode: "udp" or "tcp".
	Network string
	// FEC is true when the mode repairs losses from parity.
	FEC bool
	// Summary is what a report's first line says of the mode's settings,
	// in parts that modes sharing settings share.
	Summary []string
	// Settings are the mode's settings, defaults filled in, for reports.
	Settings map[string]any
	// AcceptQueue is how many connections the server holds, handshaken,
	// for its accept loop before it refuses more; zero means no such
	// bound. A client opening more at once than this can be refused by a
	// server short of CPU.
	AcceptQueue int
}

// WireCounter is a Conn over a real address that counts its own wire,
// where no PacketConn of udplab's sees the packets (the kernel's TCP).
type WireCounter interface {
	// Wire is what the conversation has sent and received so far, or,
	// once it is closed, until it closed; ok is false where the platform
	// does not say.
	Wire() (w Wire, ok bool)
}

// Wire is a conversation's packets in both directions.
type Wire struct {
	Packets     uint64
	Bytes       uint64 // whole IP packets, headers included
	HeaderBytes uint64 // the IP and transport headers in them
	// Retransmissions counts segments sent again.
	Retransmissions uint64
}

// Transport is a mode made concrete with its settings.
type Transport interface {
	// Traits describes the mode as configured.
	Traits() Traits
	// Serve serves h over pc until the server closes; it takes pc over,
	// closing it on failure too.
	Serve(pc net.PacketConn, h message.Handler) (Server, error)
	// Dial opens a conversation over pc with the server whose socket is at
	// remote; it takes pc over, closing it on failure too.
	Dial(ctx context.Context, pc net.PacketConn, remote net.Addr) (message.Conn, error)
	// Listen serves h at a real address until the server closes.
	Listen(addr string, h message.Handler) (Server, error)
	// DialAddr opens a conversation with the server at a real address.
	DialAddr(ctx context.Context, addr string) (message.Conn, error)
	// Chat opens one end of a two-party conversation at real addresses: a
	// connected mode takes either listen (wait for the first peer there) or
	// peer (dial it); the others take both.
	Chat(ctx context.Context, listen, peer string) (message.Conn, error)
	// RetryWait is how long the transport takes to send a message and
	// retransmit it retries times, from its first timeout; 0 for a mode
	// that never retransmits.
	RetryWait(retries int) time.Duration
	// Counters is what the transport has done since New.
	Counters() Counters
}

// Server is a mode's server, over a PacketConn or a real address.
type Server interface {
	message.Server
	// Stats counts what the server did with the requests it read.
	Stats() message.ServerStats
	// SocketDrops is how many datagrams the kernel dropped at the server's
	// socket for a full receive buffer; ok is false when that is unknown.
	SocketDrops() (n uint64, ok bool)
	// Describe is the server's settings as slog attributes, defaults
	// filled in, for the line serve logs when it is ready.
	Describe() []any
	// Summary is the server's own counters beyond Stats, as slog
	// attributes, for serve's summary.
	Summary() []any
}

// Shutdown stops s from taking new clients and requests, lets it answer
// what it accepted and wait for the answers to be acknowledged until ctx
// ends, and then closes it. A server without a drain of its own is closed
// at once.
func Shutdown(ctx context.Context, s Server) error {
	if d, ok := s.(interface{ Shutdown(context.Context) error }); ok {
		return d.Shutdown(ctx)
	}
	return s.Close()
}

// Counters are what a transport did, read through its own package. A run
// reads them as deltas.
type Counters struct {
	Retransmissions uint64 // segments or packets sent again
	FECRecovered    uint64 // messages or segments rebuilt from parity
	AuthFailures    uint64 // packets dropped for a failed decryption or checksum
	// HeaderBytes counts, for IPPackets modes, the IP and transport header
	// bytes (options included) in the packets the transport sent.
	HeaderBytes uint64
}

// Sub returns c minus before.
func (c Counters) Sub(before Counters) Counters {
	return Counters{
		Retransmissions: c.Retransmissions - before.Retransmissions,
		FECRecovered:    c.FECRecovered - before.FECRecovered,
		AuthFailures:    c.AuthFailures - before.AuthFailures,
		HeaderBytes:     c.HeaderBytes - before.HeaderBytes,
	}
}

// plus returns c and d added.
func (c Counters) plus(d Counters) Counters {
	return Counters{
		Retransmissions: c.Retransmissions + d.Retransmissions,
		FECRecovered:    c.FECRecovered + d.FECRecovered,
		AuthFailures:    c.AuthFailures + d.AuthFailures,
		HeaderBytes:     c.HeaderBytes + d.HeaderBytes,
	}
}

// tally sums what every server and conversation a transport made has done,
// for transports whose counters live in each of them rather than in one
// place: each adds a reading of its own.
type tally struct {
	mu    sync.Mutex
	reads []func() Counters
}

func (t *tally) add(read func() Counters) {
	t.mu.Lock()
	t.reads = append(t.reads, read)
	t.mu.Unlock()
}

func (t *tally) sum() Counters {
	t.mu.Lock()
	defer t.mu.Unlock()
	var c Counters
	for _, read := range t.reads {
		c = c.plus(read())
	}
	return c
}

// All returns every mode, in the order reports show them.
func All() []*Mode { return slices.Clone(all) }

var all = []*Mode{Raw, FEC, KCP, KCPFEC, KCPRT, TCP, QUIC}

// Lookup returns the mode called name, or one of its aliases.
func Lookup(name string) (*Mode, error) {
	for _, m := range all {
		if m.Name == name || slices.Contains(m.Aliases, name) {
			return m, nil
		}
	}
	return nil, fmt.Errorf("mode %q: want one of %s", name, strings.Join(Names(), ", "))
}

// Names returns every mode's name, in order, without aliases.
func Names() []string {
	names := make([]string, len(all))
	for i, m := range all {
		names[i] = m.Name
	}
	return names
}

// Index is m's place in All, for stable colours and ordering.
func Index(name string) int {
	return slices.IndexFunc(all, func(m *Mode) bool { return m.Name == name })
}

// Flags registers on fs the flags of every mode in ms, each once, filling
// s; with server, serve's flags too. Modes that share a flag (kcp and
// kcp-fec share KCP's) must fill the same setting: the first mode's
// registration is the one kept.
func Flags(fs *flag.FlagSet, s *Settings, ms []*Mode, server bool) {
	for _, m := range ms {
		if m.flags == nil {
			continue
		}
		own := flag.NewFlagSet("", flag.ContinueOnError)
		m.flags(own, s, server)
		own.VisitAll(func(f *flag.Flag) {
			if fs.Lookup(f.Name) == nil {
				fs.Var(f.Value, f.Name, f.Usage)
			}
		})
	}
}

// Owners returns the names of the modes that take the flag called name.
func Owners(name string, server bool) []string {
	var owners []string
	for _, m := range all {
		if m.TakesFlag(name, server) {
			owners = append(owners, m.Name)
		}
	}
	return owners
}

// connectedChat opens one end of a connected mode's chat: it waits at
// listen for the first peer (accept), or dials peer (dial), never both.
func connectedChat(name, listen, peer string, dial, accept func() (message.Conn, error)) (message.Conn, error) {
	switch {
	case (listen == "") == (peer == ""):
		return nil, fmt.Errorf("%s: chat takes a listening address or a peer, not both", name)
	case peer != "":
		return dial()
	}
	return accept()
}
