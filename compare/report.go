package compare

import (
	"bufio"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"io"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"time"

	"github.com/udplab/udplab/reliable"
)

// Report is a whole comparison: how it was run and what each run measured.
// It is what --format json prints.
type Report struct {
	Config  ReportConfig `json:"config"`
	Results []Result     `json:"results"`
}

// ReportConfig records everything needed to run a comparison again.
type ReportConfig struct {
	Seed     uint64       `json:"seed"`
	Modes    []Mode       `json:"modes"`
	Links    []LinkInfo   `json:"links,omitempty"`
	Sweep    string       `json:"sweep,omitempty"`
	Targets  []TargetInfo `json:"targets,omitempty"`
	Workload WorkloadInfo `json:"workload"`
	Reliable ReliableInfo `json:"reliable"`
	Versions Versions     `json:"versions"`
}

// LinkInfo is one simulated link as run.
type LinkInfo struct {
	Name       string `json:"name"`
	Spec       string `json:"spec"`
	SweepValue string `json:"sweep_value,omitempty"`
}

// TargetInfo is one running server measured.
type TargetInfo struct {
	Mode Mode   `json:"mode"`
	Addr string `json:"addr"`
}

// WorkloadInfo is the workload with its defaults filled in.
type WorkloadInfo struct {
	Messages   int     `json:"messages"`
	IntervalMS float64 `json:"interval_ms"`
	Size       int     `json:"size"`
	WaitMS     float64 `json:"wait_ms"` // 0: automatic
}

// ReliableInfo is the reliable modes' configuration with defaults filled in.
type ReliableInfo struct {
	FEC           string `json:"fec"` // reliable-fec's shards; reliable has none
	Profile       string `json:"profile"`
	Crypt         string `json:"crypt"` // "" when unencrypted
	MTU           int    `json:"mtu"`
	SendWindow    int    `json:"send_window"`
	ReceiveWindow int    `json:"receive_window"`
}

// Versions are the versions of what was measured.
type Versions struct {
	// Udplab is the commit udplab was built from ("-dirty" when the tree
	// had changes), or, without VCS stamping (go run, go test, or
	// -buildvcs=false), the module version with "commit unknown".
	Udplab string `json:"udplab"`
	KCPGo  string `json:"kcp_go"`
	Go     string `json:"go"`
}

// String is the one line udplab --version prints.
func (v Versions) String() string {
	return fmt.Sprintf("udplab %s (kcp-go %s, %s)", v.Udplab, v.KCPGo, v.Go)
}

func (c *Config) describe() ReportConfig {
	rc := c.Reliable.WithDefaults()
	rc.NoFEC = false
	d := ReportConfig{
		Seed:  c.Seed,
		Modes: c.modes(),
		Sweep: c.Sweep,
		Workload: WorkloadInfo{
			Messages:   c.Workload.Messages,
			IntervalMS: ms(c.Workload.Interval),
			Size:       c.Workload.Size,
			WaitMS:     ms(c.Workload.Wait),
		},
		Reliable: ReliableInfo{
			FEC: rc.FECString(), Profile: rc.Profile, Crypt: rc.Crypt,
			MTU: rc.MTU, SendWindow: rc.SendWindow, ReceiveWindow: rc.ReceiveWindow,
		},
		Versions: BuildVersions(),
	}
	if len(c.Targets) > 0 {
		d.Modes = nil
		for _, t := range c.Targets {
			d.Modes = append(d.Modes, t.Mode)
			d.Targets = append(d.Targets, TargetInfo(t))
		}
		return d
	}
	for _, l := range c.links() {
		d.Links = append(d.Links, LinkInfo{Name: l.Name, Spec: l.Spec.String(), SweepValue: l.SweepValue})
	}
	return d
}

// BuildVersions reads udplab's commit and kcp-go's version from the
// binary's build information.
func BuildVersions() Versions {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return Versions{Udplab: "unknown", KCPGo: "unknown", Go: runtime.Version()}
	}
	return versionsOf(bi)
}

func versionsOf(bi *debug.BuildInfo) Versions {
	v := Versions{Udplab: "unknown", KCPGo: "unknown", Go: runtime.Version()}
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
	for _, dep := range bi.Deps {
		if dep.Path == "github.com/xtaci/kcp-go/v5" {
			v.KCPGo = dep.Version
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

// csvHeader is the CSV columns: Result's JSON fields, latency flattened.
var csvHeader = []string{
	"mode", "link", "link_spec", "sweep_value",
	"sent", "delivered", "in_order", "duplicates", "bad_replies",
	"latency_ms_mean", "latency_ms_p50", "latency_ms_p90", "latency_ms_p99", "latency_ms_max",
	"jitter_ms", "first_reply_ms",
	"payload_bytes", "wire_bytes", "wire_packets", "wire_bytes_with_headers", "overhead", "link_drops",
	"retransmissions", "fec_recovered", "goodput_bps", "duration_s", "cpu_s", "stalled",
}

// WriteCSV writes one row per run under a header of csvHeader.
func (r *Report) WriteCSV(w io.Writer) error {
	cw := csv.NewWriter(w)
	_ = cw.Write(csvHeader)
	for _, x := range r.Results {
		f := func(v float64) string { return strconv.FormatFloat(v, 'f', -1, 64) }
		u := func(v uint64) string { return strconv.FormatUint(v, 10) }
		_ = cw.Write([]string{
			string(x.Mode), x.Link, x.LinkSpec, x.SweepValue,
			strconv.Itoa(x.Sent), strconv.Itoa(x.Delivered), strconv.Itoa(x.InOrder),
			strconv.Itoa(x.Duplicates), strconv.Itoa(x.BadReplies),
			f(x.Latency.Mean), f(x.Latency.P50), f(x.Latency.P90), f(x.Latency.P99), f(x.Latency.Max),
			f(x.JitterMS), f(x.FirstMS),
			u(x.PayloadBytes), u(x.WireBytes), u(x.WirePackets), u(x.WireBytesWithHeaders), f(x.Overhead), u(x.LinkDrops),
			u(x.Retransmissions), u(x.FECRecovered), f(x.GoodputBPS), f(x.DurationS), f(x.CPUS),
			strconv.FormatBool(x.Stalled),
		})
	}
	cw.Flush()
	return cw.Error()
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

// tables are the result tables and, when there is one, the trade-off.
func (r *Report) tables() []*table {
	ts := r.resultsTables()
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
	if len(c.Targets) > 0 {
		where = "running servers, real network (wire counted at the client)"
	}
	enc := "unencrypted"
	if c.Reliable.Crypt != "" {
		enc = c.Reliable.Crypt
	}
	return fmt.Sprintf("udplab compare: %d greetings of %d B per run, %s; %s; KCP %s, FEC %s, %s",
		c.Workload.Messages, c.Workload.Size, pace, where, c.Reliable.Profile, c.Reliable.FEC, enc)
}

// resultsTables returns the results as two tables, what arrived and what
// it cost, each narrow enough for a terminal.
func (r *Report) resultsTables() []*table {
	got := &table{title: "What arrived, and when (round trips in ms):", left: 2, header: []string{
		"link", "mode", "sent", "delivered", "in order", "dup", "bad",
		"mean", "p50", "p90", "p99", "max", "jitter",
	}}
	cost := &table{title: "What it cost:", left: 2, header: []string{
		"link", "mode", "payload kB", "wire kB", "+hdr kB", "packets", "overhead",
		"retrans", "fec", "goodput kbit/s", "cpu ms",
	}}
	for _, x := range r.Results {
		sent := strconv.Itoa(x.Sent)
		if x.Stalled {
			sent += " (stalled)"
		}
		got.rows = append(got.rows, []string{
			x.Link, string(x.Mode), sent,
			fmt.Sprintf("%d %5.1f%%", x.Delivered, x.DeliveredPct()),
			fmt.Sprintf("%d %5.1f%%", x.InOrder, x.InOrderPct()),
			strconv.Itoa(x.Duplicates), strconv.Itoa(x.BadReplies),
			msCell(x.Latency.Mean), msCell(x.Latency.P50), msCell(x.Latency.P90),
			msCell(x.Latency.P99), msCell(x.Latency.Max), msCell(x.JitterMS),
		})
		cost.rows = append(cost.rows, []string{
			x.Link, string(x.Mode),
			kB(x.PayloadBytes), kB(x.WireBytes), kB(x.WireBytesWithHeaders),
			strconv.FormatUint(x.WirePackets, 10), fmt.Sprintf("%.2fx", x.Overhead),
			strconv.FormatUint(x.Retransmissions, 10), strconv.FormatUint(x.FECRecovered, 10),
			fmt.Sprintf("%.1f", x.GoodputBPS/1e3), fmt.Sprintf("%.0f", x.CPUS*1e3),
		})
	}
	return []*table{got, cost}
}

// msCell shows three significant digits or more: a loopback or LAN round
// trip of 0.04 ms must not print as 0.0.
func msCell(v float64) string {
	switch {
	case v == 0:
		return "0"
	case v < 1:
		return fmt.Sprintf("%.3f", v)
	case v < 10:
		return fmt.Sprintf("%.2f", v)
	}
	return fmt.Sprintf("%.1f", v)
}

func kB(b uint64) string { return fmt.Sprintf("%.1f", float64(b)/1e3) }

// tradeoff builds the tutorials' TCP-versus-UDP table from this report's
// numbers: one column per mode, on the lossiest link of the run (the one
// whose datagrams the link dropped most often), or on the targets.
func (r *Report) tradeoff() *table {
	runs := r.lossiest()
	if len(runs) < 2 {
		return nil
	}
	where := "on " + runs[0].Link + ", the lossiest link of this run"
	if len(r.Config.Targets) > 0 {
		where = "against the targets"
	}
	t := &table{title: "The trade-off, measured " + where + ":", header: []string{""}}
	for _, x := range runs {
		t.header = append(t.header, string(x.Mode))
	}
	rc := r.Config.Reliable
	row := func(name string, cell func(x *Result, kcp bool) string) {
		cells := []string{name}
		for i := range runs {
			cells = append(cells, cell(&runs[i], runs[i].Mode != Raw))
		}
		t.rows = append(t.rows, cells)
	}
	row("connection", func(x *Result, kcp bool) string {
		if kcp {
			return fmt.Sprintf("session, no handshake; 1st reply %s ms", msCell(x.FirstMS))
		}
		return fmt.Sprintf("none; 1st reply %s ms", msCell(x.FirstMS))
	})
	row("reliability", func(x *Result, kcp bool) string {
		s := fmt.Sprintf("%.1f%% delivered", x.DeliveredPct())
		switch {
		case x.Mode == ReliableFEC:
			s += fmt.Sprintf(" (%d resent, %d by FEC)", x.Retransmissions, x.FECRecovered)
		case kcp:
			s += fmt.Sprintf(" (%d resent)", x.Retransmissions)
		}
		return s
	})
	row("order of arrival", func(x *Result, kcp bool) string {
		return fmt.Sprintf("%.1f%% in order, %d dup", x.InOrderPct(), x.Duplicates)
	})
	row("header size", func(x *Result, kcp bool) string {
		own := 0.0
		if x.WirePackets > 0 && x.WireBytes > x.PayloadBytes {
			own = float64(x.WireBytes-x.PayloadBytes) / float64(x.WirePackets)
		}
		return fmt.Sprintf("28+%.0f B a datagram; %.2fx payload", own, x.Overhead)
	})
	row("speed", func(x *Result, kcp bool) string {
		return fmt.Sprintf("p50 %s ms, p99 %s ms", msCell(x.Latency.P50), msCell(x.Latency.P99))
	})
	row("resources", func(x *Result, kcp bool) string {
		per := 0.0
		if x.Sent > 0 {
			per = float64(x.WirePackets) / float64(x.Sent)
		}
		return fmt.Sprintf("%.1f datagrams a greeting; %.0f ms CPU", per, x.CPUS*1e3)
	})
	row("flow and congestion control", func(x *Result, kcp bool) string {
		if !kcp {
			return "none: the application's pace"
		}
		cc := "congestion window on"
		if reliable.Profiles[rc.Profile].NoCongestion != 0 {
			cc = "no congestion window"
		}
		return fmt.Sprintf("window %d/%d; %s", rc.SendWindow, rc.ReceiveWindow, cc)
	})
	t.left = len(t.header)
	return t
}

// lossiest returns the runs of the link whose datagrams were dropped most
// often, or every run against targets.
func (r *Report) lossiest() []Result {
	var best []Result
	bestRate := -1.0
	for _, runs := range r.byLink() {
		var dropped, packets uint64
		for _, x := range runs {
			dropped += x.LinkDrops
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
	return best
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
