package compare

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/plotutil"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
	"gonum.org/v1/plot/vg/vgimg"
	"gonum.org/v1/plot/vg/vgsvg"

	"github.com/udplab/udplab/link"
	"github.com/udplab/udplab/modes"
)

// Chart sizes: one panel is 4.5 by 3.2 inches, readable at 100% on a
// laptop screen and in a README.
const (
	panelW   = 4.5 * vg.Inch
	panelH   = 3.2 * vg.Inch
	chartPad = vg.Inch / 8
)

// ChartFormats are the chart file extensions Chart accepts.
var ChartFormats = []string{".svg", ".png"}

// CheckChartPath reports whether path names a chart format Chart can write.
func CheckChartPath(path string) error {
	ext := strings.ToLower(filepath.Ext(path))
	for _, f := range ChartFormats {
		if ext == f {
			return nil
		}
	}
	return fmt.Errorf("chart %q: want a file ending in %s", path, strings.Join(ChartFormats, " or "))
}

// WriteChart draws the report into path, as SVG or PNG by its extension. A
// sweep gives two panels, delivery % and p99 latency against the swept
// value, one line per mode; otherwise each link gets a panel with the
// latency CDF of each mode.
func (r *Report) WriteChart(path string) error {
	if err := CheckChartPath(path); err != nil {
		return err
	}
	var plots [][]*plot.Plot
	var err error
	if r.Config.Sweep != "" {
		plots, err = r.sweepPlots()
	} else {
		plots, err = r.cdfPlots()
	}
	if err != nil {
		return err
	}
	rows, cols := len(plots), len(plots[0])
	w, h := panelW*vg.Length(cols), panelH*vg.Length(rows)
	var buf bytes.Buffer
	if strings.ToLower(filepath.Ext(path)) == ".svg" {
		c := vgsvg.New(w, h)
		drawTiles(plots, draw.New(c))
		_, err = c.WriteTo(&buf)
	} else {
		c := vgimg.New(w, h)
		drawTiles(plots, draw.New(c))
		_, err = vgimg.PngCanvas{Canvas: c}.WriteTo(&buf)
	}
	if err != nil {
		return fmt.Errorf("chart %q: %w", path, err)
	}
	return os.WriteFile(path, buf.Bytes(), 0o644)
}

func drawTiles(plots [][]*plot.Plot, dc draw.Canvas) {
	tiles := draw.Tiles{
		Rows: len(plots), Cols: len(plots[0]),
		PadTop: chartPad, PadBottom: chartPad, PadLeft: chartPad, PadRight: chartPad,
		PadX: chartPad, PadY: chartPad,
	}
	canvases := plot.Align(plots, tiles, dc)
	for j := range plots {
		for i, p := range plots[j] {
			if p != nil {
				p.Draw(canvases[j][i])
			}
		}
	}
}

// cdfPlots returns one latency CDF panel per link, two panels a row.
func (r *Report) cdfPlots() ([][]*plot.Plot, error) {
	var panels []*plot.Plot
	for _, runs := range r.byLink() {
		p := plot.New()
		p.Title.Text = runs[0].Link
		if len(r.Config.Targets) > 0 {
			p.Title.Text = "running servers"
		}
		p.X.Label.Text = "round trip (ms)"
		p.Y.Label.Text = "fraction of greetings sent"
		p.Y.Min, p.Y.Max = 0, 1
		p.Add(plotter.NewGrid())
		var all plotter.XYs
		for _, x := range runs {
			ms, frac := x.CDF()
			if len(ms) == 0 {
				continue
			}
			// A step from zero to the first bucket, so a mode whose
			// replies all take the same time still shows as a line.
			xys := make(plotter.XYs, 0, len(ms)+1)
			xys = append(xys, plotter.XY{X: ms[0], Y: 0})
			for i := range ms {
				xys = append(xys, plotter.XY{X: ms[i], Y: frac[i]})
			}
			if err := addLine(p, x.Mode, xys, modes.Index(x.Mode)); err != nil {
				return nil, err
			}
			all = append(all, xys...)
		}
		placeCDFLegend(p, all)
		panels = append(panels, p)
	}
	if len(panels) == 0 {
		return nil, fmt.Errorf("chart: no runs to draw")
	}
	cols := min(2, len(panels))
	var grid [][]*plot.Plot
	for i := 0; i < len(panels); i += cols {
		row := make([]*plot.Plot, cols)
		copy(row, panels[i:])
		for k := range row {
			if row[k] == nil {
				row[k] = plot.New() // an empty tile keeps the grid square
				row[k].HideAxes()
			}
		}
		grid = append(grid, row)
	}
	return grid, nil
}

// placeCDFLegend puts the legend in whichever corner a CDF leaves empty:
// top left (above a late rise) or bottom right (below an early one).
func placeCDFLegend(p *plot.Plot, pts plotter.XYs) {
	if len(pts) == 0 {
		return
	}
	lo, hi := pts[0].X, pts[0].X
	for _, q := range pts {
		lo, hi = min(lo, q.X), max(hi, q.X)
	}
	// The legend box: about a third of the width and of the height.
	w := (hi - lo) * 0.4
	var topLeft, bottomRight int
	for _, q := range pts {
		if q.X <= lo+w && q.Y >= 0.65 {
			topLeft++
		}
		if q.X >= hi-w && q.Y <= 0.35 {
			bottomRight++
		}
	}
	p.Legend.Top, p.Legend.Left = topLeft <= bottomRight, topLeft <= bottomRight
	p.Legend.XOffs, p.Legend.YOffs = vg.Points(6), vg.Points(6)
	if p.Legend.Top {
		p.Legend.XOffs, p.Legend.YOffs = vg.Points(6), -vg.Points(6)
	} else {
		p.Legend.XOffs = -vg.Points(6)
	}
}

// sweepPlots returns delivery % and p99 latency against the swept value.
func (r *Report) sweepPlots() ([][]*plot.Plot, error) {
	var values []string
	for _, l := range r.Config.Links {
		values = append(values, l.SweepValue)
	}
	xs, unit, numeric := sweepAxis(values)
	label := r.Config.Sweep
	if unit != "" {
		label += " (" + unit + ")"
	}
	delivery, p99 := plot.New(), plot.New()
	delivery.Title.Text, p99.Title.Text = "delivered", "p99 round trip"
	delivery.Y.Label.Text, p99.Y.Label.Text = "% of greetings", "ms"
	delivery.Y.Min, delivery.Y.Max = 0, 100
	// Delivery falls from the top left and latency rises to the top right:
	// each legend goes where its lines are not.
	delivery.Legend.Top, delivery.Legend.Left = false, true
	p99.Legend.Top, p99.Legend.Left = true, true
	for _, p := range []*plot.Plot{delivery, p99} {
		p.Legend.XOffs, p.Legend.YOffs = vg.Points(6), vg.Points(6)
	}
	p99.Legend.YOffs = -vg.Points(6)
	for _, p := range []*plot.Plot{delivery, p99} {
		p.X.Label.Text = label
		p.Add(plotter.NewGrid())
		p.Y.Min = 0
		if !numeric {
			ticks := make([]plot.Tick, len(values))
			for i, v := range values {
				ticks[i] = plot.Tick{Value: float64(i), Label: v}
			}
			p.X.Tick.Marker = plot.ConstantTicks(ticks)
		}
	}
	for _, m := range r.Config.Modes {
		var del, lat plotter.XYs
		for i, l := range r.Config.Links {
			for _, x := range r.Results {
				if x.Mode == m && x.Link == l.Name && x.Repeat <= 1 {
					del = append(del, plotter.XY{X: xs[i], Y: x.DeliveredPct()})
					if x.Latency != nil { // no replies: no p99 to draw
						lat = append(lat, plotter.XY{X: xs[i], Y: x.Latency.P99})
					}
				}
			}
		}
		if len(del) == 0 {
			continue
		}
		if err := addLinePoints(delivery, m, del, modes.Index(m)); err != nil {
			return nil, err
		}
		if err := addLinePoints(p99, m, lat, modes.Index(m)); err != nil {
			return nil, err
		}
	}
	return [][]*plot.Plot{{delivery, p99}}, nil
}

// sweepAxis turns swept values into x coordinates: percentages, durations
// in ms, rates in Mbit/s or plain numbers. Values of mixed or other kinds
// are placed at 0, 1, 2... and labelled as written.
func sweepAxis(values []string) (xs []float64, unit string, numeric bool) {
	parsers := []struct {
		unit  string
		parse func(string) (float64, error)
	}{
		{"%", func(s string) (float64, error) {
			if !strings.HasSuffix(s, "%") {
				return 0, strconv.ErrSyntax
			}
			return strconv.ParseFloat(strings.TrimSuffix(s, "%"), 64)
		}},
		{"ms", func(s string) (float64, error) {
			d, err := time.ParseDuration(s)
			return ms(d), err
		}},
		{"Mbit/s", func(s string) (float64, error) {
			bps, err := link.ParseRate(s)
			return float64(bps) / 1e6, err
		}},
		{"", func(s string) (float64, error) { return strconv.ParseFloat(s, 64) }},
	}
	for _, p := range parsers {
		xs = xs[:0]
		ok := true
		for _, v := range values {
			x, err := p.parse(v)
			if err != nil {
				ok = false
				break
			}
			xs = append(xs, x)
		}
		if ok {
			return xs, p.unit, true
		}
	}
	xs = xs[:0]
	for i := range values {
		xs = append(xs, float64(i))
	}
	return xs, "", false
}

func addLine(p *plot.Plot, name string, xys plotter.XYs, i int) error {
	l, err := plotter.NewLine(xys)
	if err != nil {
		return fmt.Errorf("chart: %w", err)
	}
	style(&l.LineStyle, i)
	p.Add(l)
	p.Legend.Add(name, l)
	return nil
}

func addLinePoints(p *plot.Plot, name string, xys plotter.XYs, i int) error {
	l, pts, err := plotter.NewLinePoints(xys)
	if err != nil {
		return fmt.Errorf("chart: %w", err)
	}
	style(&l.LineStyle, i)
	pts.Color = l.Color
	pts.Shape = plotutil.Shape(i)
	p.Add(l, pts)
	p.Legend.Add(name, l, pts)
	return nil
}

func style(s *draw.LineStyle, i int) {
	s.Color = plotutil.Color(i)
	s.Dashes = plotutil.Dashes(i)
	s.Width = vg.Points(1.5)
}

// byLink groups the results by link, in order; runs against targets are
// one group.
func (r *Report) byLink() [][]Result {
	firsts := r.firstRuns()
	if len(r.Config.Targets) > 0 {
		return [][]Result{firsts}
	}
	var groups [][]Result
	for i := 0; i < len(firsts); {
		j := i
		for j < len(firsts) && firsts[j].Link == firsts[i].Link {
			j++
		}
		groups = append(groups, firsts[i:j])
		i = j
	}
	return groups
}

// firstRuns is each cell's first run: what charts and the trade-off show
// when cells ran more than once.
func (r *Report) firstRuns() []Result {
	var out []Result
	for _, x := range r.Results {
		if x.Repeat <= 1 {
			out = append(out, x)
		}
	}
	return out
}
