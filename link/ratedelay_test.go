package link

import (
	"testing"
	"testing/synctest"
	"time"
)

// TestRateDelayAsNetem: with a rate and a constant delay, udplab's order
// (wait for the rate, serialize, then the delay) gives exactly netem's
// times to send, max(previous time to send, arrival + delay) +
// serialization (netem_enqueue subtracts the previous packet's remaining
// wait from the delay): the previous packet's time to send already holds
// the delay, so the two are one formula. Packets of varying size arrive
// at varying gaps, some into a queue and some to an idle link.
func TestRateDelayAsNetem(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const delay = 20 * time.Millisecond
		p := newPair(t, "rate=1mbit,delay=20ms", nil)
		s, _ := Parse("rate=1mbit")
		start := time.Now()
		var want []time.Duration
		var last time.Duration // netem's previous time to send, from start
		for i := range 200 {
			size := 4 + i*37%1400 // send writes at least 4 bytes
			now := time.Since(start)
			tx := time.Duration(float64(wireBytes(&s.Up, size, p.dst.addr)*8) / float64(s.Up.Rate) * float64(time.Second))
			last = max(last, now+delay) + tx
			want = append(want, last)
			p.send(t, i, size)
			time.Sleep(time.Duration(i*7%13) * time.Millisecond)
		}
		settle()
		got := arrivals(p, start)
		if !sameDurations(got, want) {
			t.Errorf("arrivals differ from netem's times to send:\n got %v\nwant %v", got, want)
		}
	})
}
