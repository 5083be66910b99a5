package compare

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/udplab/udplab/modes"
)

// TestChartLegend checks the chart's one legend: every mode the report ran,
// once, in the modes' order whatever order the results came in, drawn below
// the panels rather than over them.
func TestChartLegend(t *testing.T) {
	names := modes.Names()
	r := &Report{}
	for _, link := range []string{"delay=20ms", "loss=10%,delay=20ms"} {
		for _, m := range slices.Backward(names) {
			r.Results = append(r.Results, Result{Mode: m, Link: link})
		}
	}
	if got := r.chartModes(); !slices.Equal(got, names) {
		t.Errorf("chart modes = %v, want %v", got, names)
	}
	path := filepath.Join(t.TempDir(), "c.svg")
	if err := r.WriteChart(path); err != nil {
		t.Fatal(err)
	}
	svg, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range names {
		if n := strings.Count(string(svg), ">"+m+"</text>"); n != 1 {
			t.Errorf("%q appears %d times as a label in the chart, want once (one shared legend)", m, n)
		}
	}
}
