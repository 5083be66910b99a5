package compare

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/udplab/udplab/modes"
)

// sessionsTable is the sessions workload's table: what each mode's server
// spent on each session it held.
func (r *Report) sessionsTable() *table {
	t := &table{
		title: "Sessions: what each held, idle session cost the server (a process of its own; per session: heap and goroutine stacks " +
			"after a GC, resident memory, goroutines; idle cpu/1000: the server's CPU during the hold as a share of one core, for 1000 sessions; kernel: the kernel's socket memory " +
			"for the mode's protocol, system-wide, both ends of loopback):",
		left: 2,
		header: []string{"where", "mode", "opened", "open s", "heap kB", "stacks kB", "RSS kB", "goroutines",
			"idle cpu/1000", "kernel kB", "note"},
	}
	for _, x := range r.Results {
		s := x.Sessions
		if s == nil {
			continue
		}
		t.rows = append(t.rows, []string{
			x.Link, x.Mode, fmt.Sprintf("%d/%d", s.Opened, s.Sessions), fmt.Sprintf("%.2f", s.OpenS),
			kBPer(s.HeapBytesPerSession), kBPer(s.StackBytesPerSession), optKBPer(s.RSSBytesPerSession),
			fmt.Sprintf("%.2f", s.GoroutinesPerSession), cpuShare(s.IdleCPUPerSession),
			optKBPer(s.KernelSocketBytesPerSession), sessionsNote(x),
		})
	}
	return t
}

func kBPer(b float64) string { return fmt.Sprintf("%.2f", b/1e3) }

func optKBPer(b *float64) string {
	if b == nil {
		return "-"
	}
	return kBPer(*b)
}

// cpuShare writes a session's share of one core as the share a thousand
// such sessions take: an idle session's own is a few hundred-thousandths.
func cpuShare(v *float64) string {
	if v == nil {
		return "-"
	}
	p := 100 * 1000 * *v
	if p < 1 {
		return fmt.Sprintf("%.2f%%", p)
	}
	return fmt.Sprintf("%.1f%%", p)
}

// sessionsNote says what limits a run's figures: sessions not held, a CPU
// too busy to give the idle sessions all they wanted.
func sessionsNote(x Result) string {
	s := x.Sessions
	switch {
	case x.Interrupted:
		return "interrupted"
	case s.Failed != "":
		return s.Failed
	case s.CPUSaturated:
		return "CPU saturated: idle cpu is a floor"
	}
	return ""
}

// sessionsTradeoff is the trade-off for the sessions workload: the rows
// it measures, one column per mode, at the largest session count every
// mode held without running short of CPU (or, if none, the first).
func (r *Report) sessionsTradeoff() *table {
	var groups [][]Result
	for _, x := range r.firstRuns() {
		if x.Sessions == nil {
			continue
		}
		if len(groups) == 0 || x.Link != groups[len(groups)-1][0].Link {
			groups = append(groups, nil)
		}
		groups[len(groups)-1] = append(groups[len(groups)-1], x)
	}
	if len(groups) == 0 {
		return nil
	}
	runs := groups[0]
	for _, g := range groups {
		if cleanSessions(g) && g[0].Sessions.Sessions >= runs[0].Sessions.Sessions {
			runs = g
		}
	}
	if len(runs) < 2 {
		return nil
	}
	t := &table{title: fmt.Sprintf("The trade-off, measured with %d sessions a mode over loopback:", runs[0].Sessions.Sessions), header: []string{""}}
	for _, x := range runs {
		t.header = append(t.header, x.Mode)
	}
	row := func(name string, cell func(s *SessionStats) string) {
		cells := []string{name}
		for _, x := range runs {
			cells = append(cells, cell(x.Sessions))
		}
		t.rows = append(t.rows, cells)
	}
	row("connection", func(s *SessionStats) string {
		if s.Opened == 0 {
			return "none opened"
		}
		per := time.Duration(s.OpenS / float64(s.Opened) * float64(time.Second))
		return fmt.Sprintf("%d opened and greeted in %.2f s (%s each, %d at a time)", s.Opened, s.OpenS, per.Round(time.Microsecond), s.Workers)
	})
	row("resources", func(s *SessionStats) string {
		c := fmt.Sprintf("%s kB RSS, %s kB heap, %.1f goroutines a session; idle: %s of a core per 1000",
			optKBPer(s.RSSBytesPerSession), kBPer(s.HeapBytesPerSession), s.GoroutinesPerSession, cpuShare(s.IdleCPUPerSession))
		if s.Failed != "" {
			c += "; " + s.Failed
		}
		return c
	})
	t.left = len(t.header)
	return t
}

// cleanSessions reports whether every run held all its sessions with CPU
// to spare.
func cleanSessions(runs []Result) bool {
	for _, x := range runs {
		if s := x.Sessions; s.Failed != "" || s.CPUSaturated || x.Interrupted {
			return false
		}
	}
	return true
}

// sessionsSummary is the line above the sessions tables.
func (c ReportConfig) sessionsSummary() string {
	n := plural(c.Workload.Sessions, "conversation")
	if s := c.Workload.SessionsSweep; len(s) > 0 {
		counts := make([]string, len(s))
		for i, k := range s {
			counts[i] = strconv.Itoa(k)
		}
		n = strings.Join(counts, ", then ") + " conversations"
	}
	return fmt.Sprintf("udplab compare: sessions, %s a mode over loopback, each greeted once and held idle for %s; the server in a process of its own, %d opening at a time (quic %d)",
		n, time.Duration(c.Workload.IdleHoldS*float64(time.Second)), sessionWorkers, modes.QUICAcceptQueue)
}

// sessionsCSV is a run's sessions columns, empty outside the workload.
func sessionsCSV(s *SessionStats) []string {
	if s == nil {
		return make([]string, len(sessionsCSVHeader))
	}
	f := func(v float64) string { return strconv.FormatFloat(v, 'f', -1, 64) }
	return []string{
		strconv.Itoa(s.Sessions), strconv.Itoa(s.Opened), f(s.OpenS), strconv.Itoa(s.Workers), f(s.HoldS),
		f(s.HeapBytesPerSession), f(s.StackBytesPerSession), optF(s.RSSBytesPerSession), f(s.GoroutinesPerSession),
		optF(s.IdleCPUPerSession), strconv.FormatBool(s.CPUSaturated), optF(s.KernelSocketBytesPerSession), s.Failed,
	}
}

var sessionsCSVHeader = []string{
	"sessions_sessions", "sessions_opened", "sessions_open_s", "sessions_workers", "sessions_hold_s",
	"sessions_heap_bytes_per_session", "sessions_stack_bytes_per_session", "sessions_rss_bytes_per_session",
	"sessions_goroutines_per_session", "sessions_idle_cpu_per_session", "sessions_cpu_saturated",
	"sessions_kernel_socket_bytes_per_session", "sessions_failed",
}
