package compare

import (
	"fmt"
	"math"
	"slices"
)

// Summary is one (link, mode) cell over its repeated runs.
type Summary struct {
	Mode         string    `json:"mode"`
	Link         string    `json:"link"`
	SweepValue   string    `json:"sweep_value,omitempty"`
	Runs         int       `json:"runs"`
	DeliveredPct Estimate  `json:"delivered_pct"`
	P50          *Estimate `json:"p50_ms"`   // nil when no run had a reply
	P99          *Estimate `json:"p99_ms"`   // nil when no run had a reply
	Overhead     *Estimate `json:"overhead"` // nil when no run had payload
	GoodputBPS   Estimate  `json:"goodput_bps"`
}

// Estimate is a mean over runs with its 95% confidence interval's half
// width from Student's t distribution, as hyperfine and ministat report:
// the true mean lies in Mean ± CI95 with 95% confidence, if the runs are
// independent draws. With one run there is no interval (CI95 is nil).
type Estimate struct {
	Mean float64  `json:"mean"`
	CI95 *float64 `json:"ci95"`
	N    int      `json:"n"` // runs with data
}

// estimate summarizes xs.
func estimate(xs []float64) Estimate {
	e := Estimate{N: len(xs)}
	if e.N == 0 {
		return e
	}
	for _, x := range xs {
		e.Mean += x
	}
	e.Mean /= float64(e.N)
	if e.N < 2 {
		return e
	}
	var ss float64
	for _, x := range xs {
		ss += (x - e.Mean) * (x - e.Mean)
	}
	sd := math.Sqrt(ss / float64(e.N-1))
	hw := tQuantile975(e.N-1) * sd / math.Sqrt(float64(e.N))
	e.CI95 = &hw
	return e
}

func optEstimate(xs []float64) *Estimate {
	if len(xs) == 0 {
		return nil
	}
	e := estimate(xs)
	return &e
}

// t975 is Student's t at 0.975 (a two-sided 95% interval) for 1 to 30
// degrees of freedom, from the standard tables.
var t975 = [...]float64{
	12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228,
	2.201, 2.179, 2.160, 2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086,
	2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048, 2.045, 2.042,
}

// tQuantile975 returns Student's t at 0.975 for df degrees of freedom: the
// table up to 30, then the Cornish-Fisher expansion around the normal
// quantile, which is within 0.001 of the exact value from there on.
func tQuantile975(df int) float64 {
	if df <= len(t975) {
		return t975[df-1]
	}
	const z = 1.959963984540054
	n := float64(df)
	z3, z5 := z*z*z, z*z*z*z*z
	return z + (z3+z)/(4*n) + (5*z5+16*z3+3*z)/(96*n*n)
}

// summarize fills r.Summaries when any cell ran more than once.
func (r *Report) summarize() {
	r.Summaries = nil
	if r.Config.Repeat < 2 {
		return
	}
	for _, runs := range r.cells() {
		// An interrupted run measured part of a workload: averaging it in
		// would skew the cell, so a summary holds complete runs only.
		runs = slices.DeleteFunc(runs, func(x Result) bool { return x.Interrupted })
		if len(runs) > 0 {
			r.Summaries = append(r.Summaries, summarizeCell(runs))
		}
	}
}

// cells groups the results by (link, mode), in the order they ran.
func (r *Report) cells() [][]Result {
	var out [][]Result
	index := map[[2]string]int{}
	for _, x := range r.Results {
		key := [2]string{x.Link, string(x.Mode)}
		i, ok := index[key]
		if !ok {
			i = len(out)
			index[key] = i
			out = append(out, nil)
		}
		out[i] = append(out[i], x)
	}
	return out
}

func summarizeCell(runs []Result) Summary {
	var del, p50, p99, over, good []float64
	for _, x := range runs {
		del = append(del, x.DeliveredPct())
		good = append(good, x.GoodputBPS)
		if x.Latency != nil {
			p50 = append(p50, x.Latency.P50)
			p99 = append(p99, x.Latency.P99)
		}
		if x.Overhead != nil {
			over = append(over, *x.Overhead)
		}
	}
	return Summary{
		Mode: runs[0].Mode, Link: runs[0].Link, SweepValue: runs[0].SweepValue, Runs: len(runs),
		DeliveredPct: estimate(del), P50: optEstimate(p50), P99: optEstimate(p99),
		Overhead: optEstimate(over), GoodputBPS: estimate(good),
	}
}

// summaryTable shows each cell as mean ± half width.
func (r *Report) summaryTable() *table {
	t := &table{
		title:  fmt.Sprintf("Over %d runs a cell, mean ± 95%% confidence half-width (round trips in ms):", r.Config.Repeat),
		left:   2,
		header: []string{"link", "mode", "runs", "delivered %", "p50", "p99", "overhead", "goodput kbit/s"},
	}
	for _, s := range r.Summaries {
		t.rows = append(t.rows, []string{
			s.Link, string(s.Mode), fmt.Sprint(s.Runs),
			s.DeliveredPct.cell("%.1f", 1), s.P50.cellOpt("%.2f", 1), s.P99.cellOpt("%.2f", 1),
			s.Overhead.cellOpt("%.2f", 1), s.GoodputBPS.cell("%.1f", 1e-3),
		})
	}
	return t
}

// cell renders e scaled by scale as "mean ± hw" in format f.
func (e Estimate) cell(f string, scale float64) string {
	s := fmt.Sprintf(f, e.Mean*scale)
	if e.CI95 != nil {
		s += " ± " + fmt.Sprintf(f, *e.CI95*scale)
	}
	return s
}

func (e *Estimate) cellOpt(f string, scale float64) string {
	if e == nil {
		return "-"
	}
	return e.cell(f, scale)
}
