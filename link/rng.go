package link

import "math"

// rng is a SplitMix64 stream. Each packet gets its own stream, derived from
// the seed, the direction and the packet's index alone, so a packet's fate
// does not depend on timing or on what other packets drew.
type rng struct{ s uint64 }

func mix64(z uint64) uint64 {
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9
	z = (z ^ (z >> 27)) * 0x94d049bb133111eb
	return z ^ (z >> 31)
}

// packetRNG returns the stream for packet n of direction dir. The index is
// mixed before use, so neighbouring packets' streams do not overlap.
func packetRNG(seed, dir, n uint64) rng {
	return rng{mix64(mix64(seed^(dir+1)*0x9e3779b97f4a7c15) + mix64(n))}
}

// modelRNG returns a second stream for packet n of direction dir, for the
// models added after the first stream's draws were fixed (the 4-state
// loss model, then the duplicate's own jitter, two draws): drawing from it
// leaves every fate of the first stream, and so every older spec's fates,
// as they were.
func modelRNG(seed, dir, n uint64) rng { return packetRNG(seed, dir+2, n) }

func (r *rng) next() uint64 {
	r.s += 0x9e3779b97f4a7c15
	return mix64(r.s)
}

// float returns a uniform value in [0, 1).
func (r *rng) float() float64 { return float64(r.next()>>11) / (1 << 53) }

// jitter returns the jitter offset for one packet, for any Dist but
// Table (see jitterFrom).
func (r *rng) jitter(j float64, d Dist) float64 {
	u1, u2 := r.float(), r.float() // always two draws: the stream stays aligned
	switch d {
	case Normal:
		return j * math.Sqrt(-2*math.Log(1-u1)) * math.Cos(2*math.Pi*u2)
	case Pareto:
		// Pareto with α = 3 and scale xm has mean 1.5·xm and standard
		// deviation xm·√3/2: xm = 2/√3 and a shift of √3 give mean 0 and
		// standard deviation 1, as netem's table has.
		return j * (2/math.Sqrt(3)/math.Cbrt(1-u1) - math.Sqrt(3))
	case ParetoNormal:
		return j * paretoNormal(u1)
	}
	return j * (2*u1 - 1)
}

// jitterFrom returns the jitter offset for one packet under p, reading
// p's table when it has one.
func (r *rng) jitterFrom(j float64, p *Params) float64 {
	if p.Dist != Table {
		return r.jitter(j, p.Dist)
	}
	u1 := r.float()
	r.float() // two draws, as jitter's
	return j * p.DistTable.draw(u1)
}
