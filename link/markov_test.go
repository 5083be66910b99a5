package link

import (
	"bufio"
	"bytes"
	"encoding/json"
	"math"
	"testing"
	"testing/synctest"
	"time"
)

// The statistical tests here run fixed seeds, so they pass or fail the
// same way every time; their tolerances are 4 standard errors computed
// from the model itself: for a Markov chain, the asymptotic (co)variance
// of its counts, autocorrelation included (chain.asymCov), never a band
// chosen by eye.

// chain is a finite Markov chain: chain[i][j] is the probability of moving
// from state i to state j.
type chain [][]float64

// stationary solves π·P = π, Σπ = 1 by Gaussian elimination.
func (c chain) stationary() []float64 {
	k := len(c)
	// Rows: (Pᵀ - I)·π = 0, with the last equation replaced by Σπ = 1.
	a := make([][]float64, k)
	for i := range a {
		a[i] = make([]float64, k+1)
		for j := range k {
			a[i][j] = c[j][i]
			if i == j {
				a[i][j]--
			}
		}
	}
	for j := range k {
		a[k-1][j] = 1
	}
	a[k-1][k] = 1
	for col := range k {
		piv := col
		for r := col + 1; r < k; r++ {
			if math.Abs(a[r][col]) > math.Abs(a[piv][col]) {
				piv = r
			}
		}
		a[col], a[piv] = a[piv], a[col]
		for r := range k {
			if r != col && a[r][col] != 0 {
				f := a[r][col] / a[col][col]
				for j := col; j <= k; j++ {
					a[r][j] -= f * a[col][j]
				}
			}
		}
	}
	pi := make([]float64, k)
	for i := range k {
		pi[i] = a[i][k] / a[i][i]
	}
	return pi
}

// mean is the stationary mean of f.
func mean(pi, f []float64) float64 {
	var m float64
	for i := range pi {
		m += pi[i] * f[i]
	}
	return m
}

// asymCov is the asymptotic covariance of the sums of f and g along the
// chain, per step: n·asymCov is the covariance of Σf(X_t) and Σg(X_t) over
// n steps, for large n. It is Cov(f, g) under π plus every lag's
// cross-covariance, both ways: Σ_{k≥1} Cov(f(X_0), g(X_k)) + Cov(g(X_0), f(X_k)).
func (c chain) asymCov(pi, f, g []float64) float64 {
	k := len(c)
	fb, gb := make([]float64, k), make([]float64, k)
	mf, mg := mean(pi, f), mean(pi, g)
	var cov float64
	for i := range k {
		fb[i], gb[i] = f[i]-mf, g[i]-mg
		cov += pi[i] * fb[i] * gb[i]
	}
	hf, hg := append([]float64(nil), fb...), append([]float64(nil), gb...)
	for range 1_000_000 {
		hf, hg = c.apply(hf), c.apply(hg) // E[f̄(X_k) | X_0 = i]
		var term, size float64
		for i := range k {
			term += pi[i] * (fb[i]*hg[i] + gb[i]*hf[i])
			size = max(size, math.Abs(hf[i]), math.Abs(hg[i]))
		}
		cov += term
		if size < 1e-15 {
			break
		}
	}
	return cov
}

// apply returns P·h: the expectation of h one step on from each state.
func (c chain) apply(h []float64) []float64 {
	out := make([]float64, len(h))
	for i, row := range c {
		for j, p := range row {
			out[i] += p * h[j]
		}
	}
	return out
}

// pairs is the chain of consecutive pairs (X_t, X_{t+1}), state i·k+j, so
// that counts over transitions (a loss after a loss, a burst's start) are
// sums of a function of its state.
func (c chain) pairs() chain {
	k := len(c)
	p := make(chain, k*k)
	for i := range k {
		for j := range k {
			row := make([]float64, k*k)
			for l := range k {
				row[j*k+l] = c[j][l]
			}
			p[i*k+j] = row
		}
	}
	return p
}

// ratioSD is the standard deviation, by the delta method, of the ratio of
// the sums of f and g over n steps of the chain.
func (c chain) ratioSD(pi, f, g []float64, n int) (ratio, sd float64) {
	mf, mg := mean(pi, f), mean(pi, g)
	r := mf / mg
	v := (c.asymCov(pi, f, f) - 2*r*c.asymCov(pi, f, g) + r*r*c.asymCov(pi, g, g)) / (mg * mg)
	return r, math.Sqrt(v / float64(n))
}

// within4SE checks got against want with a tolerance of 4 standard errors.
func within4SE(t *testing.T, what string, got, want, se float64) {
	t.Helper()
	if math.Abs(got-want) > 4*se {
		t.Errorf("%s = %.5f, want %.5f ± %.5f (4 standard errors)", what, got, want, 4*se)
	} else {
		t.Logf("%s = %.5f, want %.5f ± %.5f", what, got, want, 4*se)
	}
}

// traceLine is one packet's fate in a trace.
type traceLine struct {
	Fate      string `json:"fate"`
	Cause     string `json:"cause"`
	Reordered bool   `json:"reordered"`
	DelayUS   int64  `json:"delay_us"`
}

// traceOf sends n packets through spec's up direction, inside a synctest
// bubble, and returns their fates in index order.
func traceOf(t *testing.T, spec string, n int) []traceLine {
	t.Helper()
	var out []traceLine
	synctest.Test(t, func(t *testing.T) {
		var tr bytes.Buffer
		p := newPair(t, spec, &Options{Trace: &tr})
		p.sendN(t, n, 8)
		settle()
		p.link.Close()
		sc := bufio.NewScanner(&tr)
		for sc.Scan() {
			var l traceLine
			if err := json.Unmarshal(sc.Bytes(), &l); err != nil {
				t.Fatal(err)
			}
			out = append(out, l)
		}
	})
	if len(out) != n {
		t.Fatalf("%s: trace has %d lines, want %d", spec, len(out), n)
	}
	return out
}

// corrChain is the two-state chain of a correlated fate (state 1: yes).
func corrChain(p, rho float64) chain {
	yes := corrThreshold(p, rho, true)
	no := corrThreshold(p, rho, false)
	return chain{{1 - no, no}, {1 - yes, yes}}
}

// TestCorrelatedFates: loss, dup, corrupt and reorder with a correlation
// keep their mean p and have lag-1 autocorrelation ρ: the share of yeses
// and the lag-1 autocorrelation of the outcomes, over 60,000 packets, are
// within 4 standard errors of p and ρ, the errors computed from the
// fate's own Markov chain (a correlated series varies more than a
// Bernoulli one: the variance of the mean is p(1-p)(1+ρ)/(1-ρ)/n).
func TestCorrelatedFates(t *testing.T) {
	const n = 60_000
	const p, rho = 0.1, 0.4
	c := corrChain(p, rho)
	pi := c.stationary()
	pc := c.pairs()
	ppi := pc.stationary()
	one, both := []float64{0, 1}, []float64{0, 0, 0, 1} // yes now; yes at t and t+1
	last := []float64{0, 1, 0, 1}                       // in the pair chain: yes at t+1
	for _, tt := range []struct {
		spec string
		yes  func(traceLine) bool
	}{
		{"loss=10%/40%", func(l traceLine) bool { return l.Cause == CauseLoss }},
		{"dup=10%/40%", func(l traceLine) bool { return l.Fate == fateDuplicated }},
		{"corrupt=10%/40%", func(l traceLine) bool { return l.Fate == fateCorrupted }},
		{"delay=1ms,reorder=10%/40%", func(l traceLine) bool { return l.Reordered }},
	} {
		lines := traceOf(t, tt.spec, n)
		var yes, pairs int
		for i, l := range lines {
			if tt.yes(l) {
				yes++
				if i > 0 && tt.yes(lines[i-1]) {
					pairs++
				}
			}
		}
		m := float64(yes) / n
		within4SE(t, tt.spec+": mean", m, p, math.Sqrt(c.asymCov(pi, one, one)/n))
		// The lag-1 autocorrelation r = (c - m²)/(m - m²), with c the
		// share of yes-yes pairs: its error by the delta method from the
		// joint asymptotic covariance of the pair and yes counts.
		cp := float64(pairs) / (n - 1)
		r := (cp - m*m) / (m - m*m)
		mw, cw := mean(ppi, last), mean(ppi, both)
		dc := 1 / (mw - mw*mw)
		dm := (-2*mw*(mw-mw*mw) - (cw-mw*mw)*(1-2*mw)) / ((mw - mw*mw) * (mw - mw*mw))
		v := dc*dc*pc.asymCov(ppi, both, both) + 2*dc*dm*pc.asymCov(ppi, both, last) + dm*dm*pc.asymCov(ppi, last, last)
		within4SE(t, tt.spec+": lag-1 autocorrelation", r, rho, math.Sqrt(v/n))
	}
}

// fourStateChain is the 4-state model as a chain, states numbered as
// FourState's constants, with the lost states marked.
func fourStateChain(m FourState) (chain, []float64) {
	c := chain{
		gapRx:     {gapRx: 1 - m.P13 - m.P14, burstLoss: m.P13, gapLoss: m.P14},
		burstRx:   {burstRx: 1 - m.P23, burstLoss: m.P23},
		burstLoss: {gapRx: m.P31, burstRx: m.P32, burstLoss: 1 - m.P31 - m.P32},
		gapLoss:   {gapRx: 1},
	}
	for i := range c {
		c[i] = append(c[i], make([]float64, 4-len(c[i]))...)
	}
	return c, []float64{0, 0, 1, 1}
}

// TestFourState: the 4-state model loses its stationary share of packets,
// in bursts and gaps of its stationary mean lengths, within 4 standard
// errors computed from the chain; and FourState.stationary agrees with
// the chain solved numerically.
func TestFourState(t *testing.T) {
	const n = 200_000
	for _, spec := range []string{"loss-state=5%/30%/10%/40%/1%", "loss-state=2%/50%", "loss-state=0%/100%/0%/100%/3%"} {
		s, err := Parse(spec)
		if err != nil {
			t.Fatal(err)
		}
		m := s.Up.State
		c, lost := fourStateChain(m)
		pi := c.stationary()
		loss, burst, gap := m.stationary()
		if l := mean(pi, lost); math.Abs(l-loss) > 1e-12 {
			t.Fatalf("%s: stationary loss %v, the chain solved gives %v", spec, loss, l)
		}
		// Over consecutive pairs: lost now, received now, and a burst's
		// start (received, then lost); gaps and bursts alternate.
		pc := c.pairs()
		ppi := pc.stationary()
		lostNow, rxNow, starts := make([]float64, 16), make([]float64, 16), make([]float64, 16)
		for i := range 4 {
			for j := range 4 {
				lostNow[i*4+j], rxNow[i*4+j] = lost[j], 1-lost[j]
				if lost[i] == 0 && lost[j] == 1 {
					starts[i*4+j] = 1
				}
			}
		}
		wantBurst, burstSD := pc.ratioSD(ppi, lostNow, starts, n)
		wantGap, gapSD := pc.ratioSD(ppi, rxNow, starts, n)
		if math.Abs(wantBurst-burst) > 1e-9 || math.Abs(wantGap-gap) > 1e-9 {
			t.Fatalf("%s: stationary burst %v and gap %v; the chain gives %v and %v", spec, burst, gap, wantBurst, wantGap)
		}

		lines := traceOf(t, spec, n)
		var nLost, nStarts int
		for i, l := range lines {
			if l.Cause == CauseLoss {
				nLost++
				if i == 0 || lines[i-1].Cause != CauseLoss {
					nStarts++
				}
			}
		}
		within4SE(t, spec+": loss", float64(nLost)/n, loss, math.Sqrt(c.asymCov(pi, lost, lost)/n))
		within4SE(t, spec+": mean burst", float64(nLost)/float64(nStarts), burst, burstSD)
		within4SE(t, spec+": mean gap", float64(n-nLost)/float64(nStarts), gap, gapSD)
	}
}

// TestGEPAlone: burst=P alone is netem's "gemodel p": R = 1-P, and with
// 1-h = 100% the chain is a correlated loss of mean P/(P+R) = P.
func TestGEPAlone(t *testing.T) {
	s, err := Parse("burst=5%")
	if err != nil || s.Up.Burst != (GE{P: 0.05, R: 0.95, LossBad: 1}) {
		t.Fatalf("Parse(burst=5%%) = %+v, %v; want P 5%%, R 95%%, 1-h 100%%", s.Up.Burst, err)
	}
	const n = 100_000
	// R = 1-P makes the state independent from packet to packet: a
	// Bernoulli loss of P, whose count has the binomial's variance.
	lines := traceOf(t, "burst=5%", n)
	lost := 0
	for _, l := range lines {
		if l.Cause == CauseLoss {
			lost++
		}
	}
	within4SE(t, "burst=5% loss", float64(lost)/n, 0.05, math.Sqrt(0.05*0.95/n))
}

// TestChainHelpers checks the analytic helpers against closed forms: a
// correlated fate's stationary mean is p and its mean's asymptotic
// variance p(1-p)(1+ρ)/(1-ρ).
func TestChainHelpers(t *testing.T) {
	for _, rho := range []float64{0, 0.25, 0.9} {
		c := corrChain(0.1, rho)
		pi := c.stationary()
		f := []float64{0, 1}
		if m, v := mean(pi, f), c.asymCov(pi, f, f); math.Abs(m-0.1) > 1e-12 || math.Abs(v-0.09*(1+rho)/(1-rho)) > 1e-9 {
			t.Errorf("ρ=%v: mean %v, asymptotic variance %v; want 0.1 and %v", rho, m, v, 0.09*(1+rho)/(1-rho))
		}
	}
}

// TestCorrelatedJitter: jitter=J/ρ keeps the distribution's mean and
// standard deviation and gives successive delays lag-1 correlation ρ.
// The tolerances are 4 standard errors of a first-order autoregression
// with independent innovations: σ·√((1+ρ)/((1-ρ)n)) for the mean,
// √((1-ρ²)/n) for the lag-1 autocorrelation (Bartlett) and, for normal
// draws, σ·√((1+ρ²)/(2n(1-ρ²))) for the standard deviation.
func TestCorrelatedJitter(t *testing.T) {
	const n = 50_000
	const rho = 0.6
	for _, tt := range []struct {
		dist  string
		sd    float64 // of the unit draw
		sdTol bool    // whether the standard deviation's error is the normal's
	}{{"uniform", 1 / math.Sqrt(3), false}, {"normal", 1, true}} {
		spec := "delay=100ms,jitter=10ms/60%,order=netem,dist=" + tt.dist
		var xs []float64
		for _, d := range traceDelays(t, spec, n) {
			xs = append(xs, float64(d-100*time.Millisecond)/float64(10*time.Millisecond)) // in units of the jitter
		}
		var sum, sq, lag float64
		for i, x := range xs {
			sum += x
			sq += x * x
			if i > 0 {
				lag += x * xs[i-1]
			}
		}
		m := sum / n
		v := sq/n - m*m
		r1 := (lag/(n-1) - m*m) / v
		within4SE(t, spec+": mean", m, 0, tt.sd*math.Sqrt((1+rho)/((1-rho)*n)))
		within4SE(t, spec+": lag-1 autocorrelation", r1, rho, math.Sqrt((1-rho*rho)/n))
		if tt.sdTol {
			within4SE(t, spec+": standard deviation", math.Sqrt(v), tt.sd, tt.sd*math.Sqrt((1+rho*rho)/(2*n*(1-rho*rho))))
		}
	}
}

// traceDelays sends n packets at one instant through spec's up direction,
// inside a synctest bubble, and returns each one's delay from the trace,
// in index order: with order=netem each is its own draw.
func traceDelays(t *testing.T, spec string, n int) []time.Duration {
	t.Helper()
	out := make([]time.Duration, n)
	for i, l := range traceOf(t, spec, n) {
		out[i] = time.Duration(l.DelayUS) * time.Microsecond
	}
	return out
}
