package compare

import (
	"context"
	"sort"
	"testing"
	"time"

	"github.com/udplab/udplab/internal/paired"
	"github.com/udplab/udplab/message"
	"github.com/udplab/udplab/raw"
)

// benchServer starts a raw greeting server on loopback for b.
func benchServer(b *testing.B) *raw.Server {
	b.Helper()
	srv, err := raw.Listen("127.0.0.1:0", message.Greet, &raw.ServerConfig{Logger: discard})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { srv.Close() })
	return srv
}

func benchDial(b *testing.B, srv *raw.Server) *raw.Conn {
	b.Helper()
	c, err := raw.Dial(srv.Addr().String())
	if err != nil {
		b.Fatal(err)
	}
	return c
}

// BenchmarkDrive sends b.N greetings through the harness over the raw
// transport on plain loopback sockets, where the transport allocates
// nothing: allocs/op is what the harness adds per message (0; the run's
// fixed setup spread over b.N).
func BenchmarkDrive(b *testing.B) {
	srv := benchServer(b)
	conn := benchDial(b, srv)
	w := Workload{Messages: b.N, Interval: 0, Wait: 20 * time.Millisecond}
	rec := NewRecorder(b.N)
	b.ReportAllocs()
	b.ResetTimer()
	if _, err := w.drive(context.Background(), conn, rec, driveOpts{}); err != nil {
		b.Fatal(err)
	}
}

// BenchmarkHarnessVsRoundTrip compares the round trip the harness measures
// with the one a bare send-then-receive loop measures, over the same raw
// server on loopback, one greeting in flight at a time. Each side's median
// round trip is turned into a rate, and harness/bare is their ratio: 1
// means the harness adds nothing to what it measures, below 1 its round
// trips are longer.
func BenchmarkHarnessVsRoundTrip(b *testing.B) {
	srv := benchServer(b)
	const n = 300
	// Far enough apart that one reply is back before the next send, so
	// both sides time lone round trips.
	const gap = 300 * time.Microsecond
	name := appendName(nil, 0, DefaultSize)
	bare := func() float64 {
		conn := benchDial(b, srv)
		defer conn.Close()
		rtts := make([]time.Duration, n)
		for i := range rtts {
			start := time.Now()
			if _, err := message.RoundTrip(context.Background(), conn, name); err != nil {
				b.Fatal(err)
			}
			rtts[i] = time.Since(start)
			time.Sleep(gap - rtts[i])
		}
		sort.Slice(rtts, func(i, j int) bool { return rtts[i] < rtts[j] })
		return 1 / rtts[n/2].Seconds()
	}
	harness := func() float64 {
		conn := benchDial(b, srv)
		rec := NewRecorder(n)
		w := Workload{Messages: n, Interval: gap, Wait: 20 * time.Millisecond}
		if _, err := w.drive(context.Background(), conn, rec, driveOpts{}); err != nil {
			b.Fatal(err)
		}
		if rec.Delivered() < n*9/10 {
			b.Fatalf("harness: %d of %d delivered on loopback", rec.Delivered(), n)
		}
		return 1 / (rec.Latency().P50 / 1e3)
	}
	for range b.N {
		paired.Compare(b, 7, "bare-rt/s", "harness-rt/s", "harness/bare", bare, harness)
	}
}
