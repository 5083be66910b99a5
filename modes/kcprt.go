package modes

import (
	"context"
	"encoding/binary"
	"flag"
	"fmt"
	"net"
	"time"

	kcp "github.com/xtaci/kcp-go/v5"

	"github.com/udplab/udplab/fec"
	"github.com/udplab/udplab/internal/sockstat"
	"github.com/udplab/udplab/internal/udpsock"
	"github.com/udplab/udplab/message"
	"github.com/udplab/udplab/reliable"
)

// KCPRT is kcp-go's KCP, profile rt, without kcp-go's FEC, over fec's
// chain code: while the peer reports losses, each datagram that carries
// data also carries the XOR of two before it, so a lost one is rebuilt
// from the next datagram instead of waiting for a group to fill or for a
// retransmission. Acknowledgements go unprotected.
var KCPRT = &Mode{
	Name:        "kcp-rt",
	What:        "KCP (profile rt) over parity carried in the next datagrams, while the link loses",
	DefaultAddr: "127.0.0.1:6007",
	flags: func(fs *flag.FlagSet, s *Settings, server bool) {
		if server {
			sessionFlags(fs, s)
			lowPortsFlag(fs, s)
		}
	},
	build: newKCPRT,
}

// kcp-rt's settings, each with the reason for its value.
const (
	// kcpRTProfile is fast3 with a fast resend after one skip: see
	// reliable.Profiles.
	kcpRTProfile = "rt"
	// kcpRTLinger lets an acknowledgement wait for the next data datagram
	// at message rates down to one every 20 ms (fec.ChainConfig.Linger):
	// it saves the datagram and its 28 bytes of headers, and KCP repeats
	// what an acknowledgement says in every segment's una anyway.
	kcpRTLinger = 30 * time.Millisecond
)

type kcpRTTransport struct {
	cfg   reliable.Config
	chain fec.ChainConfig
	base  reliable.Counters
	tally tally // every chain made
}

// newKCPRT fixes kcp-rt's settings: profile rt, no kcp-go FEC, no cipher
// (the chain reads KCP's headers to leave acknowledgements unprotected).
func newKCPRT(s *Settings) (Transport, error) {
	cfg := reliable.Config{NoFEC: true, Profile: kcpRTProfile, Logger: s.logger(),
		Idle: s.Idle, MaxSessions: s.MaxSessions, AllowLowPorts: s.AllowLowPorts}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	chain := fec.ChainConfig{Protect: kcpData, Urgent: kcpHole, Linger: kcpRTLinger, Idle: s.Idle, MaxPeers: s.MaxSessions, AllowLowPorts: s.AllowLowPorts}
	return &kcpRTTransport{cfg: cfg, chain: chain, base: reliable.ReadCounters()}, nil
}

// kcpData returns where the first data segment of a bare KCP datagram
// starts: the acknowledgements and window probes before it need no
// protection, since the next datagram repeats what they say. A datagram
// that does not parse is protected whole.
func kcpData(b []byte) int {
	const overhead = 24 // kcp.IKCP_OVERHEAD
	for off := 0; off+overhead <= len(b); {
		if b[off+4] == kcp.IKCP_CMD_PUSH {
			return off
		}
		n := binary.LittleEndian.Uint32(b[off+20:])
		if uint64(n) > uint64(len(b)-off-overhead) {
			return 0
		}
		off += overhead + int(n)
	}
	return len(b)
}

// kcpHole reports whether a bare KCP datagram acknowledges a segment past
// the first one its sender has not received (sn at or past una): the peer
// fast-retransmits on it, so it must not wait to ride in a later
// datagram.
func kcpHole(b []byte) bool {
	const overhead = 24
	for off := 0; off+overhead <= len(b); {
		seg := b[off:]
		sn, una := binary.LittleEndian.Uint32(seg[12:]), binary.LittleEndian.Uint32(seg[16:])
		if seg[4] == kcp.IKCP_CMD_ACK && int32(sn-una) >= 0 {
			return true
		}
		n := binary.LittleEndian.Uint32(seg[20:])
		if uint64(n) > uint64(len(seg)-overhead) {
			return false
		}
		off += overhead + int(n)
	}
	return false
}

func (t *kcpRTTransport) wrap(pc net.PacketConn) *fec.ChainConn {
	sockstat.SetBuffers(pc)
	c := fec.NewChainConn(pc, &t.chain)
	t.tally.add(func() Counters { return Counters{FECRecovered: c.Stats().Recovered} })
	return c
}

func (t *kcpRTTransport) Traits() Traits {
	c := t.cfg.WithDefaults()
	hdr, _ := t.cfg.HeaderBytes() // validated in newKCPRT
	return Traits{
		FEC:         true,
		Summary:     []string{"KCP rt, unencrypted", "chain parity while lossy"},
		Settings:    map[string]any{"profile": c.Profile, "mtu": c.MTU, "send_window": c.SendWindow, "receive_window": c.ReceiveWindow},
		Delivery:    ReliableOrdered,
		Connected:   true,
		HeaderBytes: hdr + fec.ChainHeaderBytes,
		Congestion:  fmt.Sprintf("window %d/%d; no congestion window", c.SendWindow, c.ReceiveWindow),
		MaxMessage:  reliable.MaxMessage,
		BulkMessage: c.MTU - hdr,
		Stack:       "kcp-go + chain parity",
		Network:     "udp",
	}
}

func (t *kcpRTTransport) Serve(pc net.PacketConn, h message.Handler) (Server, error) {
	w := t.wrap(pc)
	s, err := reliable.NewServer(w, h, &t.cfg)
	if err != nil {
		w.Close()
		return nil, err
	}
	return kcpRTServer{kcpServer{s}, w}, nil
}

func (t *kcpRTTransport) Dial(_ context.Context, pc net.PacketConn, remote net.Addr) (message.Conn, error) {
	w := t.wrap(pc)
	c, err := reliable.NewConn(w, remote, &t.cfg)
	if err != nil {
		w.Close()
		return nil, err
	}
	return c, nil
}

func (t *kcpRTTransport) Listen(addr string, h message.Handler) (Server, error) {
	pc, err := net.ListenPacket("udp", addr)
	if err != nil {
		return nil, fmt.Errorf("listen: %w", err)
	}
	return t.Serve(pc, h)
}

func (t *kcpRTTransport) DialAddr(ctx context.Context, addr string) (message.Conn, error) {
	pc, raddr, err := udpsock.Dial(addr)
	if err != nil {
		return nil, err
	}
	return t.Dial(ctx, pc, raddr)
}

// Chat accepts the first session at listen, or dials peer.
func (t *kcpRTTransport) Chat(ctx context.Context, listen, peer string) (message.Conn, error) {
	return connectedChat("kcp-rt", listen, peer,
		func() (message.Conn, error) { return t.DialAddr(ctx, peer) },
		func() (message.Conn, error) {
			pc, err := net.ListenPacket("udp", listen)
			if err != nil {
				return nil, err
			}
			return reliable.AcceptOne(ctx, t.wrap(pc), &t.cfg)
		})
}

func (t *kcpRTTransport) RetryWait(retries int) time.Duration { return t.cfg.RetryWait(retries) }

func (t *kcpRTTransport) Counters() Counters {
	d := reliable.ReadCounters().Sub(t.base)
	return Counters{Retransmissions: d.Retransmissions, AuthFailures: d.AuthFailures}.plus(t.tally.sum())
}

type kcpRTServer struct {
	kcpServer
	chain *fec.ChainConn
}

func (s kcpRTServer) Describe() []any {
	return append(s.kcpServer.Describe(), "chain", "parity while lossy")
}

func (s kcpRTServer) Summary() []any {
	st := s.chain.Stats()
	return append(s.kcpServer.Summary(), "chain_recovered", st.Recovered, "chain_parity", st.Parity,
		"chain_flushes", st.Flushes, "chain_malformed", st.Malformed,
		"amplification_capped", st.Withheld, "amplification_capped_bytes", st.WithheldBytes)
}
