package link

import (
	"math"
	"testing"
	"testing/synctest"
	"time"
)

// arrivals returns when each received packet arrived, after start.
func arrivals(p *pair, start time.Time) []time.Duration {
	var out []time.Duration
	for _, pk := range p.drain() {
		out = append(out, pk.at.Sub(start))
	}
	return out
}

func sameDurations(a, b []time.Duration) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// TestSlotBursts: under synctest, packets leave exactly at slot
// boundaries. With slot=10ms and no bound, everything due leaves when the
// slot opens, 10ms after the first packet is due; a packet due after that
// finds the link idle and waits a fresh slot from its own time, as netem's
// get_slot_next from time_to_send.
func TestSlotBursts(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		p := newPair(t, "slot=10ms", nil)
		start := time.Now()
		p.sendN(t, 5, 100)
		time.Sleep(12 * time.Millisecond)
		p.send(t, 5, 100)
		settle()
		ms := time.Millisecond
		want := []time.Duration{10 * ms, 10 * ms, 10 * ms, 10 * ms, 10 * ms, 22 * ms}
		if got := arrivals(p, start); !sameDurations(got, want) {
			t.Errorf("arrivals %v, want %v", got, want)
		}
	})
}

// TestSlotPacketsAndBytes: a slot closes once it has sent slot-packets
// packets, or slot-bytes bytes counting IP/UDP headers (the packet that
// crosses the bound still goes), and the next opens a slot length later.
func TestSlotPacketsAndBytes(t *testing.T) {
	ms := time.Millisecond
	for _, tt := range []struct {
		spec string
		want []time.Duration
	}{
		{"slot=10ms,slot-packets=2", []time.Duration{10 * ms, 10 * ms, 20 * ms, 20 * ms, 30 * ms}},
		// 572+28 = 600 wire bytes each: 1000 bytes let 2 go (400 left, then -200).
		{"slot=10ms,slot-bytes=1000", []time.Duration{10 * ms, 10 * ms, 20 * ms, 20 * ms, 30 * ms}},
		{"slot=10ms,slot-bytes=1200", []time.Duration{10 * ms, 10 * ms, 20 * ms, 20 * ms, 30 * ms}},
		{"slot=10ms,slot-bytes=1201", []time.Duration{10 * ms, 10 * ms, 10 * ms, 20 * ms, 20 * ms}},
		{"delay=3ms,slot=10ms,slot-packets=4", []time.Duration{13 * ms, 13 * ms, 13 * ms, 13 * ms, 23 * ms}},
	} {
		synctest.Test(t, func(t *testing.T) {
			p := newPair(t, tt.spec, nil)
			start := time.Now()
			p.sendN(t, 5, 572)
			settle()
			if got := arrivals(p, start); !sameDurations(got, tt.want) {
				t.Errorf("%s: arrivals %v, want %v", tt.spec, got, tt.want)
			}
		})
	}
}

// TestSlotLengths: with slot=5ms/15ms and one packet a slot, the gaps
// between departures are the slots' own draws, uniform on [5ms, 15ms):
// every gap within it, and their mean 10ms within 4 standard errors
// (σ = 10ms/√12). The same seed gives the same departures.
func TestSlotLengths(t *testing.T) {
	const n = 2000
	run := func() []time.Duration {
		var got []time.Duration
		synctest.Test(t, func(t *testing.T) {
			p := newPair(t, "slot=5ms/15ms,slot-packets=1", nil)
			start := time.Now()
			p.sendN(t, n, 8)
			time.Sleep(time.Hour)
			synctest.Wait()
			got = arrivals(p, start)
		})
		return got
	}
	a := run()
	if len(a) != n {
		t.Fatalf("%d arrivals, want %d", len(a), n)
	}
	var sum float64
	for i := 1; i < n; i++ {
		gap := a[i] - a[i-1]
		if gap < 5*time.Millisecond || gap >= 15*time.Millisecond {
			t.Fatalf("gap %d is %v, want within [5ms, 15ms)", i, gap)
		}
		sum += float64(gap)
	}
	sigma := float64(10*time.Millisecond) / math.Sqrt(12)
	within4SE(t, "mean slot (ms)", sum/(n-1)/1e6, 10, sigma/math.Sqrt(n-1)/1e6)
	if b := run(); !sameDurations(a, b) {
		t.Error("the same seed gave different slots")
	}
}
