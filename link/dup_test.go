package link

import (
	"math"
	"testing"
	"testing/synctest"
	"time"
)

// TestDuplicateOwnDelay: a duplicate leaves at its own delay draw, as
// netem's clone does. With dup=100% and uniform jitter of ±20ms under
// order=netem, each original keeps the delay its trace records (its own
// draw, as before duplicates had their own), and the copies' delays have
// the jitter's mean and spread and no correlation with their originals',
// within 4 standard errors: σ/√n for the mean (σ = 20ms/√3), 1/√n for
// the correlation of independent draws.
func TestDuplicateOwnDelay(t *testing.T) {
	const n = 20_000
	const spec = "delay=50ms,jitter=20ms,order=netem,dup=100%"
	orig := traceDelays(t, spec, n)
	var copies []time.Duration
	synctest.Test(t, func(t *testing.T) {
		p := newPair(t, spec, nil)
		start := time.Now()
		p.sendN(t, n, 8)
		settle()
		seen := make([]bool, n)
		copies = make([]time.Duration, n)
		for _, pk := range p.drain() {
			i, d := index(pk.b), pk.at.Sub(start).Truncate(time.Microsecond) // as the trace writes it
			if !seen[i] && d == orig[i] {
				seen[i] = true // the original, at the delay its trace records
				continue
			}
			copies[i] = d
		}
		for i, ok := range seen {
			if !ok {
				t.Fatalf("packet %d: no copy arrived at its recorded delay %v", i, orig[i])
			}
		}
	})
	sigma := float64(20*time.Millisecond) / math.Sqrt(3)
	var sum, sxy, sxx, syy float64
	for i := range n {
		x, y := float64(orig[i]-50*time.Millisecond), float64(copies[i]-50*time.Millisecond)
		sum += y
		sxy += x * y
		sxx += x * x
		syy += y * y
	}
	within4SE(t, "copies' mean jitter (ms)", sum/n/1e6, 0, sigma/math.Sqrt(n)/1e6)
	within4SE(t, "correlation of a copy's delay with its original's", sxy/math.Sqrt(sxx*syy), 0, 1/math.Sqrt(n))
	// The uniform's fourth moment is 9σ⁴/5, so the sample variance has
	// variance (4/5)σ⁴/n and the standard deviation σ·√(0.8/n)/2.
	m := sum / n
	within4SE(t, "copies' jitter standard deviation (ms)", math.Sqrt(syy/n-m*m)/1e6, sigma/1e6, sigma*math.Sqrt(0.8/n)/2/1e6)
	if same := func() int {
		k := 0
		for i := range n {
			if copies[i] == orig[i] {
				k++
			}
		}
		return k
	}(); same > n/100 {
		t.Errorf("%d of %d copies left with their original", same, n)
	}
}

// TestDuplicateKeepOrder: under order=keep a copy never leaves before its
// original, and nothing overtakes either.
func TestDuplicateKeepOrder(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		p := newPair(t, "delay=20ms,jitter=10ms,dup=50%", nil)
		for i := range 2000 {
			p.send(t, i, 8)
			time.Sleep(time.Millisecond)
		}
		settle()
		got := p.drain()
		st := p.link.Stats(Up)
		if uint64(len(got)) != 2000+st.Duplicated {
			t.Fatalf("received %d, want 2000 + %d copies", len(got), st.Duplicated)
		}
		for i := 1; i < len(got); i++ {
			if index(got[i].b) < index(got[i-1].b) {
				t.Fatalf("arrival %d is packet %d after packet %d", i, index(got[i].b), index(got[i-1].b))
			}
		}
	})
}
