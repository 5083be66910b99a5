package modes

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"math"
	"net"
	"strings"
	"time"

	"github.com/udplab/udplab/internal/cliflag"
	"github.com/udplab/udplab/message"
	"github.com/udplab/udplab/reliable"
)

// KCP is kcp-go's KCP without FEC. "reliable" is its older name.
var KCP = &Mode{
	Name:        "kcp",
	Aliases:     []string{"reliable"},
	What:        "KCP without FEC",
	DefaultAddr: "127.0.0.1:6001",
	Agree:       []string{"crypt", "key"},
	flags:       kcpFlags(false),
	build:       func(s *Settings) (Transport, error) { return newKCP(s, false) },
}

// KCPFEC is kcp-go's KCP with Reed-Solomon FEC (--fec, default 10,3).
// "reliable-fec" is its older name.
var KCPFEC = &Mode{
	Name:        "kcp-fec",
	Aliases:     []string{"reliable-fec"},
	What:        "KCP with Reed-Solomon FEC from --fec",
	DefaultAddr: "127.0.0.1:6004",
	Agree:       []string{"fec", "crypt", "key"},
	flags:       kcpFlags(true),
	build:       func(s *Settings) (Transport, error) { return newKCP(s, true) },
}

// kcpTransport is the reliable package in one of its two modes.
type kcpTransport struct {
	cfg  reliable.Config
	base reliable.Counters // kcp-go's process-wide counters at New
}

// newKCP fixes the FEC rule the mode's name makes: kcp has none, and
// kcp-fec must have some.
func newKCP(s *Settings, fec bool) (Transport, error) {
	cfg := s.KCP
	cfg.Logger = s.logger()
	cfg.Idle, cfg.MaxSessions, cfg.AllowLowPorts = s.Idle, s.MaxSessions, s.AllowLowPorts
	switch {
	case !fec:
		cfg.NoFEC, cfg.DataShards, cfg.ParityShards = true, 0, 0
	case cfg.NoFEC:
		return nil, errors.New("fec 0,0 leaves kcp-fec without FEC: give shards such as 10,3, or use kcp (KCP without FEC)")
	}
	if err := cfg.Validate(); err != nil {
		return nil, errors.New(strings.TrimPrefix(err.Error(), "reliable: "))
	}
	return &kcpTransport{cfg: cfg, base: reliable.ReadCounters()}, nil
}

func (t *kcpTransport) Traits() Traits {
	c := t.cfg.WithDefaults()
	hdr, _ := t.cfg.HeaderBytes() // validated in newKCP
	cc := "congestion window on"
	if reliable.Profiles[c.Profile].NoCongestion != 0 {
		cc = "no congestion window"
	}
	crypt := "unencrypted"
	if c.Crypt != "" {
		crypt = c.Crypt
	}
	summary := []string{fmt.Sprintf("KCP %s, %s", c.Profile, crypt)}
	settings := map[string]any{"profile": c.Profile, "crypt": c.Crypt, "mtu": c.MTU,
		"send_window": c.SendWindow, "receive_window": c.ReceiveWindow}
	if !c.NoFEC {
		summary = append(summary, "FEC "+c.FECString())
		settings["fec"] = c.FECString()
	}
	return Traits{
		FEC:         !c.NoFEC,
		Summary:     summary,
		Settings:    settings,
		Delivery:    ReliableOrdered,
		Connected:   true,
		HeaderBytes: hdr,
		Congestion:  fmt.Sprintf("window %d/%d; %s", c.SendWindow, c.ReceiveWindow, cc),
		MaxMessage:  reliable.MaxMessage,
		BulkMessage: c.MTU - hdr, // one segment: kcp-go's mss
		Stack:       "kcp-go",
		Network:     "udp",
	}
}

func (t *kcpTransport) Serve(pc net.PacketConn, h message.Handler) (Server, error) {
	s, err := reliable.NewServer(pc, h, &t.cfg)
	if err != nil {
		pc.Close()
		return nil, err
	}
	return kcpServer{s}, nil
}

func (t *kcpTransport) Dial(_ context.Context, pc net.PacketConn, remote net.Addr) (message.Conn, error) {
	c, err := reliable.NewConn(pc, remote, &t.cfg)
	if err != nil {
		pc.Close()
		return nil, err
	}
	return c, nil
}

func (t *kcpTransport) Listen(addr string, h message.Handler) (Server, error) {
	s, err := reliable.Listen(addr, h, &t.cfg)
	if err != nil {
		return nil, err
	}
	return kcpServer{s}, nil
}

func (t *kcpTransport) DialAddr(_ context.Context, addr string) (message.Conn, error) {
	return reliable.Dial(addr, &t.cfg)
}

// Chat accepts the first session at listen, or dials peer.
func (t *kcpTransport) Chat(ctx context.Context, listen, peer string) (message.Conn, error) {
	return connectedChat("kcp", listen, peer,
		func() (message.Conn, error) { return reliable.Dial(peer, &t.cfg) },
		func() (message.Conn, error) {
			pc, err := net.ListenPacket("udp", listen)
			if err != nil {
				return nil, err
			}
			return reliable.AcceptOne(ctx, pc, &t.cfg)
		})
}

func (t *kcpTransport) RetryWait(retries int) time.Duration { return t.cfg.RetryWait(retries) }

func (t *kcpTransport) Counters() Counters {
	d := reliable.ReadCounters().Sub(t.base)
	return Counters{Retransmissions: d.Retransmissions, FECRecovered: d.FECRecovered, AuthFailures: d.AuthFailures}
}

type kcpServer struct{ *reliable.Server }

func (s kcpServer) Stats() message.ServerStats { return s.Server.Stats().ServerStats }

func (s kcpServer) Describe() []any {
	in := s.Config() // what the server runs with, defaults filled in
	fec, crypt := in.FECString(), in.Crypt
	if in.NoFEC {
		fec = "off"
	}
	if crypt == "" {
		crypt = "off"
	}
	return []any{"delivery", ReliableOrdered, "fec", fec, "profile", in.Profile, "crypt", crypt, "mtu", in.MTU}
}

func (s kcpServer) Summary() []any {
	st := s.Server.Stats()
	return []any{"sessions", st.Sessions, "accepted", st.Accepted, "refused", st.Refused, "reaped", st.Reaped,
		"probation", st.Probation, "validated", st.Validated, "probes", st.Probes, "unvalidated", st.Unvalidated,
		"resets_refused", st.ResetsRefused, "replay_drops", st.Replays, "auth_failures", st.AuthFailures,
		"loops_dropped", st.LoopsDropped, "low_ports_dropped", st.LowPortsDropped,
		"reassembly_refused", st.ReassemblyRefused, "fec_refused", st.FECRefused}
}

// The reliable transport's ranges, as reliable.Config's Validate checks
// them; TestKCPRanges holds the two together. On the command line a value
// outside them is a usage error: a typed 0 never passes through as the
// library's "default".
const (
	minMTU, maxMTU = 256, 1500
	maxWindow      = 32768
)

// kcpFlags registers KCP's flags, and --fec with fec; servers also get the
// session flags.
func kcpFlags(fec bool) func(fs *flag.FlagSet, s *Settings, server bool) {
	return func(fs *flag.FlagSet, s *Settings, server bool) {
		cfg := &s.KCP
		if fec {
			fecFlag(fs, s)
		}
		cliflag.Choice(fs, &cfg.Profile, "profile", reliable.DefaultProfile, reliable.ProfileNames,
			"KCP: profile as kcptun names it")
		fs.StringVar(&cfg.Key, "key", "", "KCP: pre-shared `KEY`; empty means no encryption (client and server must agree)")
		fs.Var(cliflag.ChoiceValue{V: &cfg.Crypt, Choices: reliable.CryptNames()}, "crypt",
			"KCP: `CIPHER` as kcptun names it, used with --key (default "+reliable.DefaultCrypt+" when --key is set): "+
				strings.Join(reliable.CryptNames(), ", "))
		cliflag.Int(fs, &cfg.MTU, "mtu", reliable.DefaultMTU, minMTU, maxMTU,
			fmt.Sprintf("KCP: largest UDP payload KCP sends, %d to %d `BYTES`", minMTU, maxMTU))
		cliflag.Int(fs, &cfg.SendWindow, "sndwnd", reliable.DefaultSendWindow, 1, maxWindow,
			fmt.Sprintf("KCP: send window, 1 to %d `SEGMENTS`", maxWindow))
		cliflag.Int(fs, &cfg.ReceiveWindow, "rcvwnd", reliable.DefaultReceiveWindow, 1, maxWindow,
			fmt.Sprintf("KCP: receive window, 1 to %d `SEGMENTS`", maxWindow))
		if server {
			sessionFlags(fs, s)
			lowPortsFlag(fs, s)
		}
	}
}

// sessionFlags registers the flags every server with per-client state
// shares: how long a silent client is kept, and how many at once.
func sessionFlags(fs *flag.FlagSet, s *Settings) {
	cliflag.Duration(fs, &s.Idle, "idle", reliable.DefaultIdle, 1,
		"servers with per-client state (every mode but raw): forget a client, or close its connection, silent for `D`")
	cliflag.Int(fs, &s.MaxSessions, "max-sessions", reliable.DefaultMaxSessions, 1, math.MaxInt,
		"servers with per-client state: at most `N` clients at once; new clients beyond them are refused")
}

// lowPortsFlag registers --allow-low-ports, which every UDP server takes.
func lowPortsFlag(fs *flag.FlagSet, s *Settings) {
	fs.BoolVar(&s.AllowLowPorts, "allow-low-ports", false,
		"UDP servers (raw, fec, kcp, kcp-fec): answer sources on ports below 1024, which are dropped by default as reflection targets")
}

// fecFlag registers --fec, which fec and kcp-fec share.
func fecFlag(fs *flag.FlagSet, s *Settings) {
	fs.Var(fecValue{&s.KCP}, "fec", "fec and kcp-fec: Reed-Solomon FEC as `D,P`, data and parity shards")
}

// fecValue sets a reliable.Config's FEC from "D,P".
type fecValue struct{ cfg *reliable.Config }

func (f fecValue) String() string {
	if f.cfg == nil {
		return ""
	}
	return f.cfg.FECString()
}

func (f fecValue) Set(s string) error {
	if err := f.cfg.ParseFEC(s); err != nil {
		return fmt.Errorf("want DATA,PARITY shards such as 10,3: at least 1 each, at most 256 together")
	}
	return nil
}
