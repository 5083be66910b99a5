package link

import "math"

// Correlated fates.
//
// netem correlates a fate by mixing each fresh uniform draw with the last
// one (next = (1-ρ)·U + ρ·last) and comparing the mix with the
// probability: the mix is no longer uniform, so the rate it gives is not
// the rate asked for (loss 10% 25% loses less than 10%), and ρ is not the
// correlation of the outcomes. udplab instead makes each correlated fate
// a two-state Markov chain on the outcome itself, whose stationary mean is
// exactly p and whose lag-1 autocorrelation is exactly ρ:
//
//	P(yes | the previous packet's was yes) = p + ρ(1-p)
//	P(yes | the previous packet's was no)  = p(1-ρ)
//
// A run of yeses then lasts 1/((1-ρ)(1-p)) packets on average, where
// independent fates last 1/(1-p). The chain moves once for each packet
// that reaches the fate, in index order, and draws nothing of its own: it
// compares the same uniform as the uncorrelated fate with a threshold
// that depends on the previous outcome, so ρ = 0 gives exactly the fates
// of the uncorrelated spec.

// corrThreshold is the probability of a yes after prev, for a fate of
// mean p and lag-1 correlation rho.
func corrThreshold(p, rho float64, prev bool) float64 {
	t := p * (1 - rho)
	if prev {
		t += rho
	}
	return t
}

// corrFate decides one correlated fate from the uniform u and advances the
// chain's state prev.
func corrFate(u, p, rho float64, prev *bool) bool {
	yes := u < corrThreshold(p, rho, *prev)
	*prev = yes
	return yes
}

// corrJitter correlates a jitter draw x with the previous packet's, prev,
// as a first-order autoregression: ρ·prev + √(1-ρ²)·x. Successive draws
// then have lag-1 correlation exactly ρ (and ρ^k at lag k), and the mean
// (0) and standard deviation of the distribution are kept exactly; its
// shape is not: a sum of draws leans towards the normal, so uniform's
// bound of ±Jitter widens to ±(ρ+√(1-ρ²))·Jitter and Pareto's floor
// falls. netem instead mixes the uniform numbers behind the draw, which
// keeps the bound but neither the spread nor the correlation.
func corrJitter(x, rho, prev float64) float64 {
	return rho*prev + math.Sqrt(1-rho*rho)*x
}

// FourState is netem's 4-state Markov loss model ("loss state p13 p31 p32
// p23 p14", Salsano et al., "Definition and usage of correlated loss
// generators"). Its states are
//
//  1. a packet received in a gap period (the start state),
//  2. a packet received within a burst,
//  3. a packet lost within a burst,
//  4. an isolated loss in a gap period,
//
// and a packet is lost when the chain, moved once for the packet, lands in
// state 3 or 4. From 1 it goes to 3 with P13 and to 4 with P14; from 3 to
// 1 with P31 and to 2 with P32; from 2 to 3 with P23; from 4 always back
// to 1; otherwise it stays. A zero value (P13 and P14 both 0) is off.
type FourState struct {
	P13, P31, P32, P23, P14 float64
}

// The 4-state model's states, numbered from 0 so that a direction's zero
// value starts in state 1.
const (
	gapRx     uint8 = iota // 1: received in a gap
	burstRx                // 2: received within a burst
	burstLoss              // 3: lost within a burst
	gapLoss                // 4: isolated loss
)

// on reports whether the model can ever lose a packet.
func (m FourState) on() bool { return m.P13 > 0 || m.P14 > 0 }

// step moves the chain from state s on the uniform u, as the kernel's
// loss_4state does, and reports whether the packet is lost.
func (m FourState) step(s uint8, u float64) (uint8, bool) {
	switch s {
	case gapRx:
		switch {
		case u < m.P14:
			s = gapLoss
		case u < m.P14+m.P13:
			s = burstLoss
		}
	case burstRx:
		if u < m.P23 {
			s = burstLoss
		}
	case burstLoss:
		switch {
		case u < m.P32:
			s = burstRx
		case u < m.P32+m.P31:
			s = gapRx
		}
	case gapLoss:
		s = gapRx
	}
	return s, s == burstLoss || s == gapLoss
}

// stationary gives the model's long-run figures: the share of packets
// lost, and the mean length of a run of lost packets (a burst) and of
// received ones (a gap). It assumes the chain comes back to state 1: P31 >
// 0 when P13 > 0, and P23 > 0 when P32 > 0.
func (m FourState) stationary() (loss, burst, gap float64) {
	// Balance, with π1 = 1 before normalizing: π4 = P14·π1 (4 is entered
	// only from 1); π3·P31 = P13·π1 (what leaves 1 for 3 comes back from
	// 3, as what goes to 4 comes back from 4); π2·P23 = π3·P32.
	p1, p3 := 1.0, 0.0
	if m.P13 > 0 {
		p3 = m.P13 / m.P31
	}
	p4 := m.P14
	p2 := 0.0
	if m.P32 > 0 {
		p2 = p3 * m.P32 / m.P23
	}
	sum := p1 + p2 + p3 + p4
	p1, p2, p3, p4 = p1/sum, p2/sum, p3/sum, p4/sum
	// Bursts begin on entering 3 or 4 from a received state; gaps alternate
	// with them, so there are as many of each.
	runs := p1*(m.P13+m.P14) + p2*m.P23
	return p3 + p4, (p3 + p4) / runs, (p1 + p2) / runs
}
