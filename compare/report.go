package compare

import (
	"bufio"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"io"
	"runtime"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/udplab/udplab/link"
	"github.com/udplab/udplab/modes"
)

// Report is a whole comparison: how it was run and what each run measured.
// It is what --format json prints.
type Report struct {
	Config  ReportConfig `json:"config"`
	Results []Result     `json:"results"`
	// Summaries has one entry per (link, mode) cell when each ran more
	// than once (Config.Repeat).
	Summaries []Summary `json:"summaries,omitempty"`
}

// ReportConfig records everything needed to run a comparison again.
type ReportConfig struct {
	Seed     uint64       `json:"seed"`
	Modes    []string     `json:"modes"`
	Links    []LinkInfo   `json:"links,omitempty"`
	Sweep    string       `json:"sweep,omitempty"`
	Targets  []TargetInfo `json:"targets,omitempty"`
	Repeat   int          `json:"repeat"`
	Workload WorkloadInfo `json:"workload"`
	// Transports are the modes that ran, as configured: what the report
	// says about each, and its settings.
	Transports []TransportInfo `json:"transports"`
	Versions   Versions        `json:"versions"`
}

// LinkInfo is one simulated link as run.
type LinkInfo struct {
	Name       string `json:"name"`
	Spec       string `json:"spec"`
	SweepValue string `json:"sweep_value,omitempty"`
}

// TargetInfo is one running server measured.
type TargetInfo struct {
	Mode string `json:"mode"`
	Addr string `json:"addr"`
}

// WorkloadInfo is the workload with its defaults filled in.
type WorkloadInfo struct {
	Kind       string  `json:"kind"`
	Messages   int     `json:"messages,omitempty"`
	IntervalMS float64 `json:"interval_ms"`
	Size       int     `json:"size"`    // bulk: 0 is each mode's own
	WaitMS     float64 `json:"wait_ms"` // 0: automatic
	// Bulk: bytes to send, and the competing flow's mode.
	Bytes     int64  `json:"bytes,omitempty"`
	Competing string `json:"competing,omitempty"`
	// Sessions: conversations held (or, swept, each count in turn), and
	// for how long.
	Sessions      int     `json:"sessions,omitempty"`
	SessionsSweep []int   `json:"sessions_sweep,omitempty"`
	IdleHoldS     float64 `json:"idle_hold_s,omitempty"`
}

// TransportInfo is one mode as it ran: its traits and settings.
type TransportInfo struct {
	Mode          string         `json:"mode"`
	Delivery      string         `json:"delivery"`
	HandshakeRTTs int            `json:"handshake_rtts"` // round trips before the first request can leave
	HeaderBytes   int            `json:"header_bytes"`   // the mode's own header in a datagram below UDP; for ip_packets modes, IP and TCP without options
	IPPackets     bool           `json:"ip_packets"`     // each datagram over the link is a whole IP packet (a user-space TCP/IP stack)
	Congestion    string         `json:"congestion"`
	MaxMessage    int            `json:"max_message"`
	Stack         string         `json:"stack"`
	Settings      map[string]any `json:"settings,omitempty"`
	fec           bool
	summary       []string
}

func (c *Config) describe() ReportConfig {
	d := ReportConfig{
		Seed:     c.Seed,
		Modes:    c.modeNames(),
		Sweep:    c.Sweep,
		Repeat:   c.repeat(),
		Workload: c.workloadInfo(),
		Versions: BuildVersions(),
	}
	if len(c.Targets) > 0 {
		d.Modes = nil
		for _, t := range c.Targets {
			d.Modes = append(d.Modes, t.Mode)
			d.Targets = append(d.Targets, TargetInfo(t))
		}
	}
	for _, name := range d.Modes {
		if slices.ContainsFunc(d.Transports, func(ti TransportInfo) bool { return ti.Mode == name }) {
			continue
		}
		_, tr := c.transport(name)
		t := tr.Traits()
		d.Transports = append(d.Transports, TransportInfo{
			Mode: name, Delivery: string(t.Delivery), HandshakeRTTs: t.HandshakeRTTs,
			HeaderBytes: t.HeaderBytes, IPPackets: t.IPPackets, Congestion: t.Congestion,
			MaxMessage: t.MaxMessage, Stack: t.Stack, Settings: t.Settings, fec: t.FEC, summary: t.Summary,
		})
	}
	if len(c.Targets) > 0 {
		return d
	}
	for _, l := range c.links() {
		d.Links = append(d.Links, LinkInfo{Name: l.Name, Spec: l.Spec.String(), SweepValue: l.SweepValue})
	}
	return d
}

func (c *Config) workloadInfo() WorkloadInfo {
	w := c.Workload
	info := WorkloadInfo{Kind: w.Kind, Size: w.Size}
	switch w.Kind {
	case KindBulk:
		info.Bytes, info.Competing = w.Bytes, c.Competing
	case KindSessions:
		info.Sessions, info.IdleHoldS = w.Sessions, w.IdleHold.Seconds()
		if len(c.SessionsSweep) > 0 {
			info.Sessions, info.SessionsSweep = 0, c.SessionsSweep
		}
	default:
		info.Messages, info.IntervalMS, info.WaitMS = w.Messages, ms(w.Interval), ms(w.Wait)
	}
	return info
}

// transportInfo returns what the report knows of mode name.
func (c *ReportConfig) transportInfo(name string) TransportInfo {
	for _, t := range c.Transports {
		if t.Mode == name {
			return t
		}
	}
	return TransportInfo{Mode: name}
}

// Versions are the versions of what was measured.
type Versions struct {
	// Udplab is the commit udplab was built from ("-dirty" when the tree
	// had changes), or, without VCS stamping (go run, go test, or
	// -buildvcs=false), the module version with "commit unknown".
	Udplab string `json:"udplab"`
	// The libraries that implement transports: kcp and kcp-fec, quic, fec
	// (and kcp-go's FEC).
	KCPGo       string `json:"kcp_go"`
	QUICGo      string `json:"quic_go"`
	ReedSolomon string `json:"reedsolomon"`
	Go          string `json:"go"`
}

// String is the one line udplab --version prints.
func (v Versions) String() string {
	return fmt.Sprintf("udplab %s (kcp-go %s, quic-go %s, reedsolomon %s, %s)", v.Udplab, v.KCPGo, v.QUICGo, v.ReedSolomon, v.Go)
}

// BuildVersions reads udplab's commit and its transport libraries'
// versions from the binary's build information.
func BuildVersions() Versions {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		bi = &debug.BuildInfo{}
	}
	return versionsOf(bi)
}

func versionsOf(bi *debug.BuildInfo) Versions {
	v := Versions{Udplab: "unknown", KCPGo: "unknown", QUICGo: "unknown", ReedSolomon: "unknown", Go: runtime.Version()}
	var rev string
	dirty := false
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
		case "vcs.modified":
			dirty = s.Value == "true"
		}
	}
	switch {
	case rev != "":
		v.Udplab = "commit " + rev
		if dirty {
			v.Udplab += "-dirty"
		}
	case bi.Main.Version != "":
		v.Udplab = bi.Main.Version + ", commit unknown (build with go build -buildvcs=true to record it)"
	}
	libs := map[string]*string{
		"github.com/xtaci/kcp-go/v5":       &v.KCPGo,
		"github.com/quic-go/quic-go":       &v.QUICGo,
		"github.com/klauspost/reedsolomon": &v.ReedSolomon,
	}
	for _, dep := range bi.Deps {
		if p, ok := libs[dep.Path]; ok {
			*p = dep.Version
		}
	}
	return v
}

// WriteJSON writes the report as one indented JSON document.
func (r *Report) WriteJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(r)
}

// csvHeader is the CSV columns: Result's JSON fields, nested ones
// flattened with an underscore.
var csvHeader = slices.Concat([]string{
	"mode", "link", "link_spec", "sweep_value", "seed", "repeat",
	"sent", "delivered", "in_order", "duplicates", "bad_replies",
	"lost_link", "lost_socket", "lost_late", "lost_refused", "lost_in_link", "lost_unseen", "lost_unfinished", "lost_unrepaired",
	"latency_ms_mean", "latency_ms_p50", "latency_ms_p90", "latency_ms_p99", "latency_ms_max",
	"jitter_ms", "first_reply_ms", "connect_ms",
	"payload_bytes", "wire_bytes", "wire_packets", "wire_bytes_with_headers", "overhead", "header_bytes",
	"link_drops", "link_duplicates", "socket_drops",
	"retransmissions", "fec_recovered",
	"timing_error_ms_p50", "timing_error_ms_p99", "timing_error_ms_max", "noisy",
	"goodput_bps", "duration_s", "cpu_s", "stalled", "interrupted",
	"connect_first_reply_ms", "connect_rtts", "connect_bytes", "connect_packets", "queue_drops", "queue_high",
	"bulk_bytes", "bulk_message_size", "bulk_sent_bytes", "bulk_delivered_bytes", "bulk_complete", "bulk_completion_s",
	"bulk_goodput_bps", "bulk_link_share", "bulk_shared_goodput_bps",
	"competing_mode", "competing_delivered_bytes", "competing_goodput_bps", "competing_shared_goodput_bps",
	"fairness", "counters_shared",
}, sessionsCSVHeader)

// WriteCSV writes one row per run under a header of csvHeader. A figure
// with no data is an empty cell.
func (r *Report) WriteCSV(w io.Writer) error {
	cw := csv.NewWriter(w)
	_ = cw.Write(csvHeader)
	for _, x := range r.Results {
		_ = cw.Write(x.csvRow())
	}
	cw.Flush()
	return cw.Error()
}

func (x *Result) csvRow() []string {
	f := func(v float64) string { return strconv.FormatFloat(v, 'f', -1, 64) }
	u := func(v uint64) string { return strconv.FormatUint(v, 10) }
	i := strconv.Itoa
	row := []string{
		x.Mode, x.Link, x.LinkSpec, x.SweepValue, u(x.Seed), i(x.Repeat),
		i(x.Sent), i(x.Delivered), i(x.InOrder), i(x.Duplicates), i(x.BadReplies),
		optU(x.Lost.Link), optU(x.Lost.Socket), i(x.Lost.Late), optU(x.Lost.Refused), optU(x.Lost.InLink), optI(x.Lost.Unseen), optI(x.Lost.Unfinished), optI(x.Lost.Unrepaired),
	}
	if l := x.Latency; l != nil {
		row = append(row, f(l.Mean), f(l.P50), f(l.P90), f(l.P99), f(l.Max))
	} else {
		row = append(row, "", "", "", "", "")
	}
	row = append(row, optF(x.JitterMS), optF(x.FirstMS), optF(x.ConnectMS),
		u(x.PayloadBytes), u(x.WireBytes), u(x.WirePackets), u(x.WireBytesWithHeaders), optF(x.Overhead), i(x.HeaderBytes),
		optU(x.LinkDrops), optU(x.LinkDuplicates), optU(x.SocketDrops),
		u(x.Retransmissions), u(x.FECRecovered))
	if t := x.TimingError; t != nil {
		row = append(row, f(t.P50), f(t.P99), f(t.Max))
	} else {
		row = append(row, "", "", "")
	}
	row = append(row, strconv.FormatBool(x.Noisy),
		f(x.GoodputBPS), f(x.DurationS), f(x.CPUS), strconv.FormatBool(x.Stalled), strconv.FormatBool(x.Interrupted))
	if c := x.Connect; c != nil {
		row = append(row, f(c.FirstReplyMS), optF(c.RTTs), u(c.Bytes), u(c.Packets))
	} else {
		row = append(row, "", "", "", "")
	}
	row = append(row, optU(x.QueueDrops), optI(x.QueueHigh))
	if b := x.Bulk; b != nil {
		row = append(row, strconv.FormatInt(b.Bytes, 10), i(b.MessageSize), strconv.FormatInt(b.SentBytes, 10),
			strconv.FormatInt(b.DeliveredBytes, 10), strconv.FormatBool(b.Complete), f(b.CompletionS),
			f(b.GoodputBPS), optF(b.LinkShare), optF(b.SharedGoodputBPS))
	} else {
		row = append(row, "", "", "", "", "", "", "", "", "")
	}
	if c := x.Competing; c != nil {
		row = append(row, c.Mode, strconv.FormatInt(c.DeliveredBytes, 10), f(c.GoodputBPS), optF(c.SharedGoodputBPS))
	} else {
		row = append(row, "", "", "", "")
	}
	row = append(row, optF(x.Fairness), strconv.FormatBool(x.CountersShared))
	return append(row, sessionsCSV(x.Sessions)...)
}

func optF(v *float64) string {
	if v == nil {
		return ""
	}
	return strconv.FormatFloat(*v, 'f', -1, 64)
}

func optU(v *uint64) string {
	if v == nil {
		return ""
	}
	return strconv.FormatUint(*v, 10)
}

func optI(v *int) string {
	if v == nil {
		return ""
	}
	return strconv.Itoa(*v)
}

// WriteTable writes the results as aligned text tables with units, and
// under them the trade-off table.
func (r *Report) WriteTable(w io.Writer) error { return r.writeTables(w, false) }

// WriteMarkdown writes the same tables as WriteTable in Markdown.
func (r *Report) WriteMarkdown(w io.Writer) error { return r.writeTables(w, true) }

func (r *Report) writeTables(w io.Writer, markdown bool) error {
	b := bufio.NewWriter(w)
	fmt.Fprintln(b, r.summary())
	for _, t := range r.tables() {
		if markdown {
			fmt.Fprintf(b, "\n%s\n\n", t.title)
			t.markdown(b)
		} else {
			fmt.Fprintf(b, "\n%s\n", t.title)
			t.text(b)
		}
	}
	return b.Flush()
}

// tables are the result tables (or, with repeats, the summary) and, when
// there is one, the trade-off.
func (r *Report) tables() []*table {
	ts := r.resultsTables()
	switch r.Config.Workload.Kind {
	case KindBulk:
		// Every run has its row: a summary of greetings' figures would
		// leave out what a transfer measured.
		ts = r.bulkTables()
		if t := r.tradeoff(); t != nil {
			ts = append(ts, t)
		}
		return ts
	case KindSessions:
		ts = []*table{r.sessionsTable()}
		if t := r.sessionsTradeoff(); t != nil {
			ts = append(ts, t)
		}
		return ts
	}
	if len(r.Summaries) > 0 {
		ts = []*table{r.summaryTable()}
	}
	if t := r.tradeoff(); t != nil {
		ts = append(ts, t)
	}
	return ts
}

// summary is the line above the tables: the workload and the seed.
func (r *Report) summary() string {
	c := r.Config
	pace := "as fast as the transport allows"
	if c.Workload.IntervalMS > 0 {
		pace = "one every " + time.Duration(c.Workload.IntervalMS*float64(time.Millisecond)).String()
	}
	where := fmt.Sprintf("simulated links, seed %d", c.Seed)
	if c.Repeat > 1 {
		where = fmt.Sprintf("simulated links, %d runs a cell with seeds %d to %d", c.Repeat, c.Seed, c.Seed+uint64(c.Repeat)-1)
	}
	if len(c.Targets) > 0 {
		where = "running servers, real network (wire counted at the client)"
	}
	line := fmt.Sprintf("udplab compare: %s of %d B per run, %s; %s",
		plural(c.Workload.Messages, "greeting"), c.Workload.Size, pace, where)
	if c.Workload.Kind == KindSessions {
		return c.sessionsSummary()
	}
	if c.Workload.Kind == KindBulk {
		line = fmt.Sprintf("udplab compare: bulk, %s one way per run in %s, as fast as each mode allows; %s",
			byteCount(c.Workload.Bytes), bulkSizeText(c.Workload.Size), where)
		if c.Workload.Competing != "" {
			line += "; beside a competing " + c.Workload.Competing + " flow on the same link"
		}
	}
	var seen []string
	for _, t := range c.Transports {
		for _, part := range t.summary {
			if !slices.Contains(seen, part) {
				seen = append(seen, part)
				line += "; " + part
			}
		}
	}
	return line
}

// plural writes n things, with an s unless n is 1.
func plural(n int, thing string) string {
	if n == 1 {
		return "1 " + thing
	}
	return strconv.Itoa(n) + " " + thing + "s"
}

// resultsTables returns the results as two tables, what arrived and what
// it cost, each narrow enough for a terminal. A noisy run's link is marked
// with a *, an interrupted run's sent count says so.
func (r *Report) resultsTables() []*table {
	got := &table{title: "What arrived, and when (round trips in ms):", left: 2, header: []string{
		"link", "mode", "sent", "delivered", "lost", "in order", "dup", "bad",
		"mean", "p50", "p90", "p99", "max", "jitter",
	}}
	cost := &table{title: "What it cost (sock: kernel socket drops; late: the link's own timing error, p99 ms):", left: 2, header: []string{
		"link", "mode", "payload kB", "wire kB", "+hdr kB", "packets", "overhead",
		"retrans", "fec", "sock", "late", "goodput kbit/s", "cpu ms",
	}}
	for _, x := range r.Results {
		name := x.Link
		if x.Noisy {
			name += " *"
		}
		sent := strconv.Itoa(x.Sent)
		switch {
		case x.Interrupted:
			sent += " (interrupted)"
		case x.Stalled:
			sent += " (stalled)"
		}
		l := x.Latency
		if l == nil {
			l = &Latency{Mean: -1, P50: -1, P90: -1, P99: -1, Max: -1}
		}
		got.rows = append(got.rows, []string{
			name, x.Mode, sent,
			fmt.Sprintf("%d %5.1f%%", x.Delivered, x.DeliveredPct()),
			x.Lost.cell(),
			inOrderCell(x),
			strconv.Itoa(x.Duplicates), strconv.Itoa(x.BadReplies),
			msCell(l.Mean), msCell(l.P50), msCell(l.P90), msCell(l.P99), msCell(l.Max), optMS(x.JitterMS),
		})
		timing := "-"
		if x.TimingError != nil {
			timing = msCell(x.TimingError.P99)
		}
		cost.rows = append(cost.rows, []string{
			name, x.Mode,
			kB(x.PayloadBytes), kB(x.WireBytes), kB(x.WireBytesWithHeaders),
			strconv.FormatUint(x.WirePackets, 10), overheadCell(x.Overhead),
			strconv.FormatUint(x.Retransmissions, 10), strconv.FormatUint(x.FECRecovered, 10),
			orDash(optU(x.SocketDrops)), timing,
			fmt.Sprintf("%.1f", x.GoodputBPS/1e3), fmt.Sprintf("%.0f", x.CPUS*1e3),
		})
	}
	return []*table{got, cost}
}

// cell is the lost column: the causes that took greetings, as counts.
func (l Lost) cell() string {
	if l.Unfinished != nil {
		if *l.Unfinished == 0 && l.Late == 0 {
			return "0"
		}
		return fmt.Sprintf("%d unfinished", *l.Unfinished)
	}
	var parts []string
	if l.Unrepaired != nil && *l.Unrepaired > 0 {
		parts = append(parts, fmt.Sprintf("%d not rebuilt", *l.Unrepaired))
	}
	if l.Link != nil && *l.Link > 0 {
		parts = append(parts, fmt.Sprintf("%d link", *l.Link))
	}
	if l.Socket == nil {
		if l.Unrepaired == nil { // fec's count includes the sockets' losses
			parts = append(parts, "? sock")
		}
	} else if *l.Socket > 0 {
		parts = append(parts, fmt.Sprintf("%d sock", *l.Socket))
	}
	if l.Late > 0 {
		parts = append(parts, fmt.Sprintf("%d late", l.Late))
	}
	if l.Refused != nil && *l.Refused > 0 {
		parts = append(parts, fmt.Sprintf("%d refused", *l.Refused))
	}
	if l.InLink != nil && *l.InLink > 0 {
		parts = append(parts, fmt.Sprintf("%d in link", *l.InLink))
	}
	if l.Unseen != nil && *l.Unseen > 0 {
		parts = append(parts, fmt.Sprintf("%d unseen", *l.Unseen))
	}
	if len(parts) == 0 {
		return "0"
	}
	return strings.Join(parts, " + ")
}

// inOrderCell is the in-order count and share of the delivered, or "-"
// with nothing delivered: a share of nothing is no figure.
func inOrderCell(x Result) string {
	if x.Delivered == 0 {
		return "-"
	}
	return fmt.Sprintf("%d %5.1f%%", x.InOrder, x.InOrderPct())
}

// msCell shows three significant digits or more: a loopback or LAN round
// trip of 0.04 ms must not print as 0.0. A negative value means no data.
func msCell(v float64) string {
	switch {
	case v < 0:
		return "-"
	case v == 0:
		return "0"
	case v < 1:
		return fmt.Sprintf("%.3f", v)
	case v < 10:
		return fmt.Sprintf("%.2f", v)
	}
	return fmt.Sprintf("%.1f", v)
}

func optMS(v *float64) string {
	if v == nil {
		return "-"
	}
	return msCell(*v)
}

func overheadCell(v *float64) string {
	if v == nil {
		return "-"
	}
	return fmt.Sprintf("%.2fx", *v)
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func kB(b uint64) string { return fmt.Sprintf("%.1f", float64(b)/1e3) }

// tradeoff builds the tutorials' TCP-versus-UDP table from this report's
// numbers: one column per mode, on the link that dropped the largest share
// of its datagrams (the kernel's socket drops do not count: they are the
// host's, not the link's), or on the targets. With repeats it shows each
// cell's first run.
func (r *Report) tradeoff() *table {
	runs, where := r.lossiest()
	if len(runs) < 2 {
		return nil
	}
	t := &table{title: "The trade-off, measured " + where + ":", header: []string{""}}
	if c := r.Config.Workload.Competing; c != "" {
		t.title = "The trade-off, measured " + where + ", beside a competing " + c +
			" flow (queue drops, CPU and the link's figures are both flows'):"
	}
	for _, x := range runs {
		t.header = append(t.header, x.Mode)
	}
	row := func(name string, cell func(x *Result, t TransportInfo) string) {
		cells := []string{name}
		for i := range runs {
			cells = append(cells, cell(&runs[i], r.Config.transportInfo(runs[i].Mode)))
		}
		t.rows = append(t.rows, cells)
	}
	bulk := r.Config.Workload.Kind == KindBulk
	row("connection", connectionCell)
	row("reliability", func(x *Result, t TransportInfo) string {
		s := fmt.Sprintf("%.1f%% delivered", x.DeliveredPct())
		if bulk {
			if x.Bulk == nil {
				return "-"
			}
			s = fmt.Sprintf("%.1f%% of bytes delivered", 100*float64(x.Bulk.DeliveredBytes)/float64(x.Bulk.Bytes))
		}
		switch {
		case t.fec:
			s += fmt.Sprintf(" (%d resent, %d by FEC)", x.Retransmissions, x.FECRecovered)
		case t.Delivery != string(modes.Unreliable) && x.CountersShared:
			s += fmt.Sprintf(" (%d resent by both flows)", x.Retransmissions)
		case t.Delivery != string(modes.Unreliable):
			s += fmt.Sprintf(" (%d resent)", x.Retransmissions)
		case !bulk && x.Lost.cell() != "0":
			s += " (lost: " + x.Lost.cell() + ")"
		}
		return s
	})
	row("order of arrival", func(x *Result, t TransportInfo) string {
		if x.Delivered == 0 {
			return "nothing delivered"
		}
		s := fmt.Sprintf("%.1f%% in order, %d dup", x.InOrderPct(), x.Duplicates)
		if t.Delivery == string(modes.ReliableUnordered) {
			s += " (order not promised)"
		}
		return s
	})
	row("header size", func(x *Result, t TransportInfo) string {
		if t.IPPackets {
			return fmt.Sprintf("%d B a packet (IP+TCP)", x.HeaderBytes)
		}
		return fmt.Sprintf("%d+%d B a datagram", link.HeaderBytes, x.HeaderBytes-link.HeaderBytes)
	})
	row("speed", func(x *Result, t TransportInfo) string {
		if bulk {
			if x.Bulk == nil {
				return "-"
			}
			return fmt.Sprintf("%s Mbit/s goodput, %s s", mbit(x.GoodputBPS), secondsCell(*x))
		}
		if x.Latency == nil {
			return "no replies"
		}
		return fmt.Sprintf("p50 %s ms, p99 %s ms", msCell(x.Latency.P50), msCell(x.Latency.P99))
	})
	row("resources", func(x *Result, t TransportInfo) string {
		per := 0.0
		if x.Sent > 0 {
			per = float64(x.WirePackets) / float64(x.Sent)
		}
		if bulk {
			if x.PayloadBytes == 0 {
				return fmt.Sprintf("nothing delivered; %.0f ms CPU", x.CPUS*1e3)
			}
			perMB := float64(x.WirePackets) / (float64(x.PayloadBytes) / 1e6)
			return fmt.Sprintf("%.0f packets a MB delivered; %.0f ms CPU", perMB, x.CPUS*1e3)
		}
		return fmt.Sprintf("%.1f packets a greeting; %.0f ms CPU", per, x.CPUS*1e3)
	})
	row("flow and congestion control", congestionCell)
	t.left = len(t.header)
	return t
}

// connectionCell is the trade-off's connection row: what opens the
// conversation, and the first reply's cost measured by the probe.
func connectionCell(x *Result, t TransportInfo) string {
	kind := "session, no handshake"
	switch {
	case t.HandshakeRTTs > 0:
		kind = "handshake"
	case t.Delivery == string(modes.Unreliable):
		kind = "none"
	}
	c := x.Connect
	if c == nil && x.LinkSpec != "" {
		return kind + "; the probe got no reply"
	}
	if c == nil { // a target: what the run itself saw
		if t.HandshakeRTTs > 0 {
			kind += " " + optMS(x.ConnectMS) + " ms"
		}
		return kind + "; 1st reply " + optMS(x.FirstMS) + " ms"
	}
	first := msCell(c.FirstReplyMS) + " ms"
	if c.RTTs != nil {
		first = fmt.Sprintf("%.1f RTT", *c.RTTs)
	}
	return fmt.Sprintf("%s; 1st reply %s, %d B", kind, first, c.Bytes)
}

// congestionCell is the trade-off's flow and congestion row: what the
// mode has, and on a rate-limited link what it did to the link's queue.
func congestionCell(x *Result, t TransportInfo) string {
	s := orDash(t.Congestion)
	var measured string
	if b := x.Bulk; b != nil && b.LinkShare != nil {
		measured = fmt.Sprintf("%s of the rate", shareCell(b.LinkShare))
		if !b.Complete {
			measured += fmt.Sprintf(" while %.1f%% of bytes arrived", 100*float64(b.DeliveredBytes)/float64(b.Bytes))
		}
	}
	if x.QueueDrops != nil && (*x.QueueDrops > 0 || measured != "") {
		if measured != "" {
			measured += ", "
		}
		measured += fmt.Sprintf("%d queue drops", *x.QueueDrops)
	}
	if measured == "" {
		return s
	}
	return measured + "; " + s
}

// lossiest returns the first runs of the link whose datagrams the link
// dropped most often, or every target's, and says which it is and why.
func (r *Report) lossiest() ([]Result, string) {
	groups := r.byLink()
	if len(r.Config.Targets) > 0 {
		return groups[0], "against the targets"
	}
	var best []Result
	bestRate := -1.0
	for _, runs := range groups {
		var dropped, packets uint64
		for _, x := range runs {
			if x.LinkDrops != nil {
				dropped += *x.LinkDrops
			}
			packets += x.WirePackets
		}
		rate := 0.0
		if packets > 0 {
			rate = float64(dropped) / float64(packets)
		}
		if rate > bestRate {
			best, bestRate = runs, rate
		}
	}
	if len(best) == 0 {
		return nil, ""
	}
	where := "on " + best[0].Link
	switch {
	case len(groups) == 1:
	case bestRate == 0:
		where += " (no link dropped anything)"
	default:
		where += ", the lossiest link of this run"
	}
	if r.Config.Repeat > 1 {
		where += fmt.Sprintf(", seed %d", best[0].Seed)
	}
	return best, where
}

// table is a grid of cells: the first left columns align left, the rest
// (numbers) right.
type table struct {
	title  string
	header []string
	rows   [][]string
	left   int
}

func (t *table) widths() []int {
	w := make([]int, len(t.header))
	for _, row := range append([][]string{t.header}, t.rows...) {
		for i, c := range row {
			w[i] = max(w[i], len([]rune(c)))
		}
	}
	return w
}

func (t *table) text(w io.Writer) {
	widths := t.widths()
	line := func(cells []string) {
		var b strings.Builder
		for i, c := range cells {
			pad := strings.Repeat(" ", widths[i]-len([]rune(c)))
			if i > 0 {
				b.WriteString("  ")
			}
			if i < t.left {
				b.WriteString(c + pad)
			} else {
				b.WriteString(pad + c)
			}
		}
		fmt.Fprintln(w, strings.TrimRight(b.String(), " "))
	}
	line(t.header)
	for _, row := range t.rows {
		line(row)
	}
}

func (t *table) markdown(w io.Writer) {
	esc := func(s string) string { return strings.ReplaceAll(s, "|", `\|`) }
	cells := make([]string, len(t.header))
	for i, h := range t.header {
		cells[i] = esc(h)
	}
	fmt.Fprintf(w, "| %s |\n", strings.Join(cells, " | "))
	for i := range cells {
		cells[i] = "---:"
		if i < t.left {
			cells[i] = "---"
		}
	}
	fmt.Fprintf(w, "|%s|\n", strings.Join(cells, "|"))
	for _, row := range t.rows {
		for i, c := range row {
			cells[i] = esc(c)
		}
		fmt.Fprintf(w, "| %s |\n", strings.Join(cells, " | "))
	}
}
