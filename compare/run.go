package compare

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	kcp "github.com/xtaci/kcp-go/v5"

	"github.com/udplab/udplab/internal/sockstat"
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
	// Repeat runs every (link, mode) cell this many times, with the link's
	// seed, seed+1, ..., and summarizes each cell. Zero means once.
	Repeat int
	// Progress, if not nil, is called with each batch of messages sent,
	// from the goroutine that sends them; one run at a time.
	Progress func(sent int)
}

// Runs returns how many runs c makes.
func (c *Config) Runs() int {
	if len(c.Targets) > 0 {
		return len(c.Targets) * c.repeat()
	}
	return len(c.modes()) * len(c.links()) * c.repeat()
}

func (c *Config) repeat() int { return max(c.Repeat, 1) }

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
	if c.Repeat < 0 {
		return fmt.Errorf("repeat %d: want 1 or more", c.Repeat)
	}
	rc := c.Reliable
	if err := rc.Validate(); err != nil {
		return err
	}
	if c.runsMode(ReliableFEC) && rc.WithDefaults().DataShards == 0 {
		return errors.New("fec 0,0 leaves reliable-fec without FEC: give shards such as 10,3, or leave reliable-fec out (reliable is KCP without FEC)")
	}
	for _, l := range c.Links {
		if err := l.Spec.Validate(); err != nil {
			return fmt.Errorf("link %q: %w", l.Name, err)
		}
	}
	if len(c.Targets) == 0 {
		return c.checkWait()
	}
	return nil
}

// runsMode reports whether any run uses mode m.
func (c *Config) runsMode(m Mode) bool {
	if len(c.Targets) > 0 {
		return slices.ContainsFunc(c.Targets, func(t Target) bool { return t.Mode == m })
	}
	return slices.Contains(c.modes(), m)
}

// checkWait refuses a straggler wait too short for the slowest link: a
// reply needs at least one round trip, and a retransmitted one two.
func (c *Config) checkWait() error {
	if c.Workload.Wait <= 0 {
		return nil
	}
	for _, l := range c.links() {
		if rtt := roundTrip(l.Spec); c.Workload.Wait < 2*rtt {
			return fmt.Errorf("wait %v: want at least %v, twice the %v round trip of link %s (or 0 for automatic)",
				c.Workload.Wait, 2*rtt, rtt, l.Name)
		}
	}
	return nil
}

// roundTrip is a link's round trip at its nominal delays.
func roundTrip(s link.Spec) time.Duration { return s.Up.Delay + s.Down.Delay }

// reliableConfig returns the reliable transport's configuration for mode.
func (c *Config) reliableConfig(m Mode) *reliable.Config {
	rc := c.Reliable
	rc.NoFEC = m == Reliable
	rc.Logger = discard
	return &rc
}

// Result is what one run measured. Field meanings are in the README
// ("Reading the results"); JSON and CSV use the json names. A figure with
// no data (a latency with no reply, a counter the platform does not have)
// is nil: null in JSON, empty in CSV, "-" in tables.
type Result struct {
	Mode       Mode   `json:"mode"`
	Link       string `json:"link"`                  // the link's name, or the target's address
	LinkSpec   string `json:"link_spec,omitempty"`   // the whole link in the grammar, seed included
	SweepValue string `json:"sweep_value,omitempty"` // the swept parameter's value
	Seed       uint64 `json:"seed"`                  // the link's seed for this run
	Repeat     int    `json:"repeat"`                // which of the cell's runs this is, from 1

	Sent       int      `json:"sent"`
	Delivered  int      `json:"delivered"`
	InOrder    int      `json:"in_order"`
	Duplicates int      `json:"duplicates"`
	BadReplies int      `json:"bad_replies"`
	Lost       Lost     `json:"lost"`
	Latency    *Latency `json:"latency_ms"`
	JitterMS   *float64 `json:"jitter_ms"`
	FirstMS    *float64 `json:"first_reply_ms"`

	PayloadBytes         uint64   `json:"payload_bytes"`
	WireBytes            uint64   `json:"wire_bytes"`
	WirePackets          uint64   `json:"wire_packets"`
	WireBytesWithHeaders uint64   `json:"wire_bytes_with_headers"`
	Overhead             *float64 `json:"overhead"`
	HeaderBytes          int      `json:"header_bytes"`    // the transport's own header in each datagram, below UDP
	LinkDrops            *uint64  `json:"link_drops"`      // nil for targets: nothing simulated
	LinkDuplicates       *uint64  `json:"link_duplicates"` // nil for targets
	SocketDrops          *uint64  `json:"socket_drops"`

	Retransmissions uint64 `json:"retransmissions"`
	FECRecovered    uint64 `json:"fec_recovered"`

	TimingError *TimingError `json:"timing_error_ms"`
	Noisy       bool         `json:"noisy"`

	GoodputBPS  float64 `json:"goodput_bps"`
	DurationS   float64 `json:"duration_s"`
	CPUS        float64 `json:"cpu_s"`
	Stalled     bool    `json:"stalled"`
	Interrupted bool    `json:"interrupted"`

	rec *Recorder
}

// Lost accounts for the greetings that were sent and not delivered.
//
// For raw, every datagram has a cause, so that exactly
//
//	sent + link_duplicates = delivered + duplicates + bad_replies + link + socket + late + refused + in_link
//
// and on a link that neither duplicates nor corrupts, sent = delivered +
// link + socket + late. For the reliable modes the transport repairs the
// link's and the sockets' losses (link_drops and socket_drops count them);
// what it had not delivered when the run ended is Unfinished.
type Lost struct {
	Link       *uint64 `json:"link"`       // raw: datagrams (requests or replies) the link dropped or could not write
	Socket     *uint64 `json:"socket"`     // raw: datagrams the kernel dropped at the run's full receive buffers
	Late       int     `json:"late"`       // replies that arrived after the wait for stragglers
	Refused    *uint64 `json:"refused"`    // raw: requests the server refused (the link corrupted the name), so never answered
	InLink     *uint64 `json:"in_link"`    // raw: datagrams still inside the link when the run ended (a delay tail past the settling wait)
	Unseen     *int    `json:"unseen"`     // raw targets: greetings lost out of the client's sight (the network, the server's socket, the server)
	Unfinished *int    `json:"unfinished"` // reliable modes: greetings still undelivered at the end
}

// TimingError is how late the link released packets past their due time,
// in milliseconds, in whichever direction was later: the simulation's own
// error, which a busy host makes visible here instead of in the latencies.
type TimingError struct {
	P50 float64 `json:"p50"`
	P99 float64 `json:"p99"`
	Max float64 `json:"max"`
}

// CDF returns the run's round-trip distribution (see Recorder.CDF).
func (r *Result) CDF() (ms, frac []float64) {
	if r.rec == nil {
		return nil, nil
	}
	return r.rec.CDF(r.Sent)
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

// Run runs every link (or target) with every mode, Config.Repeat times
// each, one run at a time, and returns what they measured. When ctx is
// cancelled it stops and returns the runs finished so far, and the stopped
// one as far as it got (marked Interrupted), with ctx's cause. A run that
// fails to start ends the comparison with its error and the runs before it.
func Run(ctx context.Context, c Config) (*Report, error) {
	if err := c.Validate(); err != nil {
		return nil, err
	}
	c.Workload = c.Workload.withDefaults()
	rep := &Report{Config: c.describe()}
	for _, job := range c.jobs() {
		r, err := job(ctx)
		if err != nil {
			return rep.cut(ctx, r, err)
		}
		rep.Results = append(rep.Results, r)
	}
	rep.summarize()
	return rep, nil
}

// jobs lists the runs in the order they are made: by link (or target),
// then mode, then repeat.
func (c *Config) jobs() []func(context.Context) (Result, error) {
	var jobs []func(context.Context) (Result, error)
	if len(c.Targets) > 0 {
		for _, t := range c.Targets {
			for rep := range c.repeat() {
				jobs = append(jobs, func(ctx context.Context) (Result, error) {
					r, err := c.runTarget(ctx, t)
					r.Repeat = rep + 1
					return r, err
				})
			}
		}
		return jobs
	}
	for _, l := range c.links() {
		for _, m := range c.modes() {
			for rep := range c.repeat() {
				lk := l
				lk.Spec.Seed += uint64(rep)
				jobs = append(jobs, func(ctx context.Context) (Result, error) {
					r, err := c.runLocal(ctx, m, lk)
					r.Repeat = rep + 1
					return r, err
				})
			}
		}
	}
	return jobs
}

// cut ends a comparison early. A run stopped by ctx is kept, marked
// interrupted: what it measured before the stop is still true. A run that
// failed to start is not.
func (rep *Report) cut(ctx context.Context, r Result, err error) (*Report, error) {
	if ctx.Err() != nil {
		r.Interrupted = true
		rep.Results = append(rep.Results, r)
	}
	rep.summarize()
	return rep, err
}

// runLocal runs one mode over one simulated link: a server and a client in
// this process on loopback sockets, the client's egress through the link's
// up direction and the server's through down. Everything is torn down
// before it returns, so kcp-go's process-wide counters see one run at a
// time.
func (c *Config) runLocal(ctx context.Context, m Mode, lk Link) (Result, error) {
	res := Result{Mode: m, Link: lk.Name, LinkSpec: lk.Spec.String(), SweepValue: lk.SweepValue, Seed: lk.Spec.Seed}
	e, err := newLocalRun(lk.Spec)
	if err != nil {
		return res, fmt.Errorf("link %q: %w", lk.Name, err)
	}
	defer e.close()
	var replyBytes atomic.Uint64
	h := countReplies(message.Greet, &replyBytes)
	srv, conn, err := e.start(m, h, c.reliableConfig(m))
	if err != nil {
		return res, err
	}
	opts := driveOpts{
		progress:    c.Progress,
		minWait:     c.minWait(m, lk.Spec),
		beforeClose: e.readDrops,
	}
	if m == Raw {
		opts.settle, opts.settleMax = e.settled(srv.(*raw.Server)), settleMax(lk.Spec)
	}
	rec, o, err := c.measure(ctx, conn, &res, opts, srv.Close)
	e.link.Close() // what it still holds now stays there: counted as in_link
	up, down := e.link.Stats(link.Up), e.link.Stats(link.Down)
	res.PayloadBytes = uint64(o.sent*c.Workload.Size) + replyBytes.Load()
	res.WireBytes = up.OfferedBytes + down.OfferedBytes
	res.WirePackets = up.Offered + down.Offered
	linkDrops, linkDups := drops(up)+drops(down), up.Duplicated+down.Duplicated
	res.LinkDrops, res.LinkDuplicates = &linkDrops, &linkDups
	res.SocketDrops = e.socketDrops()
	res.account(m, rec, o, up.WriteErrors+down.WriteErrors)
	if rs, ok := srv.(*raw.Server); ok {
		refused := rs.Stats().BadRequests
		res.Lost.Refused = &refused
		inLink := uint64(up.Queued + down.Queued)
		res.Lost.InLink = &inLink
	}
	res.timing(lk.Spec, up, down)
	res.finish(c.headerBytes(m))
	return res, err
}

// minWait is the shortest automatic straggler wait for mode m on a link:
// for a retransmitting mode, long enough for four of KCP's retransmissions
// from its initial timeout with backoff, and always a couple of the link's
// round trips more.
func (c *Config) minWait(m Mode, s link.Spec) time.Duration {
	w := MinWait
	if m != Raw {
		w = max(w, c.reliableConfig(m).RetryWait(kcpRetries))
	}
	return w + 2*roundTrip(s)
}

// kcpRetries is how many retransmissions of one segment the automatic wait
// allows for before it gives up: at 30% loss each way a round trip fails
// half the time, and five tries in a row fail 3% of the time.
const kcpRetries = 4

// headerBytes is mode m's own header in each datagram, below UDP.
func (c *Config) headerBytes(m Mode) int {
	if m == Raw {
		return 0
	}
	n, _ := c.reliableConfig(m).HeaderBytes() // validated already
	return n
}

// testSettleMax, when set by a test, replaces settleMax's bound, so that a
// run can end with datagrams still in the link.
var testSettleMax time.Duration

// settleMax bounds the wait for a raw run's last datagrams: the longest a
// packet can spend in the link, and a second for the host.
func settleMax(s link.Spec) time.Duration {
	if testSettleMax > 0 {
		return testSettleMax
	}
	worst := func(p link.Params) time.Duration {
		return p.Delay + 4*p.Jitter
	}
	return time.Second + worst(s.Up) + worst(s.Down)
}

// account fills in what became of the greetings not delivered.
func (r *Result) account(m Mode, rec *Recorder, o outcome, writeErrors uint64) {
	r.Lost.Late = o.late
	if m != Raw {
		unfinished := r.Sent - r.Delivered
		r.Lost.Unfinished = &unfinished
		return
	}
	onLink := *r.LinkDrops + writeErrors
	r.Lost.Link = &onLink
	r.Lost.Socket = r.SocketDrops
}

// timing records the link's own timing error and marks the run noisy when
// the link released packets later than its delays can absorb.
func (r *Result) timing(s link.Spec, up, down link.Stats) {
	var worst *link.Lateness
	for _, d := range []struct {
		p  link.Params
		st link.Stats
	}{{s.Up, up}, {s.Down, down}} {
		l := d.st.Lateness
		if l.Count == 0 {
			continue
		}
		if l.P99 > noisyLateness(d.p.Delay) {
			r.Noisy = true
		}
		if worst == nil || l.P99 > worst.P99 {
			worst = &l
		}
	}
	if worst != nil {
		r.TimingError = &TimingError{P50: ms(worst.P50), P99: ms(worst.P99), Max: ms(worst.Max)}
	}
}

// noisyLateness is the most a direction's p99 lateness may be before its
// run is marked noisy: a millisecond, or 5% of the one-way delay.
func noisyLateness(delay time.Duration) time.Duration {
	return max(time.Millisecond, delay/20)
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
	sockstat.SetBuffers(pc)
	sock := sockstat.Of(pc)
	cc := &countingConn{PacketConn: pc}
	var conn message.Conn
	if t.Mode == Raw {
		conn = raw.NewConn(cc, raddr)
	} else if conn, err = reliable.NewConn(cc, raddr, c.reliableConfig(t.Mode)); err != nil {
		pc.Close()
		return res, err
	}
	opts := driveOpts{progress: c.Progress, minWait: c.minWait(t.Mode, link.Spec{}), beforeClose: func() {
		if n, ok := sockstat.Drops(sock); ok {
			res.SocketDrops = &n
		}
	}}
	rec, o, err := c.measure(ctx, conn, &res, opts, nil)
	replies := uint64(rec.delivered + rec.duplicates)
	res.PayloadBytes = uint64(o.sent*c.Workload.Size) + replies*uint64(c.Workload.Size+greetingExtra)
	res.WireBytes = cc.bytes.Load()
	res.WirePackets = cc.packets.Load()
	res.Lost.Late = o.late
	if t.Mode != Raw {
		unfinished := res.Sent - res.Delivered
		res.Lost.Unfinished = &unfinished
	} else {
		res.Lost.Socket = res.SocketDrops // the link and the server are out of sight
		unseen := res.Sent - res.Delivered - o.late
		if res.SocketDrops != nil {
			unseen = max(0, unseen-int(*res.SocketDrops))
		}
		res.Lost.Unseen = &unseen
	}
	res.finish(c.headerBytes(t.Mode))
	return res, err
}

// measure drives the workload over conn and fills res with what the
// client saw. teardown (if any) stops the run's server before the
// process-wide counters are read again, so they hold all it did.
func (c *Config) measure(ctx context.Context, conn message.Conn, res *Result, opts driveOpts, teardown func() error) (*Recorder, outcome, error) {
	before := take()
	rec := NewRecorder(c.Workload.Messages)
	o, err := c.Workload.drive(ctx, conn, rec, opts)
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
		first := ms(rec.first)
		r.FirstMS = &first
	}
	r.Retransmissions = d.retrans
	r.FECRecovered = d.fecRecovered
	r.CPUS = d.cpu.Seconds()
	r.DurationS = o.duration.Seconds()
	r.Stalled = o.stalled
	r.Interrupted = o.interrupted
	if r.DurationS > 0 {
		// Goodput counts the application bytes of each greeting that made
		// the whole round trip: its name out and its reply back.
		perMessage := float64(2*w.Size + greetingExtra)
		r.GoodputBPS = float64(r.Delivered) * perMessage * 8 / r.DurationS
	}
}

// finish derives the byte figures from the counts.
func (r *Result) finish(header int) {
	r.HeaderBytes = header
	r.WireBytesWithHeaders = r.WireBytes + link.HeaderBytes*r.WirePackets
	if r.PayloadBytes > 0 {
		o := float64(r.WireBytes) / float64(r.PayloadBytes)
		r.Overhead = &o
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
	reads          atomic.Uint64 // datagrams read
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
		c.reads.Add(1)
	}
	return n, addr, err
}
