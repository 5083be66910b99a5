package link

import (
	"bufio"
	"bytes"
	"encoding/json"
	"math"
	"net"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/udplab/udplab/internal/leakcheck"
)

// TestMain turns precise waits off: most tests run under synctest, where a
// plain timer is exact and a spin would never end (see preciseWaits).
// TestNeverEarly turns them back on for itself.
func TestMain(m *testing.M) {
	preciseWaits.Store(false)
	leakcheck.VerifyTestMain(m)
}

// pair is a sender wrapped by a link direction and a receiver, in memory.
type pair struct {
	link     *Link
	src, dst *memConn
	out      net.PacketConn
}

func newPair(t *testing.T, spec string, opts *Options) *pair {
	t.Helper()
	l := newLink(t, spec, opts)
	n := newMemNet()
	p := &pair{link: l, src: n.listen("client"), dst: n.listen("server")}
	p.out = l.Wrap(p.src, Up)
	t.Cleanup(func() { p.out.Close(); p.dst.Close() })
	return p
}

// newLink starts a link from spec, closed when the test ends.
func newLink(t *testing.T, spec string, opts *Options) *Link {
	t.Helper()
	s, err := Parse(spec)
	if err != nil {
		t.Fatal(err)
	}
	l, err := New(s, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	return l
}

// sendN writes packets 0 to n-1.
func (p *pair) sendN(t *testing.T, n, size int) {
	t.Helper()
	for i := range n {
		p.send(t, i, size)
	}
}

// send writes one packet whose first 4 bytes are i.
func (p *pair) send(t *testing.T, i, size int) {
	t.Helper()
	b := make([]byte, max(size, 4))
	b[0], b[1], b[2], b[3] = byte(i>>24), byte(i>>16), byte(i>>8), byte(i)
	if _, err := p.out.WriteTo(b, p.dst.addr); err != nil {
		t.Fatal(err)
	}
}

func (p *pair) drain() []memPacket {
	var got []memPacket
	for {
		pk, ok := p.dst.recv()
		if !ok {
			return got
		}
		got = append(got, pk)
	}
}

// settle lets every packet in flight reach its receiver: inside a synctest
// bubble, sleeping advances virtual time past any delay, and Wait returns
// once every goroutine of the link is idle again.
func settle() {
	time.Sleep(time.Minute)
	synctest.Wait()
}

func index(b []byte) int { return int(b[0])<<24 | int(b[1])<<16 | int(b[2])<<8 | int(b[3]) }

// within3Sigma checks a binomial count against its expectation.
func within3Sigma(t *testing.T, what string, got uint64, n int, p float64) {
	t.Helper()
	mean := float64(n) * p
	sigma := math.Sqrt(float64(n) * p * (1 - p))
	if math.Abs(float64(got)-mean) > 3*sigma {
		t.Errorf("%s: %d of %d, want %.0f ± %.0f (3σ)", what, got, n, mean, 3*sigma)
	}
}

func TestPerfectLinkPassesThrough(t *testing.T) {
	p := newPair(t, "", nil)
	p.sendN(t, 100, 64)
	got := p.drain()
	if len(got) != 100 {
		t.Fatalf("delivered %d of 100", len(got))
	}
	for i, pk := range got {
		if index(pk.b) != i {
			t.Fatalf("packet %d arrived as %d", index(pk.b), i)
		}
	}
	if st := p.link.Stats(Up); st.Offered != 100 || st.Delivered != 100 || st.DeliveredBytes != 6400 {
		t.Errorf("stats = %+v", st)
	}
}

func TestLossRate(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const n = 100_000
		for _, seed := range []string{"1", "2", "3"} {
			p := newPair(t, "loss=10%,seed="+seed, nil)
			p.sendN(t, n, 8)
			settle()
			st := p.link.Stats(Up)
			within3Sigma(t, "lost (seed "+seed+")", st.Lost, n, 0.1)
			if st.Lost+st.Delivered != n || uint64(len(p.drain())) != st.Delivered {
				t.Errorf("lost %d + delivered %d != %d sent", st.Lost, st.Delivered, n)
			}
		}
	})
}

// TestBurstLength: with 1-h = 1, a Gilbert-Elliott burst lasts 1/r packets
// on average (geometric), here 1/0.25 = 4.
func TestBurstLength(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const n = 100_000
		p := newPair(t, "burst=2%/25%", nil)
		p.sendN(t, n, 8)
		settle()
		st := p.link.Stats(Up)
		var bursts, lost uint64
		for length, count := range st.Bursts {
			bursts += count
			lost += length * count
		}
		if lost != st.Lost {
			t.Fatalf("burst lengths add up to %d lost, counters say %d", lost, st.Lost)
		}
		if mean := float64(lost) / float64(bursts); math.Abs(mean-4) > 0.4 {
			t.Errorf("mean burst length = %.2f over %d bursts, want 4 ± 10%%", mean, bursts)
		}
		// Stationary loss rate of the chain: p/(p+r).
		within3Sigma(t, "burst-lost", st.Lost, n, 0.02/0.27)
	})
}

func TestDuplicateAndCorrupt(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const n = 50_000
		p := newPair(t, "dup=2%,corrupt=3%", nil)
		p.sendN(t, n, 16)
		settle()
		st := p.link.Stats(Up)
		within3Sigma(t, "duplicated", st.Duplicated, n, 0.02)
		within3Sigma(t, "corrupted", st.Corrupted, n, 0.03)
		got := p.drain()
		if uint64(len(got)) != n+st.Duplicated {
			t.Fatalf("received %d, want %d sent + %d duplicates", len(got), n, st.Duplicated)
		}
		flipped := 0
		for _, pk := range got {
			var bits int
			for i, c := range pk.b[4:] {
				_ = i
				bits += popcount(c)
			}
			// Bytes 4..15 were zero; a flip there shows as one set bit.
			if bits > 1 {
				t.Fatalf("packet has %d flipped bits, want at most 1", bits)
			}
			flipped += bits
		}
		if flipped == 0 {
			t.Error("no corruption visible in the payloads")
		}
	})
}

func popcount(b byte) int {
	n := 0
	for ; b != 0; b &= b - 1 {
		n++
	}
	return n
}

func TestMTU(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		p := newPair(t, "mtu=100", nil)
		p.sendN(t, 1, 100)
		p.sendN(t, 1, 101)
		settle()
		st := p.link.Stats(Up)
		if st.MTUDrops != 1 || st.Delivered != 1 {
			t.Errorf("stats = %+v, want the 101-byte datagram dropped", st)
		}
	})
}

// TestDelayIsExact runs under synctest, where virtual time is exact: a
// packet leaves at its due time, never before, and its lateness is 0.
func TestDelayIsExact(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		p := newPair(t, "delay=20ms", nil)
		start := time.Now()
		p.sendN(t, 3, 8)
		time.Sleep(20*time.Millisecond - time.Nanosecond)
		synctest.Wait()
		if got := p.drain(); len(got) != 0 {
			t.Fatalf("%d packets left before their time", len(got))
		}
		time.Sleep(time.Nanosecond)
		synctest.Wait()
		got := p.drain()
		if len(got) != 3 {
			t.Fatalf("%d packets left at their time, want 3", len(got))
		}
		for _, pk := range got {
			if d := pk.at.Sub(start); d != 20*time.Millisecond {
				t.Errorf("packet %d took %v, want exactly 20ms", index(pk.b), d)
			}
		}
		if l := p.link.Stats(Up).Lateness; l != (Lateness{Count: 3}) {
			t.Errorf("lateness = %+v, want 3 packets timed, none late", l)
		}
		if l := p.link.IntervalLateness(Up); l != (Lateness{Count: 3}) {
			t.Errorf("interval lateness = %+v, want the same 3 packets", l)
		}
		if l := p.link.IntervalLateness(Up); l != (Lateness{}) {
			t.Errorf("the next interval's lateness = %+v, want nothing timed", l)
		}
		if l := p.link.Stats(Up).Lateness; l.Count != 3 {
			t.Errorf("after two intervals Stats' lateness = %+v, want the 3 since the start", l)
		}
	})
}

// TestNeverEarly runs on the real clock with precise waits, as udplab
// runs: however busy the machine, no packet may leave before its delay,
// and every delayed packet is timed. Load can only make packets later, so
// this holds on any machine; how much later is what Lateness reports.
func TestNeverEarly(t *testing.T) {
	preciseWaits.Store(true)
	defer preciseWaits.Store(false)
	const delay = 300 * time.Microsecond
	p := newPair(t, "delay=300us", nil)
	sent := make([]time.Time, 50)
	for i := range sent {
		sent[i] = time.Now()
		p.send(t, i, 8)
		time.Sleep(time.Duration(i%7) * 100 * time.Microsecond) // spacings across the timer's grain
	}
	var got []memPacket
	for len(got) < len(sent) {
		select {
		case pk := <-p.dst.in:
			got = append(got, pk)
		case <-time.After(10 * time.Second):
			t.Fatalf("received %d of %d", len(got), len(sent))
		}
	}
	for _, pk := range got {
		if d := pk.at.Sub(sent[index(pk.b)]); d < delay {
			t.Errorf("packet %d arrived %v after it was sent, before its %v delay", index(pk.b), d, delay)
		}
	}
	if l := p.link.Stats(Up).Lateness; l.Count != uint64(len(sent)) || l.P50 > l.P99 || l.P99 > l.Max {
		t.Errorf("lateness = %+v, want %d packets timed with p50 ≤ p99 ≤ max", l, len(sent))
	}
}

// TestJitterDistributions: every distribution draws offsets of mean 0 and
// the standard deviation its doc gives, and Pareto's never fall below
// -1/√3 of the jitter. The draws are seeded, so the tolerances (4 standard
// errors) hold on every run.
func TestJitterDistributions(t *testing.T) {
	const n = 200000
	for _, tt := range []struct {
		d        Dist
		sd, low  float64
		heavyTop bool
	}{
		{Uniform, 1 / math.Sqrt(3), -1, false},
		{Normal, 1, math.Inf(-1), false},
		{Pareto, 1, -1 / math.Sqrt(3), true},
	} {
		var sum, sq, lo, hi float64
		for i := range uint64(n) {
			r := packetRNG(DefaultSeed, 0, i)
			x := r.jitter(1, tt.d)
			sum += x
			sq += x * x
			lo, hi = min(lo, x), max(hi, x)
		}
		mean := sum / n
		sd := math.Sqrt(sq/n - mean*mean)
		// Pareto with α = 3 has no fourth moment, so its sample variance
		// converges slowly: allow it a wider band.
		sdTol := 0.01
		if tt.heavyTop {
			sdTol = 0.1
		}
		if math.Abs(mean) > 4*tt.sd/math.Sqrt(n) || math.Abs(sd-tt.sd) > sdTol {
			t.Errorf("%v: mean %.4f, sd %.4f; want 0 and %.4f", tt.d, mean, sd, tt.sd)
		}
		if lo < tt.low-1e-12 || (tt.d == Pareto && hi < 5) {
			t.Errorf("%v: draws span [%.3f, %.3f], want none below %.3f", tt.d, lo, hi, tt.low)
		}
	}
}

// TestNetemOrderReorders: with order=netem each packet leaves at its own
// drawn time, so jitter wider than the spacing reorders and every delay is
// exactly delay plus the packet's draw; order=keep never reorders.
func TestNetemOrderReorders(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		p := newPair(t, "delay=20ms,jitter=10ms,order=netem", nil)
		sent := make([]time.Time, 500)
		for i := range sent {
			sent[i] = time.Now()
			p.send(t, i, 8)
			time.Sleep(time.Millisecond)
		}
		settle()
		got := p.drain()
		if len(got) != len(sent) {
			t.Fatalf("received %d of %d", len(got), len(sent))
		}
		overtakes := 0
		for i, pk := range got {
			if i > 0 && index(pk.b) < index(got[i-1].b) {
				overtakes++
			}
			n := uint64(index(pk.b))
			r := packetRNG(DefaultSeed, 0, n)
			for range 7 { // the three loss draws, then dup, corrupt, bit and reorder
				r.next()
			}
			want := 20*time.Millisecond + time.Duration(r.jitter(float64(10*time.Millisecond), Uniform))
			if d := pk.at.Sub(sent[n]); d != want {
				t.Fatalf("packet %d took %v, want its own draw %v", n, d, want)
			}
		}
		if overtakes == 0 {
			t.Error("jitter of ±10ms at 1ms spacing reordered nothing")
		}
	})
}

// TestJitterKeepsOrder: jitter wider than the spacing still never lets a
// packet overtake an earlier one.
func TestJitterKeepsOrder(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		p := newPair(t, "delay=20ms,jitter=10ms", nil)
		for i := range 500 {
			p.send(t, i, 8)
			time.Sleep(time.Millisecond)
		}
		settle()
		got := p.drain()
		if len(got) != 500 {
			t.Fatalf("received %d of 500", len(got))
		}
		var late int
		for i, pk := range got {
			if index(pk.b) != i {
				t.Fatalf("arrival %d is packet %d", i, index(pk.b))
			}
			if pk.at.Sub(got[0].at) > time.Duration(i)*time.Millisecond {
				late++
			}
		}
		if late == 0 {
			t.Error("jitter delayed nothing")
		}
	})
}

// TestReorderOvertakes: reordered packets skip the delay and arrive before
// packets sent earlier.
func TestReorderOvertakes(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		p := newPair(t, "delay=50ms,reorder=10%", nil)
		for i := range 1000 {
			p.send(t, i, 8)
			time.Sleep(time.Millisecond)
		}
		settle()
		st := p.link.Stats(Up)
		within3Sigma(t, "reordered", st.Reordered, 1000, 0.1)
		got := p.drain()
		overtakes := 0
		for i := 1; i < len(got); i++ {
			if index(got[i].b) < index(got[i-1].b) {
				overtakes++
			}
		}
		if overtakes == 0 || len(got) != 1000 {
			t.Errorf("%d packets, %d arriving before an earlier one; want 1000 and some", len(got), overtakes)
		}
	})
}

// TestRate: 1 Mbit/s carries a 1000-byte datagram (1028 bytes with headers)
// every 8.224 ms.
func TestRate(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		p := newPair(t, "rate=1mbit", nil)
		start := time.Now()
		p.sendN(t, 100, 1000)
		time.Sleep(time.Second)
		synctest.Wait()
		got := p.drain()
		if len(got) != 100 {
			t.Fatalf("received %d of 100", len(got))
		}
		per := time.Duration(1028 * 8 * int64(time.Second) / 1e6)
		if last := got[99].at.Sub(start); last < 100*per-time.Millisecond || last > 100*per+time.Millisecond {
			t.Errorf("100 datagrams took %v, want %v", last, 100*per)
		}
		if st := p.link.Stats(Up); st.QueueHigh != 100 {
			t.Errorf("QueueHigh = %d, want 100", st.QueueHigh)
		}
	})
}

func TestQueueTailDrop(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		p := newPair(t, "rate=1mbit,queue=10", nil)
		p.sendN(t, 50, 1000)
		time.Sleep(time.Second)
		synctest.Wait()
		st := p.link.Stats(Up)
		if st.QueueDrops != 40 || st.Delivered != 10 || st.QueueHigh != 10 {
			t.Errorf("stats = %+v, want 40 queue drops, 10 delivered", st)
		}
	})
}

func TestOutage(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		p := newPair(t, "", nil)
		p.link.SetOutage(true)
		p.sendN(t, 5, 8)
		p.link.SetOutage(false)
		p.sendN(t, 5, 8)
		settle()
		if st := p.link.Stats(Up); st.OutageDrops != 5 || st.Delivered != 5 {
			t.Errorf("stats = %+v, want 5 outage drops then 5 delivered", st)
		}
	})
}

// spacedTrace sends n 100-byte packets 100µs apart through spec's up
// direction, inside a synctest bubble, and returns the trace.
func spacedTrace(t *testing.T, spec string, n int) string {
	t.Helper()
	var out string
	synctest.Test(t, func(t *testing.T) {
		var tr bytes.Buffer
		p := newPair(t, spec, &Options{Trace: &tr})
		for i := range n {
			p.send(t, i, 100)
			time.Sleep(100 * time.Microsecond)
		}
		time.Sleep(time.Second)
		synctest.Wait()
		p.link.Close()
		out = tr.String()
	})
	return out
}

// TestSameSeedSameTrace runs the same traffic twice and compares traces
// packet by packet; a different seed must differ.
func TestSameSeedSameTrace(t *testing.T) {
	run := func(spec string) string { return spacedTrace(t, spec, 2000) }
	const spec = "loss=5%,burst=1%/30%,delay=10ms,jitter=5ms,reorder=2%,dup=1%,corrupt=1%,seed=42"
	a, b := run(spec), run(spec)
	if a != b {
		t.Fatal("two runs with the same seed wrote different traces")
	}
	if lines := strings.Count(a, "\n"); lines != 2000 {
		t.Fatalf("trace has %d lines, want 2000", lines)
	}
	if c := run(strings.Replace(spec, "seed=42", "seed=43", 1)); c == a {
		t.Error("a different seed gave the same trace")
	}
}

func TestTraceFormat(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var tr bytes.Buffer
		p := newPair(t, "loss=50%,delay=1ms,dup=20%,corrupt=20%", &Options{Trace: &tr})
		p.sendN(t, 200, 33)
		settle()
		p.link.Close()
		fates := map[string]int{}
		sc := bufio.NewScanner(&tr)
		n := 0
		for sc.Scan() {
			var r struct {
				Dir     string `json:"dir"`
				N       *int   `json:"n"`
				Size    int    `json:"size"`
				Fate    string `json:"fate"`
				Cause   string `json:"cause"`
				DelayUS *int   `json:"delay_us"`
			}
			if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
				t.Fatalf("line %q: %v", sc.Text(), err)
			}
			if r.Dir != "up" || r.N == nil || *r.N != n || r.Size != 33 {
				t.Fatalf("line %d = %s", n, sc.Text())
			}
			if (r.Fate == fateDropped) != (r.Cause != "") || (r.Fate != fateDropped && r.DelayUS == nil) {
				t.Fatalf("line %d: fate %q with cause %q, delay %v", n, r.Fate, r.Cause, r.DelayUS)
			}
			fates[r.Fate]++
			n++
		}
		if n != 200 || fates[fateDropped] == 0 || fates[fateDuplicated] == 0 || fates[fateCorrupted] == 0 || fates[fateDelivered] == 0 {
			t.Errorf("%d lines, fates %v; want 200 lines and every fate", n, fates)
		}
	})
}

func TestWriteAfterCloseFails(t *testing.T) {
	p := newPair(t, "delay=1ms", &Options{Trace: &bytes.Buffer{}})
	p.link.Close()
	if _, err := p.out.WriteTo([]byte("x"), p.dst.addr); err == nil || !strings.Contains(err.Error(), "closed") {
		t.Errorf("WriteTo after Close = %v, want net.ErrClosed", err)
	}
}
