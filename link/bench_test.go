package link

import (
	"encoding/binary"
	"net"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/udplab/udplab/internal/conntest"
	"github.com/udplab/udplab/internal/paired"
	"github.com/udplab/udplab/message"
	"github.com/udplab/udplab/raw"
)

// discard is a sink that only counts, so a benchmark sees the link's own
// cost and not a socket's.
type discard struct{ n int }

func (d *discard) WriteTo(b []byte, _ net.Addr) (int, error) { d.n++; return len(b), nil }

// BenchmarkWrapPerfect is the wrapper's cost per packet when the link
// impairs nothing: the target is under 1µs and no allocation.
func BenchmarkWrapPerfect(b *testing.B) {
	l, _ := New(Spec{}, nil)
	defer l.Close()
	b.ReportAllocs()
	d := l.dirs[Up]
	buf := make([]byte, 64)
	var addr net.Addr = memAddr("server")
	sink := &discard{}
	for b.Loop() {
		d.send(buf, addr, sink, nil, time.Time{})
	}
}

// BenchmarkWrapDelayed is the cost per packet through the delay queue:
// fates drawn, a pooled copy, a heap push, and the delivery goroutine.
func BenchmarkWrapDelayed(b *testing.B) {
	s, _ := Parse("delay=1ms,jitter=100us,loss=1%")
	l, _ := New(s, nil)
	defer l.Close()
	b.ReportAllocs()
	d := l.dirs[Up]
	buf := make([]byte, 64)
	addr := memAddr("server")
	for b.Loop() {
		d.send(buf, addr, &discard{}, nil, time.Time{})
	}
}

// BenchmarkProxyVsDirect measures greetings per second, 32 in flight,
// straight to a raw server and through a proxy with no impairment,
// alternately, and reports the median proxy/direct ratio (target ≥ 0.7).
// The generator sends GSO runs, which the proxy takes coalesced (GRO).
func BenchmarkProxyVsDirect(b *testing.B) {
	srv, err := raw.Listen("127.0.0.1:0", message.Greet, nil)
	if err != nil {
		b.Fatal(err)
	}
	defer srv.Close()
	l, _ := New(Spec{}, nil)
	defer l.Close()
	p, err := NewProxy(ProxyConfig{Listen: "127.0.0.1:0", To: srv.Addr().String(), Link: l})
	if err != nil {
		b.Fatal(err)
	}
	defer p.Close()
	paired.Compare(b, 7, "direct-req/s", "proxy-req/s", "proxy/direct",
		func() float64 { return conntest.GreetingRate(b, srv.Addr(), b.N, 32) },
		func() float64 { return conntest.GreetingRate(b, p.Addr(), b.N, 32) })
}

// timedSink records how late each packet left against the time it was
// due, carried in its first 8 bytes.
type timedSink struct {
	mu   sync.Mutex
	late []time.Duration
}

func (s *timedSink) WriteTo(b []byte, _ net.Addr) (int, error) {
	due := time.Unix(0, int64(binary.LittleEndian.Uint64(b)))
	s.mu.Lock()
	s.late = append(s.late, time.Since(due))
	s.mu.Unlock()
	return len(b), nil
}

// BenchmarkDeliveryAccuracy offers 10,000 packets a second to a direction
// with 20ms delay and reports when they leave against when they were due:
// the median lateness (negative is early) and the 99th percentile of the
// distance either way, in µs (target: a few µs on an idle machine). b.N is the number of
// packets.
func BenchmarkDeliveryAccuracy(b *testing.B) {
	preciseWaits.Store(true) // as udplab runs; TestMain turns it off for synctest
	defer preciseWaits.Store(false)
	s, _ := Parse("delay=20ms")
	l, _ := New(s, nil)
	defer l.Close()
	d := l.dirs[Up]
	sink := &timedSink{late: make([]time.Duration, 0, b.N)}
	buf := make([]byte, 64)
	var addr net.Addr = memAddr("server")
	const gap = 100 * time.Microsecond // 10,000 packets/s
	start := time.Now()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		// Sleep, as a sender blocked in a socket call would; sleeps
		// wake in bursts, but each packet's due time is stamped as it
		// is sent, so the pacing does not bias the measurement.
		time.Sleep(time.Until(start.Add(time.Duration(i) * gap)))
		binary.LittleEndian.PutUint64(buf, uint64(time.Now().Add(20*time.Millisecond).UnixNano()))
		d.send(buf, addr, sink, nil, time.Time{})
	}
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(time.Millisecond) {
		sink.mu.Lock()
		n := len(sink.late)
		sink.mu.Unlock()
		if n == b.N {
			break
		}
	}
	b.StopTimer()
	sink.mu.Lock()
	late := slices.Clone(sink.late)
	sink.mu.Unlock()
	if len(late) != b.N {
		b.Fatalf("%d of %d packets delivered", len(late), b.N)
	}
	off := make([]time.Duration, len(late))
	for i, l := range late {
		off[i] = max(l, -l)
	}
	slices.Sort(late)
	slices.Sort(off)
	b.ReportMetric(float64(late[len(late)/2].Microseconds()), "p50-late-µs")
	b.ReportMetric(float64(off[len(off)*99/100].Microseconds()), "p99-off-µs")
}
