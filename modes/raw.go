package modes

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"time"

	"github.com/udplab/udplab/internal/guard"
	"github.com/udplab/udplab/message"
	"github.com/udplab/udplab/raw"
)

// Raw is bare UDP: one message, one datagram; no acknowledgement,
// retransmission or ordering. It has the tutorials' port.
var Raw = &Mode{
	Name:        "raw",
	What:        "bare UDP",
	DefaultAddr: "127.0.0.1:6000",
	flags: func(fs *flag.FlagSet, s *Settings, server bool) {
		if server {
			lowPortsFlag(fs, s)
		}
	},
	build: func(s *Settings) (Transport, error) {
		return rawTransport{&raw.ServerConfig{Logger: s.logger(), AllowLowPorts: s.AllowLowPorts}}, nil
	},
}

var discard = slog.New(slog.NewTextHandler(io.Discard, nil))

type rawTransport struct{ cfg *raw.ServerConfig }

func (rawTransport) Traits() Traits {
	return Traits{
		Delivery:    Unreliable,
		Congestion:  "none: the application's pace",
		MaxMessage:  raw.MaxMessage,
		BulkMessage: ethernetPayload,
		Stack:       "kernel UDP",
		Network:     "udp",
	}
}

func (t rawTransport) Serve(pc net.PacketConn, h message.Handler) (Server, error) {
	return rawServer{raw.NewServer(pc, h, t.cfg)}, nil
}

func (rawTransport) Dial(_ context.Context, pc net.PacketConn, remote net.Addr) (message.Conn, error) {
	return raw.NewConn(pc, remote), nil
}

func (t rawTransport) Listen(addr string, h message.Handler) (Server, error) {
	s, err := raw.Listen(addr, h, t.cfg)
	if err != nil {
		return nil, err
	}
	return rawServer{s}, nil
}

func (rawTransport) DialAddr(_ context.Context, addr string) (message.Conn, error) {
	return raw.Dial(addr)
}

// Chat sends from listen to peer: raw has no connection, so it needs both.
func (rawTransport) Chat(_ context.Context, listen, peer string) (message.Conn, error) {
	return datagramChat("raw", listen, peer, func(pc net.PacketConn, peer net.Addr) (message.Conn, error) {
		return raw.NewConn(pc, peer), nil
	})
}

// datagramChat opens one end of a connectionless mode's chat: a socket at
// listen, sending to peer. It needs both.
func datagramChat(name, listen, peer string, open func(pc net.PacketConn, peer net.Addr) (message.Conn, error)) (message.Conn, error) {
	if listen == "" || peer == "" {
		return nil, fmt.Errorf("%s: chat needs both a listening address and a peer", name)
	}
	paddr, err := net.ResolveUDPAddr("udp", peer)
	if err != nil {
		return nil, err
	}
	pc, err := net.ListenPacket("udp", listen)
	if err != nil {
		return nil, err
	}
	return open(pc, paddr)
}

func (rawTransport) RetryWait(int) time.Duration { return 0 }
func (rawTransport) Counters() Counters          { return Counters{} }

type rawServer struct{ *raw.Server }

func (s rawServer) Stats() message.ServerStats { return s.Server.Stats().ServerStats }
func (rawServer) Describe() []any              { return []any{"delivery", Unreliable} }
func (s rawServer) Summary() []any             { return guardAttrs(s.Server.Stats().Counts) }

// guardAttrs is what a UDP server's source and 3× checks refused, as
// Summary attributes: serve's summary prints them, and metrics are scraped
// by these names.
func guardAttrs(c guard.Counts) []any {
	return []any{"loops_dropped", c.LoopsDropped, "low_ports_dropped", c.LowPortsDropped,
		"amplification_capped", c.AmplificationCapped, "amplification_capped_bytes", c.AmplificationCappedBytes}
}
