package link

import (
	"math"
	"testing"
	"testing/synctest"
	"time"
)

// jitterFigures sends n packets gap apart through spec under synctest and
// returns the mean one-way delay, the RFC 3550 interarrival jitter (the
// smoothed mean of |change in transit time|, as iperf3 reports it) and how
// many packets arrived before an earlier one.
func jitterFigures(t *testing.T, spec string, n int, gap time.Duration) (mean, rfc3550 time.Duration, overtakes int) {
	synctest.Test(t, func(t *testing.T) {
		p := newPair(t, spec, nil)
		sent := make([]time.Time, n)
		for i := range sent {
			sent[i] = time.Now()
			p.send(t, i, 8)
			time.Sleep(gap)
		}
		settle()
		got := p.drain()
		if len(got) != n {
			t.Fatalf("received %d of %d", len(got), n)
		}
		var sum, j float64
		for i, pk := range got {
			transit := pk.at.Sub(sent[index(pk.b)])
			sum += float64(transit)
			if i > 0 {
				prev := got[i-1].at.Sub(sent[index(got[i-1].b)])
				j += (math.Abs(float64(transit-prev)) - j) / 16
				if index(pk.b) < index(got[i-1].b) {
					overtakes++
				}
			}
		}
		mean, rfc3550 = time.Duration(sum/float64(n)), time.Duration(j)
	})
	return mean, rfc3550, overtakes
}

// TestJitterOrderFigures measures what the two orders do to 20ms ± 5ms of
// uniform jitter at 1ms gaps (1250-byte packets at 10 Mbit/s), the
// figures the README gives. The draws are seeded and time is virtual, so
// the figures are the same on every run: keep raises the mean delay and
// lowers the jitter a receiver sees, never reordering; netem keeps the
// mean at 20ms and the jitter at what independent draws give, reordering.
func TestJitterOrderFigures(t *testing.T) {
	const n = 10000
	keepMean, keepJ, keepOver := jitterFigures(t, "delay=20ms,jitter=5ms", n, time.Millisecond)
	netemMean, netemJ, netemOver := jitterFigures(t, "delay=20ms,jitter=5ms,order=netem", n, time.Millisecond)
	t.Logf("keep:  mean %v, RFC 3550 jitter %v, %d overtakes", keepMean, keepJ, keepOver)
	t.Logf("netem: mean %v, RFC 3550 jitter %v, %d overtakes", netemMean, netemJ, netemOver)
	// Uniform ±5ms has sd 2.89ms: the mean of 10,000 draws is within
	// 4·2.89/√10000 ≈ 0.12ms of 20ms.
	if d := netemMean - 20*time.Millisecond; d.Abs() > 120*time.Microsecond {
		t.Errorf("netem order: mean delay %v, want 20ms ± 0.12ms", netemMean)
	}
	if keepOver != 0 || netemOver == 0 {
		t.Errorf("overtakes: keep %d, netem %d; want none and some", keepOver, netemOver)
	}
	if keepMean < netemMean+time.Millisecond || keepJ > netemJ/2 {
		t.Errorf("keep order: mean %v and jitter %v; want the mean a millisecond or more above netem's %v and the jitter under half its %v",
			keepMean, keepJ, netemMean, netemJ)
	}
}
