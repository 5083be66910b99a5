package compare

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync/atomic"
	"time"

	kcp "github.com/xtaci/kcp-go/v5"

	"github.com/udplab/udplab/internal/udpsock"
	"github.com/udplab/udplab/link"
	"github.com/udplab/udplab/message"
	"github.com/udplab/udplab/raw"
	"github.com/udplab/udplab/reliable"
)

// Mode is a transport configuration that compare measures.
type Mode string

// The modes.
const (
	Raw         Mode = "raw"          // bare datagrams
	Reliable    Mode = "reliable"     // KCP without FEC
	ReliableFEC Mode = "reliable-fec" // KCP with Reed-Solomon FEC
)

// Modes lists every mode in the order reports show them.
var Modes = []Mode{Raw, Reliable, ReliableFEC}

// ParseMode returns the mode named s.
func ParseMode(s string) (Mode, error) {
	for _, m := range Modes {
		if string(m) == s {
			return m, nil
		}
	}
	return "", fmt.Errorf("mode %q: want one of %s", s, strings.Join(ModeNames(), ", "))
}

// ModeNames returns the names of Modes, in order.
func ModeNames() []string {
	names := make([]string, len(Modes))
	for i, m := range Modes {
		names[i] = string(m)
	}
	return names
}

// Target is a server already running, measured over the real network.
type Target struct {
	Mode Mode   // Raw, or Reliable/ReliableFEC as Config.Reliable's FEC says
	Addr string // host:port
}

// Config is one comparison: every link (or target) crossed with every mode.
type Config struct {
	// Modes to run on every link, in this order. Nil means all of Modes.
	Modes []Mode
	// Links to simulate. Nil means DefaultLinks(Seed). Ignored with Targets.
	Links []Link
	// Sweep is the link parameter the links vary, when they come from
	// SweepLinks; reports and charts use it as their x axis.
	Sweep string
	// Targets, when set, measures running servers instead of simulating.
	Targets []Target
	// Seed is recorded in the report; the links carry the seed they use.
	Seed uint64
	// Workload is what the client does in each run.
	Workload Workload
	// Reliable configures both reliable modes: ReliableFEC uses its FEC
	// shards (default 10,3), Reliable turns FEC off. Both ends use it.
	Reliable reliable.Config
	// Progress, if not nil, is called with each batch of messages sent,
	// from the goroutine that sends them; one run at a time.
	Progress func(sent int)
}

// Runs returns how many runs c makes.
func (c *Config) Runs() int {
	if len(c.Targets) > 0 {
		return len(c.Targets)
	}
	return len(c.modes()) * max(len(c.Links), 1)
}

func (c *Config) modes() []Mode {
	if c.Modes == nil {
		return Modes
	}
	return c.Modes
}

func (c *Config) links() []Link {
	if c.Links == nil {
		return DefaultLinks(c.Seed)
	}
	return c.Links
}

// Validate reports a configuration that cannot run.
func (c *Config) Validate() error {
	if err := c.Workload.Validate(); err != nil {
		return err
	}
	if c.Modes != nil && len(c.Modes) == 0 {
		return errors.New("modes: want at least one of " + strings.Join(ModeNames(), ", "))
	}
	for _, m := range c.Modes {
		if _, err := ParseMode(string(m)); err != nil {
			return err
		}
	}
	for _, t := range c.Targets {
		if _, err := ParseMode(string(t.Mode)); err != nil {
			return err
		}
	}
	rc := c.Reliable
	if err := rc.Validate(); err != nil {
		return err
	}
	for _, l := range c.Links {
		if err := l.Spec.Validate(); err != nil {
			return fmt.Errorf("link %q: %w", l.Name, err)
		}
	}
	return nil
}

// reliableConfig returns the reliable transport's configuration for mode.
func (c *Config) reliableConfig(m Mode) *reliable.Config {
	rc := c.Reliable
	rc.NoFEC = m == Reliable
	rc.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	return &rc
}

// Result is what one run measured. Field meanings are in the README
// ("Reading the results"); JSON and CSV use the json names.
type Result struct {
	Mode       Mode   `json:"mode"`
	Link       string `json:"link"`                  // the link's name, or the target's address
	LinkSpec   string `json:"link_spec,omitempty"`   // the whole link in the grammar, seed included
	SweepValue string `json:"sweep_value,omitempty"` // the swept parameter's value

	Sent       int     `json:"sent"`
	Delivered  int     `json:"delivered"`
	InOrder    int     `json:"in_order"`
	Duplicates int     `json:"duplicates"`
	BadReplies int     `json:"bad_replies"`
	Latency    Latency `json:"latency_ms"`
	JitterMS   float64 `json:"jitter_ms"`
	FirstMS    float64 `json:"first_reply_ms"`

	PayloadBytes         uint64  `json:"payload_bytes"`
	WireBytes            uint64  `json:"wire_bytes"`
	WirePackets          uint64  `json:"wire_packets"`
	WireBytesWithHeaders uint64  `json:"wire_bytes_with_headers"`
	Overhead             float64 `json:"overhead"`
	LinkDrops            uint64  `json:"link_drops"`

	Retransmissions uint64 `json:"retransmissions"`
	FECRecovered    uint64 `json:"fec_recovered"`

	GoodputBPS float64 `json:"goodput_bps"`
	DurationS  float64 `json:"duration_s"`
	CPUS       float64 `json:"cpu_s"`
	Stalled    bool    `json:"stalled"`

	rec *Recorder
}

// CDF returns the run's round-trip distribution (see Recorder.CDF).
func (r *Result) CDF() (ms, frac []float64) {
	if r.rec == nil {
		return nil, nil
	}
	return r.rec.CDF()
}

// DeliveredPct is delivered as a percentage of sent.
func (r *Result) DeliveredPct() float64 { return pct(r.Delivered, r.Sent) }

// InOrderPct is in_order as a percentage of delivered.
func (r *Result) InOrderPct() float64 { return pct(r.InOrder, r.Delivered) }

func pct(a, b int) float64 {
	if b == 0 {
		return 0
	}
	return 100 * float64(a) / float64(b)
}

// Run runs every link (or target) with every mode, one run at a time, and
// returns what they measured. When ctx is cancelled it stops and returns
// the runs finished so far, and the stopped one as far as it got, with
// ctx's cause. A run that fails to start ends the comparison with its
// error and the runs before it.
func Run(ctx context.Context, c Config) (*Report, error) {
	if err := c.Validate(); err != nil {
		return nil, err
	}
	c.Workload = c.Workload.withDefaults()
	rep := &Report{Config: c.describe()}
	if len(c.Targets) > 0 {
		for _, t := range c.Targets {
			r, err := c.runTarget(ctx, t)
			if err != nil {
				return rep.cut(ctx, r, err)
			}
			rep.Results = append(rep.Results, r)
		}
		return rep, nil
	}
	for _, l := range c.links() {
		for _, m := range c.modes() {
			r, err := c.runLocal(ctx, m, l)
			if err != nil {
				return rep.cut(ctx, r, err)
			}
			rep.Results = append(rep.Results, r)
		}
	}
	return rep, nil
}

// cut ends a comparison early. A run stopped by ctx is kept: what it
// measured before the stop is still true. A run that failed to start is not.
func (rep *Report) cut(ctx context.Context, r Result, err error) (*Report, error) {
	if ctx.Err() != nil {
		rep.Results = append(rep.Results, r)
	}
	return rep, err
}

// runLocal runs one mode over one simulated link: a server and a client in
// this process on loopback sockets, the client's egress through the link's
// up direction and the server's through down. Everything is torn down
// before it returns, so kcp-go's process-wide counters see one run at a
// time.
func (c *Config) runLocal(ctx context.Context, m Mode, lk Link) (Result, error) {
	res := Result{Mode: m, Link: lk.Name, LinkSpec: lk.Spec.String(), SweepValue: lk.SweepValue}
	l, err := link.New(lk.Spec, nil)
	if err != nil {
		return res, fmt.Errorf("link %q: %w", lk.Name, err)
	}
	defer l.Close()
	loopback := &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)}
	spc, err := net.ListenUDP("udp4", loopback)
	if err != nil {
		return res, err
	}
	cpc, err := net.ListenUDP("udp4", loopback)
	if err != nil {
		spc.Close()
		return res, err
	}
	var replyBytes atomic.Uint64
	h := countReplies(message.Greet, &replyBytes)
	var srv message.Server
	var conn message.Conn
	switch m {
	case Raw:
		srv = raw.NewServer(l.Wrap(spc, link.Down), h, &raw.ServerConfig{Logger: discard})
		conn = raw.NewConn(l.Wrap(cpc, link.Up), spc.LocalAddr())
	default:
		rc := c.reliableConfig(m)
		if srv, err = reliable.NewServer(l.Wrap(spc, link.Down), h, rc); err != nil {
			cpc.Close()
			return res, err
		}
		if conn, err = reliable.NewConn(l.Wrap(cpc, link.Up), spc.LocalAddr(), rc); err != nil {
			srv.Close()
			return res, err
		}
	}

	_, o, err := c.measure(ctx, conn, &res, srv.Close)
	up, down := l.Stats(link.Up), l.Stats(link.Down)
	res.PayloadBytes = uint64(o.sent*c.Workload.Size) + replyBytes.Load()
	res.WireBytes = up.OfferedBytes + down.OfferedBytes
	res.WirePackets = up.Offered + down.Offered
	res.LinkDrops = drops(up) + drops(down)
	res.finish()
	return res, err
}

// runTarget measures a server already running. Nothing is simulated, so
// the wire is counted at the client's socket: what it sent and what reached
// it. Losses on the way back are invisible to it.
func (c *Config) runTarget(ctx context.Context, t Target) (Result, error) {
	res := Result{Mode: t.Mode, Link: t.Addr}
	pc, raddr, err := udpsock.Dial(t.Addr)
	if err != nil {
		return res, err
	}
	cc := &countingConn{PacketConn: pc}
	var conn message.Conn
	if t.Mode == Raw {
		conn = raw.NewConn(cc, raddr)
	} else if conn, err = reliable.NewConn(cc, raddr, c.reliableConfig(t.Mode)); err != nil {
		pc.Close()
		return res, err
	}
	rec, o, err := c.measure(ctx, conn, &res, nil)
	replies := uint64(rec.delivered + rec.duplicates)
	res.PayloadBytes = uint64(o.sent*c.Workload.Size) + replies*uint64(c.Workload.Size+greetingExtra)
	res.WireBytes = cc.bytes.Load()
	res.WirePackets = cc.packets.Load()
	res.finish()
	return res, err
}

// measure drives the workload over conn and fills res with what the
// client saw. teardown (if any) stops the run's server before the
// process-wide counters are read again, so they hold all it did.
func (c *Config) measure(ctx context.Context, conn message.Conn, res *Result, teardown func() error) (*Recorder, outcome, error) {
	before := take()
	rec := NewRecorder(c.Workload.Messages)
	o, err := c.Workload.drive(ctx, conn, rec, c.Progress)
	if teardown != nil {
		teardown()
	}
	res.fill(c.Workload, rec, o, take().sub(before))
	return rec, o, err
}

// fill copies what the client measured into r.
func (r *Result) fill(w Workload, rec *Recorder, o outcome, d counters) {
	r.rec = rec
	r.Sent = o.sent
	r.Delivered = rec.delivered
	r.InOrder = rec.inOrder
	r.Duplicates = rec.duplicates
	r.BadReplies = rec.bad
	r.Latency = rec.Latency()
	r.JitterMS = rec.Jitter()
	if rec.delivered > 0 {
		r.FirstMS = ms(rec.first)
	}
	r.Retransmissions = d.retrans
	r.FECRecovered = d.fecRecovered
	r.CPUS = d.cpu.Seconds()
	r.DurationS = o.duration.Seconds()
	r.Stalled = o.stalled
	if r.DurationS > 0 {
		// Goodput counts the application bytes of each greeting that made
		// the whole round trip: its name out and its reply back.
		perMessage := float64(2*w.Size + greetingExtra)
		r.GoodputBPS = float64(r.Delivered) * perMessage * 8 / r.DurationS
	}
}

// finish derives the byte figures from the counts.
func (r *Result) finish() {
	r.WireBytesWithHeaders = r.WireBytes + link.HeaderBytes*r.WirePackets
	if r.PayloadBytes > 0 {
		r.Overhead = float64(r.WireBytes) / float64(r.PayloadBytes)
	}
}

func drops(s link.Stats) uint64 { return s.Lost + s.QueueDrops + s.MTUDrops + s.OutageDrops }

// countReplies wraps h to add the length of every reply it makes to n: the
// application bytes the server offers.
func countReplies(h message.Handler, n *atomic.Uint64) message.Handler {
	return func(dst, req []byte) ([]byte, error) {
		out, err := h(dst, req)
		if err == nil {
			n.Add(uint64(len(out) - len(dst)))
		}
		return out, err
	}
}

var discard = slog.New(slog.NewTextHandler(io.Discard, nil))

// counters are the process-wide figures a run reads as deltas.
type counters struct {
	retrans, fecRecovered uint64
	cpu                   time.Duration
}

func take() counters {
	s := kcp.DefaultSnmp.Copy()
	return counters{retrans: s.RetransSegs, fecRecovered: s.FECRecovered, cpu: cpuTime()}
}

func (a counters) sub(b counters) counters {
	return counters{a.retrans - b.retrans, a.fecRecovered - b.fecRecovered, a.cpu - b.cpu}
}

// countingConn counts the datagrams and bytes a client socket sends and
// receives, for runs against a real server.
type countingConn struct {
	net.PacketConn
	packets, bytes atomic.Uint64
}

func (c *countingConn) WriteTo(p []byte, addr net.Addr) (int, error) {
	n, err := c.PacketConn.WriteTo(p, addr)
	if err == nil {
		c.packets.Add(1)
		c.bytes.Add(uint64(n))
	}
	return n, err
}

func (c *countingConn) ReadFrom(p []byte) (int, net.Addr, error) {
	n, addr, err := c.PacketConn.ReadFrom(p)
	if err == nil {
		c.packets.Add(1)
		c.bytes.Add(uint64(n))
	}
	return n, addr, err
}
