// Package paired measures a candidate against a baseline in the same run,
// alternating the two so that both see the same machine load, and reports
// the median of the per-round ratios, which one noisy round cannot move.
// Benchmarks use it to state speed targets as ratios rather than times.
package paired

import (
	"sort"
	"testing"
)

// Compare runs baseline and candidate alternately for rounds rounds, the
// one going first swapping each round so neither always inherits the other's
// garbage; each returns a rate (higher is better). It reports both mean
// rates under the given units and the median candidate/baseline ratio as
// ratioName.
func Compare(b *testing.B, rounds int, baseUnit, candUnit, ratioName string, baseline, candidate func() float64) {
	b.Helper()
	ratios := make([]float64, rounds)
	var baseSum, candSum float64
	for i := range ratios {
		var base, cand float64
		if i%2 == 0 {
			base, cand = baseline(), candidate()
		} else {
			cand, base = candidate(), baseline()
		}
		baseSum += base
		candSum += cand
		ratios[i] = cand / base
	}
	sort.Float64s(ratios)
	median := ratios[rounds/2]
	if rounds%2 == 0 {
		median = (ratios[rounds/2-1] + ratios[rounds/2]) / 2
	}
	b.ReportMetric(baseSum/float64(rounds), baseUnit)
	b.ReportMetric(candSum/float64(rounds), candUnit)
	b.ReportMetric(median, ratioName)
}
