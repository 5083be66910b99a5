package link

import (
	"errors"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestParetoNormal: dist=paretonormal draws netem's paretonormal, (N +
// 3·P)/4 at one quantile: its standard deviation is paretoNormalSD,
// integrated here afresh; the draws' mean is 0 within 4 standard errors;
// and the share of draws below each analytic quantile q is q within 4
// binomial standard errors.
func TestParetoNormal(t *testing.T) {
	// E[X²] = ∫ Q(q)² dq, with q = 1 - s³ to smooth the pareto tail.
	const m = 200_000
	var sq float64
	for i := range m {
		s := (float64(i) + 0.5) / m
		if q := 1 - s*s*s; q > 0 && q < 1 {
			x := paretoNormal(q)
			sq += x * x * 3 * s * s / m
		}
	}
	if sd := math.Sqrt(sq); math.Abs(sd-paretoNormalSD) > 5e-4 {
		t.Errorf("paretonormal's standard deviation integrates to %.5f; paretoNormalSD is %.4f", sd, paretoNormalSD)
	}

	const n = 200_000
	qs := []float64{0.01, 0.1, 0.5, 0.9, 0.99}
	below := make([]int, len(qs))
	var sum float64
	for i := range uint64(n) {
		r := packetRNG(DefaultSeed, 0, i)
		x := r.jitter(1, ParetoNormal)
		sum += x
		for k, q := range qs {
			if x < paretoNormal(q) {
				below[k]++
			}
		}
	}
	within4SE(t, "paretonormal mean", sum/n, 0, paretoNormalSD/math.Sqrt(n))
	for k, q := range qs {
		within4SE(t, "paretonormal share below its quantile "+pct(q), float64(below[k])/n, q, math.Sqrt(q*(1-q)/n))
	}
}

// TestDistTable: a table in netem's format is read as iproute2 reads it
// (comments, blank lines, hexadecimal), and each packet's delay is delay
// plus jitter times one of its values over 8192, each with equal chance:
// the counts of each delay are within 4 binomial standard errors.
func TestDistTable(t *testing.T) {
	const path = "testdata/three.dist"
	tab, err := LoadDistTable(path)
	if err != nil || tab.Len() != 6 || tab.Path() != path {
		t.Fatalf("LoadDistTable(%s) = %v, %v; want 6 values", path, tab, err)
	}
	if again, _ := LoadDistTable(path); again != tab {
		t.Error("a path read twice gave two tables")
	}
	const n = 60_000
	spec := "delay=100ms,jitter=10ms,order=netem,dist=" + path
	s, err := Parse(spec)
	if err != nil || s.Up.Dist != Table || s.Up.DistTable != tab || s.Up != s.Down {
		t.Fatalf("Parse(%q) = %+v, %v", spec, s, err)
	}
	if got, want := strings.TrimSuffix(s.String(), ",seed=1"), "delay=100ms,jitter=10ms,dist="+path+",order=netem"; got != want {
		t.Errorf("Parse(%q).String() = %q, want %q", spec, got, want)
	}
	lines := traceDelays(t, spec, n)
	count := map[time.Duration]int{}
	for _, d := range lines {
		count[d]++
	}
	for _, d := range []time.Duration{90 * time.Millisecond, 100 * time.Millisecond, 110 * time.Millisecond} {
		within4SE(t, spec+": share delayed "+d.String(), float64(count[d])/n, 1.0/3, math.Sqrt(2.0/9/n))
	}
	if len(count) != 3 {
		t.Errorf("delays %v, want only 90, 100 and 110 ms", count)
	}
}

// TestSystemDistTables reads the tables iproute2 installs, where they are:
// each has 4096 values, and draws from it average to the table's own
// mean within 4 standard errors of its own spread.
func TestSystemDistTables(t *testing.T) {
	dir := "/usr/lib/x86_64-linux-gnu/tc"
	for _, name := range []string{"normal", "pareto", "paretonormal", "experimental"} {
		path := filepath.Join(dir, name+".dist")
		if _, err := os.Stat(path); err != nil {
			t.Logf("%s: %v; skipped", path, err)
			continue
		}
		tab, err := LoadDistTable(path)
		if err != nil {
			t.Fatalf("LoadDistTable(%s): %v", path, err)
		}
		if tab.Len() != 4096 {
			t.Fatalf("LoadDistTable(%s) = %d values, want 4096", path, tab.Len())
		}
		var m, sq float64
		for _, v := range tab.values {
			x := float64(v) / NetemDistScale
			m += x / float64(tab.Len())
			sq += x * x / float64(tab.Len())
		}
		sd := math.Sqrt(sq - m*m)
		const n = 100_000
		var sum float64
		p := Params{Jitter: 1, Dist: Table, DistTable: tab}
		for i := range uint64(n) {
			r := packetRNG(DefaultSeed, 0, i)
			sum += r.jitterFrom(1, &p)
		}
		within4SE(t, name+".dist mean draw", sum/n, m, sd/math.Sqrt(n))
	}
}

// TestDistTableErrors: what iproute2 would refuse or truncate is refused,
// naming the file and the line.
func TestDistTableErrors(t *testing.T) {
	dir := t.TempDir()
	write := func(name, text string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	for _, tt := range []struct{ path, want string }{
		{filepath.Join(dir, "missing.dist"), "no such file"},
		{write("word.dist", "1 2\n3 x\n"), `word.dist:2: "x" is not an integer`},
		{write("big.dist", "40000\n"), `"40000" is not an integer from -32768 to 32767`},
		{write("empty.dist", "# nothing\n\n"), "no values"},
		{write("long.dist", strings.Repeat("1 ", maxDistValues+1)), "more than 16384 values"},
	} {
		_, err := Parse("delay=1ms,jitter=1ms,dist=" + tt.path)
		var pe *ParseError
		if !errors.As(err, &pe) || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("dist=%s: %v, want a ParseError containing %q", tt.path, err, tt.want)
		}
	}
	if _, err := Parse("dist=cauchy"); err == nil || !strings.Contains(err.Error(), "or the path of a table") {
		t.Errorf("dist=cauchy: %v", err)
	}
}
