package compare

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"github.com/udplab/udplab/link"
	"github.com/udplab/udplab/message"
	"github.com/udplab/udplab/modes"
)

// DefaultModes are the modes a comparison runs when it names none: every
// mode in package modes, in its order.
func DefaultModes() []string { return modes.Names() }

// Target is a server already running, measured over the real network.
type Target struct {
	Mode string // a mode's name (or alias) from package modes
	Addr string // host:port
}

// Config is one comparison: every link (or target) crossed with every mode.
type Config struct {
	// Modes to run on every link, in this order, by name or alias (package
	// modes). Nil means DefaultModes.
	Modes []string
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
	// Settings configure the modes, both ends alike (kcp-fec takes its FEC
	// shards from Settings.KCP, default 10,3; kcp turns FEC off).
	Settings modes.Settings
	// Repeat runs every (link, mode) cell this many times, with the link's
	// seed, seed+1, ..., and summarizes each cell. Zero means once.
	Repeat int
	// Competing, with the bulk workload, runs a second bulk flow of this
	// mode on the same link beside each run's.
	Competing string
	// SessionsSweep, with the sessions workload, holds each of these
	// numbers of sessions in turn instead of Workload.Sessions; Sweep is
	// then "sessions".
	SessionsSweep []int
	// Progress, if not nil, is called as work is done, in the units Work
	// counts, from the goroutine that does it; one run at a time.
	Progress func(done int)

	// probed holds each connection probe Run has made (see probeConnect).
	probed map[probeKey]*Connect
}

// Work is how much a whole comparison has to do, in Progress's units:
// messages for greetings, kilobytes for bulk, sessions for sessions.
func (c *Config) Work() int {
	w := c.Workload.withDefaults()
	switch w.Kind {
	case KindBulk:
		return c.Runs() * int((w.Bytes+progressBytes-1)/progressBytes)
	case KindSessions:
		n := 0
		for _, k := range c.sessionCounts() {
			n += k * len(c.modeNames()) * c.repeat()
		}
		return n
	}
	return c.Runs() * w.Messages
}

// Runs returns how many runs c makes.
func (c *Config) Runs() int {
	if len(c.Targets) > 0 {
		return len(c.Targets) * c.repeat()
	}
	if c.Workload.withDefaults().Kind == KindSessions {
		return len(c.modeNames()) * len(c.sessionCounts()) * c.repeat()
	}
	return len(c.modeNames()) * len(c.links()) * c.repeat()
}

func (c *Config) repeat() int { return max(c.Repeat, 1) }

func (c *Config) modeNames() []string {
	if c.Modes == nil {
		return DefaultModes()
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
		return errors.New("modes: want at least one of " + strings.Join(modes.Names(), ", "))
	}
	for _, name := range c.UsedModes() {
		m, err := modes.Lookup(name)
		if err != nil {
			return err
		}
		t, err := m.New(&c.Settings)
		if err != nil {
			return err
		}
		if err := c.checkSize(m.Name, t.Traits()); err != nil {
			return err
		}
	}
	if err := c.checkKind(); err != nil {
		return err
	}
	if c.Repeat < 0 {
		return fmt.Errorf("repeat %d: want 1 or more", c.Repeat)
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

// checkSize refuses a message size mode cannot carry as one message.
func (c *Config) checkSize(mode string, t modes.Traits) error {
	w := c.Workload.withDefaults()
	switch w.Kind {
	case KindGreet:
		if most := t.MaxMessage - greetingExtra; w.Size > most {
			return fmt.Errorf("size %d: want at most %d bytes, so the greeting fits one %s message", w.Size, most, mode)
		}
	case KindBulk:
		if w.Size > t.MaxMessage {
			return fmt.Errorf("size %d: want at most %d bytes, the most one %s message carries", w.Size, t.MaxMessage, mode)
		}
	}
	return nil
}

// checkKind refuses what the workload cannot do: bulk and sessions need
// servers of their own; only bulk has a competing flow.
func (c *Config) checkKind() error {
	kind := c.Workload.withDefaults().Kind
	if kind != KindGreet && len(c.Targets) > 0 {
		return errNoBulkTargets
	}
	if c.Competing == "" {
		return nil
	}
	if kind != KindBulk {
		return fmt.Errorf("competing %s: a competing flow needs the bulk workload", c.Competing)
	}
	m, err := modes.Lookup(c.Competing)
	if err != nil {
		return fmt.Errorf("competing %q: want one of %s", c.Competing, strings.Join(modes.Names(), ", "))
	}
	_, tr := c.transport(m.Name)
	return c.checkSize(m.Name, tr.Traits())
}

// UsedModes lists the names (or aliases, as given) of the modes the runs
// use: the targets', or Modes, or DefaultModes.
func (c *Config) UsedModes() []string {
	if len(c.Targets) == 0 {
		return c.modeNames()
	}
	var names []string
	for _, t := range c.Targets {
		names = append(names, t.Mode)
	}
	return names
}

// canonical replaces every alias in c with its mode's name, so reports
// name a mode one way. c is valid.
func (c *Config) canonical() {
	name := func(s string) string {
		m, _ := modes.Lookup(s)
		return m.Name
	}
	if c.Modes != nil {
		c.Modes = slices.Clone(c.Modes)
		for i := range c.Modes {
			c.Modes[i] = name(c.Modes[i])
		}
	}
	if c.Competing != "" {
		c.Competing = name(c.Competing)
	}
	c.Targets = slices.Clone(c.Targets)
	for i := range c.Targets {
		c.Targets[i].Mode = name(c.Targets[i].Mode)
	}
}

// transport makes mode name's transport for one run: a fresh one, so its
// counters are that run's. c is valid.
func (c *Config) transport(name string) (*modes.Mode, modes.Transport) {
	m, _ := modes.Lookup(name)
	s := c.Settings
	if s.Logger == nil || len(c.Targets) == 0 {
		// In-process runs are measured, not watched: only a client facing
		// a real server has something to warn about (an unverified
		// certificate).
		s.Logger = discard
	}
	t, _ := m.New(&s)
	return m, t
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

// Result is what one run measured. Field meanings are in the README
// ("Reading the results"); JSON and CSV use the json names. A figure with
// no data (a latency with no reply, a counter the platform does not have)
// is nil: null in JSON, empty in CSV, "-" in tables.
type Result struct {
	Mode       string `json:"mode"`
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
	ConnectMS  *float64 `json:"connect_ms"` // how long opening the conversation took: a handshake's round trips, ~0 without one

	PayloadBytes         uint64   `json:"payload_bytes"`
	WireBytes            uint64   `json:"wire_bytes"`
	WirePackets          uint64   `json:"wire_packets"`
	WireBytesWithHeaders uint64   `json:"wire_bytes_with_headers"`
	Overhead             *float64 `json:"overhead"`
	HeaderBytes          int      `json:"header_bytes"`    // every header in a packet below the message: IP, UDP and the transport's, or IP and TCP (measured average)
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

	// Connect is the first reply's cost, measured by a probe on a
	// loss-free copy of the link (nil for targets).
	Connect *Connect `json:"connect,omitempty"`
	// QueueDrops and QueueHigh are the link's rate limiter's: packets
	// dropped at its full queue, and the most waiting (either direction);
	// nil for targets.
	QueueDrops *uint64 `json:"queue_drops"`
	QueueHigh  *int    `json:"queue_high"`
	// Bulk is the bulk workload's flow; Competing the other flow on the
	// same link, with --competing, and Fairness Jain's index of the two
	// flows' goodputs while both were sending.
	Bulk      *Bulk    `json:"bulk,omitempty"`
	Competing *Bulk    `json:"competing,omitempty"`
	Fairness  *float64 `json:"fairness,omitempty"`
	// CountersShared is true when both flows use kcp-go, whose counters
	// are process-wide: retransmissions then count both flows.
	CountersShared bool `json:"counters_shared,omitempty"`
	// Sessions is what the sessions workload measured of the server.
	Sessions *SessionStats `json:"sessions,omitempty"`

	rec *Recorder
}

// Connect is what a conversation costs before its first reply.
type Connect struct {
	// FirstReplyMS is from the start of the dial to the first reply.
	FirstReplyMS float64 `json:"first_reply_ms"`
	// RTTs is FirstReplyMS in round trips of the link's delays; nil on a
	// link without delay.
	RTTs *float64 `json:"rtts"`
	// Bytes and Packets are what both ends sent until then: UDP payloads,
	// or a user-space stack's IP packets.
	Bytes   uint64 `json:"bytes"`
	Packets uint64 `json:"packets"`
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
	InLink     *uint64 `json:"in_link"`    // raw: datagrams still inside the link, or past it but not yet read or answered, when the run ended (a delay tail past the settling wait)
	Unseen     *int    `json:"unseen"`     // raw targets: greetings lost out of the client's sight (the network, the server's socket, the server)
	Unrepaired *int    `json:"unrepaired"` // fec: greetings whose request or reply the link or a socket lost and parity did not rebuild
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
	c.canonical()
	c.probed = make(map[probeKey]*Connect)
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
	run := c.runLocal
	switch c.Workload.Kind {
	case KindBulk:
		run = c.runBulk
	case KindSessions:
		return c.sessionJobs()
	}
	for _, l := range c.links() {
		for _, m := range c.modeNames() {
			for rep := range c.repeat() {
				lk := l
				lk.Spec.Seed += uint64(rep)
				jobs = append(jobs, func(ctx context.Context) (Result, error) {
					r, err := run(ctx, m, lk)
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
func (c *Config) runLocal(ctx context.Context, name string, lk Link) (Result, error) {
	res := Result{Mode: name, Link: lk.Name, LinkSpec: lk.Spec.String(), SweepValue: lk.SweepValue, Seed: lk.Spec.Seed}
	// First, so that the run's transport counts none of its work.
	res.Connect = c.probeConnect(ctx, name, lk.Spec)
	_, tr := c.transport(name)
	e, err := newLocalRun(lk.Spec)
	if err != nil {
		return res, fmt.Errorf("link %q: %w", lk.Name, err)
	}
	defer e.close()
	var replyBytes atomic.Uint64
	h := countReplies(message.Greet, &replyBytes)
	srv, conn, connect, err := e.start(ctx, tr, h)
	if err != nil {
		return res, err
	}
	res.ConnectMS = &connect
	traits := tr.Traits()
	opts := driveOpts{
		progress:    c.Progress,
		minWait:     c.minWait(tr, lk.Spec),
		beforeClose: e.readDrops,
	}
	if traits.Delivery == modes.Unreliable {
		opts.settle, opts.settleMax = e.settled(srv, traits.FEC), settleMax(lk.Spec)
	}
	rec, o, err := c.measure(ctx, tr, conn, &res, opts, srv.Close)
	e.link.Close() // what it still holds now stays there: counted as in_link
	up, down := e.link.Stats(link.Up), e.link.Stats(link.Down)
	res.PayloadBytes = uint64(o.sent*c.Workload.Size) + replyBytes.Load()
	res.WireBytes = up.OfferedBytes + down.OfferedBytes
	res.WirePackets = up.Offered + down.Offered
	res.linkFigures(lk.Spec, up, down)
	res.SocketDrops = e.socketDrops()
	res.account(traits, rec, o, up.WriteErrors+down.WriteErrors)
	if traits.Delivery == modes.Unreliable {
		refused := srv.Stats().BadRequests
		res.Lost.Refused = &refused
		if traits.FEC {
			// A lost datagram may have been rebuilt, so the link's drops
			// are not greetings lost: what is left over is.
			unrepaired := res.Sent - res.Delivered - o.late - int(refused)
			res.Lost.Unrepaired = &unrepaired
		} else {
			inLink := uint64(up.Queued+down.Queued) + e.stranded(srv.Stats(), up, down)
			res.Lost.InLink = &inLink
		}
	}
	res.finish(traits, tr.Counters(), ipv4Header)
	return res, err
}

// linkFigures takes what the link counted in both directions: its drops
// and duplicates, its queue's, and its own timing error.
func (r *Result) linkFigures(s link.Spec, up, down link.Stats) {
	linkDrops, linkDups := up.Dropped()+down.Dropped(), up.Duplicated+down.Duplicated
	r.LinkDrops, r.LinkDuplicates = &linkDrops, &linkDups
	// A packet the hold limit drops is dropped for a full queue too.
	queueDrops := up.QueueDrops + up.LimitDrops + down.QueueDrops + down.LimitDrops
	queueHigh := max(up.QueueHigh, down.QueueHigh)
	r.QueueDrops, r.QueueHigh = &queueDrops, &queueHigh
	r.timing(s, up, down)
}

// minWait is the shortest automatic straggler wait for a transport on a
// link: for a retransmitting one, long enough for a few retransmissions
// from its first timeout with backoff, and always a couple of the link's
// round trips more.
func (c *Config) minWait(tr modes.Transport, s link.Spec) time.Duration {
	return max(MinWait, tr.RetryWait(retries)) + 2*roundTrip(s)
}

// retries is how many retransmissions of one segment the automatic wait
// allows for before it gives up: at 30% loss each way a round trip fails
// half the time, and five tries in a row fail 3% of the time.
const retries = 4

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
func (r *Result) account(t modes.Traits, rec *Recorder, o outcome, writeErrors uint64) {
	r.Lost.Late = o.late
	if t.Delivery != modes.Unreliable {
		unfinished := r.Sent - r.Delivered
		r.Lost.Unfinished = &unfinished
		return
	}
	if t.FEC {
		return // runLocal counts what parity did not rebuild
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
// the wire is counted at the client: at its socket for the datagram modes
// (what it sent and what reached it), or from the kernel's own count for a
// stream. Losses on the way back are invisible to it.
func (c *Config) runTarget(ctx context.Context, t Target) (Result, error) {
	res := Result{Mode: t.Mode, Link: t.Addr}
	_, tr := c.transport(t.Mode)
	traits := tr.Traits()
	start := time.Now()
	conn, wire, err := dialTarget(ctx, tr, t.Addr)
	if err != nil {
		return res, err
	}
	connect := ms(time.Since(start))
	res.ConnectMS = &connect
	opts := driveOpts{progress: c.Progress, minWait: c.minWait(tr, link.Spec{}), beforeClose: func() {
		wire.beforeClose()
		res.SocketDrops = wire.drops
	}}
	rec, o, err := c.measure(ctx, tr, conn, &res, opts, nil)
	wire.after()
	replies := uint64(rec.delivered + rec.duplicates)
	res.PayloadBytes = uint64(o.sent*c.Workload.Size) + replies*uint64(c.Workload.Size+greetingExtra)
	res.WireBytes, res.WirePackets = wire.bytes, wire.packets
	res.Lost.Late = o.late
	if traits.Delivery != modes.Unreliable {
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
	counters := tr.Counters()
	counters.HeaderBytes += wire.headers
	counters.Retransmissions += wire.retrans
	res.finish(traits, counters, ipHeader(t.Addr))
	return res, err
}

// measure drives the workload over conn and fills res with what the
// client saw. teardown (if any) stops the run's server before the
// transport's counters are read, so they hold all it did.
func (c *Config) measure(ctx context.Context, tr modes.Transport, conn message.Conn, res *Result, opts driveOpts, teardown func() error) (*Recorder, outcome, error) {
	cpu := cpuTime()
	rec := NewRecorder(c.Workload.Messages)
	o, err := c.Workload.drive(ctx, conn, rec, opts)
	if teardown != nil {
		teardown()
	}
	res.fill(c.Workload, rec, o)
	res.CPUS = (cpuTime() - cpu).Seconds()
	return rec, o, err
}

// fill copies what the client measured into r.
func (r *Result) fill(w Workload, rec *Recorder, o outcome) {
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

// finish takes the transport's counters and derives the byte figures;
// ip is the size of the IP header the run's packets carry (20 on IPv4, 40
// on IPv6). Bytes with headers are whole IP datagrams: a UDP mode's
// payloads plus the IP and UDP headers, or, for a mode whose datagrams are
// IP packets, those packets. Wire bytes leave out what lies below the
// transport's own header: IP and UDP, or IP alone, so that KCP's header and
// TCP's both count as the transport's cost. With no packets counted (a
// platform that does not say) there is no overhead to give.
func (r *Result) finish(t modes.Traits, d modes.Counters, ip int) {
	r.Retransmissions = d.Retransmissions
	r.FECRecovered = d.FECRecovered
	udp := uint64(ip + udpHeader)
	if t.IPPackets {
		r.HeaderBytes = t.HeaderBytes
		r.WireBytesWithHeaders = r.WireBytes
		r.WireBytes -= min(uint64(ip)*r.WirePackets, r.WireBytes)
		if r.WirePackets > 0 {
			r.HeaderBytes = int((d.HeaderBytes + r.WirePackets/2) / r.WirePackets)
		}
	} else {
		r.HeaderBytes = int(udp) + t.HeaderBytes
		r.WireBytesWithHeaders = r.WireBytes + udp*r.WirePackets
	}
	if r.PayloadBytes > 0 && r.WirePackets > 0 {
		o := float64(r.WireBytes) / float64(r.PayloadBytes)
		r.Overhead = &o
	}
}

// The headers below a transport's own: IPv4's and IPv6's without options,
// and UDP's. The simulated link runs on IPv4 loopback.
const (
	ipv4Header = 20
	ipv6Header = 40
	udpHeader  = 8
)

// ipHeader is the IP header of packets to addr (host:port): IPv6's for an
// IPv6 literal, IPv4's otherwise.
func ipHeader(addr string) int {
	host, _, err := net.SplitHostPort(addr)
	if ip, perr := netip.ParseAddr(host); err == nil && perr == nil && ip.Is6() && !ip.Is4In6() {
		return ipv6Header
	}
	return ipv4Header
}

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
