package compare

import (
	"fmt"
	"image/color"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"

	"github.com/udplab/udplab/modes"
)

// bulkPlots returns goodput over time: one panel per link with a line per
// mode, or, with a competing flow, one panel per run with both flows.
func (r *Report) bulkPlots() ([][]*plot.Plot, error) {
	var panels []*plot.Plot
	for _, runs := range r.byLink() {
		if r.Config.Workload.Competing == "" {
			p := goodputPanel(runs[0].Link)
			addRate(p, runs)
			for _, x := range runs {
				if err := addSeries(p, x.Bulk, modes.Index(x.Mode)); err != nil {
					return nil, err
				}
			}
			panels = append(panels, p)
			continue
		}
		for _, x := range runs {
			if x.Bulk == nil || x.Competing == nil {
				continue
			}
			p := goodputPanel(fmt.Sprintf("%s beside %s, Jain %s", x.Mode, x.Competing.Mode, fairnessCell(x.Fairness)))
			p.Title.Text += "\n" + x.Link
			addRate(p, []Result{x})
			other := modes.Index(x.Competing.Mode)
			if x.Competing.Mode == x.Mode {
				other = len(modes.Names()) // a style of its own
			}
			if err := addSeries(p, x.Bulk, modes.Index(x.Mode)); err != nil {
				return nil, err
			}
			if err := addSeries(p, x.Competing, other); err != nil {
				return nil, err
			}
			panels = append(panels, p)
		}
	}
	return grid(panels)
}

func goodputPanel(title string) *plot.Plot {
	p := plot.New()
	p.Title.Text = title
	p.X.Label.Text = "time since the first send (s)"
	p.Y.Label.Text = "goodput (Mbit/s, per 100 ms)"
	p.Y.Min = 0
	p.Add(plotter.NewGrid())
	return p
}

// addRate draws the link's rate as a grey line, when it has one, and says
// so in the title.
func addRate(p *plot.Plot, runs []Result) {
	end := 0.0
	for _, x := range runs {
		for _, b := range []*Bulk{x.Bulk, x.Competing} {
			if b != nil {
				end = max(end, float64(len(b.SeriesBPS))*b.SeriesStepS)
			}
		}
	}
	for _, x := range runs {
		b := x.Bulk
		if b == nil || b.LinkShare == nil || *b.LinkShare == 0 {
			continue
		}
		rate := b.GoodputBPS / *b.LinkShare / 1e6
		l, err := plotter.NewLine(plotter.XYs{{X: 0, Y: rate}, {X: end, Y: rate}})
		if err != nil {
			return
		}
		l.LineStyle = draw.LineStyle{Color: color.Gray{Y: 150}, Width: vg.Points(1), Dashes: []vg.Length{vg.Points(1), vg.Points(3)}}
		p.Add(l)
		p.Title.Text += fmt.Sprintf(" (grey: the link's rate, %.3g Mbit/s)", rate)
		return
	}
}

// addSeries draws b's goodput series as a step at each interval's end.
func addSeries(p *plot.Plot, b *Bulk, style int) error {
	if b == nil || len(b.SeriesBPS) == 0 {
		return nil
	}
	xys := make(plotter.XYs, 0, len(b.SeriesBPS)+1)
	xys = append(xys, plotter.XY{X: 0, Y: 0})
	for i, v := range b.SeriesBPS {
		xys = append(xys, plotter.XY{X: float64(i+1) * b.SeriesStepS, Y: v / 1e6})
	}
	return addLine(p, xys, style)
}
