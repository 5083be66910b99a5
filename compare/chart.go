package compare

import (
	"bytes"
	"fmt"
	"image/color"
	"os"
	"path/filepath"
	"slices"
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
	switch {
	case r.Config.Workload.Kind == KindBulk:
		plots, err = r.bulkPlots()
	case r.Config.Workload.Kind == KindSessions:
		plots, err = r.sessionsPlots()
	case r.Config.Sweep != "":
		plots, err = r.sweepPlots()
	default:
		plots, err = r.cdfPlots()
	}
	if err != nil {
		return err
	}
	rows, cols := len(plots), len(plots[0])
	w := panelW * vg.Length(cols)
	legend, legendH := r.legend(w, r.Config.Sweep != "" || r.Config.Workload.Kind == KindSessions)
	h := panelH*vg.Length(rows) + legendH
	paint := func(dc draw.Canvas) {
		top, bottom := splitBottom(dc, legendH)
		drawTiles(plots, top)
		legend(bottom)
	}
	var buf bytes.Buffer
	if strings.ToLower(filepath.Ext(path)) == ".svg" {
		c := vgsvg.New(w, h)
		paint(draw.New(c))
		_, err = c.WriteTo(&buf)
	} else {
		c := vgimg.New(w, h)
		paint(draw.New(c))
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
			if err := addLine(p, xys, modes.Index(x.Mode)); err != nil {
				return nil, err
			}
		}
		panels = append(panels, p)
	}
	return grid(panels)
}

// grid lays panels out two a row, an empty tile filling the last row.
func grid(panels []*plot.Plot) ([][]*plot.Plot, error) {
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
		if err := addLinePoints(delivery, del, modes.Index(m)); err != nil {
			return nil, err
		}
		if err := addLinePoints(p99, lat, modes.Index(m)); err != nil {
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

func addLine(p *plot.Plot, xys plotter.XYs, i int) error {
	l, err := plotter.NewLine(xys)
	if err != nil {
		return fmt.Errorf("chart: %w", err)
	}
	l.LineStyle = lineStyle(i)
	p.Add(l)
	return nil
}

func addLinePoints(p *plot.Plot, xys plotter.XYs, i int) error {
	if len(xys) == 0 {
		return nil
	}
	l, pts, err := plotter.NewLinePoints(xys)
	if err != nil {
		return fmt.Errorf("chart: %w", err)
	}
	l.LineStyle = lineStyle(i)
	pts.GlyphStyle = glyphStyle(i)
	p.Add(l, pts)
	return nil
}

// palette is Okabe and Ito's colour-blind-safe set, one colour per mode; with dashes and glyphs of their own, six lines stay
// apart in print and in grey.
var palette = []color.RGBA{
	{0, 114, 178, 255},   // blue
	{213, 94, 0, 255},    // vermillion
	{0, 158, 115, 255},   // bluish green
	{204, 121, 167, 255}, // reddish purple
	{230, 159, 0, 255},   // orange
	{0, 0, 0, 255},       // black
	{86, 180, 233, 255},  // sky blue
}

var dashes = [][]vg.Length{
	nil,
	{vg.Points(6), vg.Points(2)},
	{vg.Points(2), vg.Points(2)},
	{vg.Points(8), vg.Points(2), vg.Points(2), vg.Points(2)},
	{vg.Points(4), vg.Points(4)},
	{vg.Points(1), vg.Points(2)},
	{vg.Points(10), vg.Points(3)},
}

func lineStyle(i int) draw.LineStyle {
	i = max(i, 0)
	return draw.LineStyle{Color: palette[i%len(palette)], Dashes: dashes[i%len(dashes)], Width: vg.Points(1.5)}
}

func glyphStyle(i int) draw.GlyphStyle {
	i = max(i, 0)
	return draw.GlyphStyle{Color: palette[i%len(palette)], Shape: plotutil.Shape(i), Radius: vg.Points(2.5)}
}

// One entry of the shared legend: wide enough for "kcp-fec" and its
// line.
const (
	legendRowH  = 16
	legendCellW = 1.2 * vg.Inch
)

// legend returns a function that draws one legend for every panel, in a
// strip below them where no line can run under it, and the strip's height:
// one entry per mode the report ran, in the modes' order, as many to a row
// as the width holds.
func (r *Report) legend(width vg.Length, points bool) (func(draw.Canvas), vg.Length) {
	names := r.chartModes()
	styles := make([]int, len(names))
	for k, name := range names {
		styles[k] = modes.Index(name)
	}
	if other := r.sameModeCompetitor(); other != "" {
		names = append(names, "other "+other)
		styles = append(styles, len(modes.Names()))
	}
	perRow := max(1, min(len(names), int((width-2*chartPad)/legendCellW)))
	rows := (len(names) + perRow - 1) / perRow
	height := vg.Points(legendRowH)*vg.Length(rows) + chartPad
	return func(c draw.Canvas) {
		left := c.Min.X + (c.Max.X-c.Min.X-legendCellW*vg.Length(perRow))/2 // the row centred
		for k, name := range names {
			l := plot.NewLegend()
			l.Left, l.Top = true, true
			i := styles[k]
			line := &plotter.Line{LineStyle: lineStyle(i)}
			if points {
				l.Add(name, line, &plotter.Scatter{GlyphStyle: glyphStyle(i)})
			} else {
				l.Add(name, line)
			}
			x := left + legendCellW*vg.Length(k%perRow)
			y := c.Max.Y - vg.Points(legendRowH)*vg.Length(k/perRow)
			cell := draw.Crop(c, 0, 0, 0, 0)
			cell.Rectangle = vg.Rectangle{Min: vg.Point{X: x, Y: y - vg.Points(legendRowH)}, Max: vg.Point{X: x + legendCellW, Y: y}}
			l.Draw(cell)
		}
	}, height
}

// chartModes are the modes the report's charted runs used, in the modes'
// order.
func (r *Report) chartModes() []string {
	var names []string
	for _, x := range r.firstRuns() {
		if !slices.Contains(names, x.Mode) {
			names = append(names, x.Mode)
		}
		if x.Competing != nil && !slices.Contains(names, x.Competing.Mode) {
			names = append(names, x.Competing.Mode)
		}
	}
	slices.SortStableFunc(names, func(a, b string) int { return modes.Index(a) - modes.Index(b) })
	return names
}

// sameModeCompetitor is the competing flow's mode when it also ran as a
// measured mode: its line then needs a style and a legend entry of its
// own.
func (r *Report) sameModeCompetitor() string {
	for _, x := range r.firstRuns() {
		if x.Competing != nil && x.Competing.Mode == x.Mode {
			return x.Mode
		}
	}
	return ""
}

// splitBottom cuts height off the bottom of c.
func splitBottom(c draw.Canvas, height vg.Length) (top, bottom draw.Canvas) {
	top, bottom = c, c
	top.Min.Y = c.Min.Y + height
	bottom.Max.Y = c.Min.Y + height
	return top, bottom
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
