package compare

import (
	"slices"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"

	"github.com/udplab/udplab/modes"
)

// sessionsPlots returns the server's memory and idle CPU per session
// against the number of sessions held, a line per mode.
func (r *Report) sessionsPlots() ([][]*plot.Plot, error) {
	mem, cpu := plot.New(), plot.New()
	mem.Title.Text = "server memory per session"
	mem.Y.Label.Text = "resident memory (kB a session)"
	cpu.Title.Text = "server CPU per idle session"
	cpu.Y.Label.Text = "share of one core (% per 1000 idle sessions)"
	for _, p := range []*plot.Plot{mem, cpu} {
		p.X.Label.Text = "sessions held"
		p.Y.Min = 0
		p.Add(plotter.NewGrid())
	}
	if counts := r.sessionCounts(); len(counts) > 1 && counts[0] > 0 {
		for _, p := range []*plot.Plot{mem, cpu} {
			p.X.Scale, p.X.Tick.Marker = plot.LogScale{}, plot.LogTicks{Prec: -1}
		}
	}
	for _, name := range r.chartModes() {
		var m, c plotter.XYs
		for _, x := range r.firstRuns() {
			s := x.Sessions
			if x.Mode != name || s == nil || s.Opened == 0 {
				continue
			}
			n := float64(s.Opened)
			if v := s.RSSBytesPerSession; v != nil {
				m = append(m, plotter.XY{X: n, Y: *v / 1e3})
			}
			if v := s.IdleCPUPerSession; v != nil {
				c = append(c, plotter.XY{X: n, Y: 100 * 1000 * *v})
			}
		}
		if err := addLinePoints(mem, m, modes.Index(name)); err != nil {
			return nil, err
		}
		if err := addLinePoints(cpu, c, modes.Index(name)); err != nil {
			return nil, err
		}
	}
	return [][]*plot.Plot{{mem, cpu}}, nil
}

// sessionCounts are the distinct session counts the runs opened, smallest
// first.
func (r *Report) sessionCounts() []int {
	var ns []int
	for _, x := range r.firstRuns() {
		if s := x.Sessions; s != nil && s.Opened > 0 && !slices.Contains(ns, s.Opened) {
			ns = append(ns, s.Opened)
		}
	}
	slices.Sort(ns)
	return ns
}
