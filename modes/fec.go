package modes

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"strings"
	"time"

	"github.com/udplab/udplab/fec"
	"github.com/udplab/udplab/internal/cliflag"
	"github.com/udplab/udplab/message"
)

// FEC is Reed-Solomon forward error correction alone, over UDP: parity
// rebuilds lost messages, and nothing is acknowledged, sent again or put
// in order.
var FEC = &Mode{
	Name:        "fec",
	What:        "Reed-Solomon FEC alone from --fec, no retransmission",
	Agree:       []string{"fec"},
	DefaultAddr: "127.0.0.1:6005",
	flags: func(fs *flag.FlagSet, s *Settings, server bool) {
		fecFlag(fs, s)
		cliflag.Duration(fs, &s.FECFlush, "fec-flush", fec.DefaultFlush, time.Microsecond,
			"fec: send a group's parity `AFTER` its first message even if the group is not full")
		if server {
			sessionFlags(fs, s)
			lowPortsFlag(fs, s)
		}
	},
	build: newFEC,
}

type fecTransport struct {
	cfg   fec.Config
	tally tally // every conn and server made
}

// newFEC takes the shards from --fec, which kcp-fec shares.
func newFEC(s *Settings) (Transport, error) {
	kc := s.KCP.WithDefaults()
	if s.KCP.NoFEC {
		return nil, errors.New("fec 0,0 leaves fec without parity: give shards such as 10,3, or use raw")
	}
	cfg := fec.Config{DataShards: kc.DataShards, ParityShards: kc.ParityShards, Flush: s.FECFlush,
		Idle: s.Idle, MaxPeers: s.MaxSessions, Logger: s.logger(), AllowLowPorts: s.AllowLowPorts}
	if err := cfg.Validate(); err != nil {
		return nil, errors.New(strings.TrimPrefix(err.Error(), "fec: ")) // New adds the mode's name
	}
	return &fecTransport{cfg: cfg}, nil
}

func (t *fecTransport) Traits() Traits {
	c := t.cfg.WithDefaults()
	shards := fmt.Sprintf("%d,%d", c.DataShards, c.ParityShards)
	return Traits{
		Delivery:    Unreliable,
		FEC:         true,
		HeaderBytes: fec.HeaderBytes,
		Congestion:  "none: the application's pace, plus parity",
		MaxMessage:  fec.MaxMessage,
		BulkMessage: ethernetPayload - fec.HeaderBytes,
		Stack:       "reedsolomon",
		Network:     "udp",
		Summary:     []string{fmt.Sprintf("FEC-only %s, flush %s", shards, c.Flush)},
		Settings:    map[string]any{"fec": shards, "flush_ms": c.Flush.Seconds() * 1e3},
	}
}

// track counts the messages a conn or server rebuilt.
func (t *fecTransport) track(read func() fec.Stats) {
	t.tally.add(func() Counters { return Counters{FECRecovered: read().Recovered} })
}

func (t *fecTransport) Serve(pc net.PacketConn, h message.Handler) (Server, error) {
	s, err := fec.NewServer(pc, h, &t.cfg)
	if err != nil {
		return nil, err
	}
	t.track(func() fec.Stats { return s.Stats().FEC })
	return fecServer{s, t.cfg.WithDefaults()}, nil
}

func (t *fecTransport) Dial(_ context.Context, pc net.PacketConn, remote net.Addr) (message.Conn, error) {
	c, err := fec.NewConn(pc, remote, &t.cfg)
	if err != nil {
		return nil, err
	}
	t.track(c.Stats)
	return c, nil
}

func (t *fecTransport) Listen(addr string, h message.Handler) (Server, error) {
	s, err := fec.Listen(addr, h, &t.cfg)
	if err != nil {
		return nil, err
	}
	return fecServer{s, t.cfg.WithDefaults()}, nil
}

func (t *fecTransport) DialAddr(_ context.Context, addr string) (message.Conn, error) {
	c, err := fec.Dial(addr, &t.cfg)
	if err != nil {
		return nil, err
	}
	t.track(c.Stats)
	return c, nil
}

// Chat sends from listen to peer: like raw, fec has no connection.
func (t *fecTransport) Chat(_ context.Context, listen, peer string) (message.Conn, error) {
	return datagramChat("fec", listen, peer, func(pc net.PacketConn, peer net.Addr) (message.Conn, error) {
		return fec.NewConn(pc, peer, &t.cfg)
	})
}

func (t *fecTransport) RetryWait(int) time.Duration { return 0 }

func (t *fecTransport) Counters() Counters { return t.tally.sum() }

type fecServer struct {
	*fec.Server
	cfg fec.Config
}

func (s fecServer) Stats() message.ServerStats { return s.Server.Stats().ServerStats }

func (s fecServer) Describe() []any {
	return []any{"delivery", Unreliable, "fec", fmt.Sprintf("%d,%d", s.cfg.DataShards, s.cfg.ParityShards), "flush", s.cfg.Flush}
}

func (s fecServer) Summary() []any {
	st := s.Server.Stats()
	return append([]any{"peers", st.Peers, "refused", st.Refused, "reaped", st.Reaped,
		"recovered", st.FEC.Recovered, "lost", st.FEC.Lost, "malformed", st.FEC.Malformed, "withheld", st.Withheld},
		guardAttrs(st.Counts)...)
}
