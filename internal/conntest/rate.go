package conntest

import (
	"errors"
	"net"
	"net/netip"
	"os"
	"testing"
	"time"

	"github.com/udplab/udplab/internal/batch"
)

// GreetingRate sends n greetings ("Alice") to addr from a bare socket,
// keeping inFlight outstanding, and returns replies per second. A reply
// that does not come within 100ms is taken as lost and the window
// refilled, so a drop cannot stall a benchmark.
//
// It shares the machine with the server it measures, so it costs as
// little as it can: one connected socket, replies read a batch at a time
// (recvmmsg on Linux) and as many requests sent again with one call
// (sendmmsg). A generator as costly as the server would pull every
// server/baseline ratio towards 1.
func GreetingRate(b testing.TB, addr net.Addr, n, inFlight int) float64 {
	g := NewBursts(b, addr, inFlight)
	start := time.Now()
	g.send(b, min(inFlight, n))
	sent, got := min(inFlight, n), 0
	for got < n {
		g.c.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
		ms, err := g.r.Read()
		if err != nil {
			if !errors.Is(err, os.ErrDeadlineExceeded) {
				b.Fatal(err)
			}
			g.send(b, inFlight)
			continue
		}
		got += len(ms)
		k := min(len(ms), n-sent)
		g.send(b, k)
		sent += k
	}
	return float64(n) / time.Since(start).Seconds()
}

// Bursts is a client socket connected to a server that sends requests in
// bursts and reads replies in batches, each with as few calls as the
// platform allows (sendmmsg and recvmmsg on Linux). Use it from one
// goroutine.
type Bursts struct {
	c *net.UDPConn
	r *batch.Reader
	w *batch.Writer
}

// NewBursts dials addr over IPv4, for bursts of up to n datagrams (more
// take more calls). The socket closes when the test ends.
func NewBursts(tb testing.TB, addr net.Addr, n int) *Bursts {
	tb.Helper()
	c, err := net.DialUDP("udp4", nil, addr.(*net.UDPAddr))
	if err != nil {
		tb.Fatal(err)
	}
	c.SetReadBuffer(4 << 20)
	tb.Cleanup(func() { c.Close() })
	return &Bursts{c: c, r: batch.NewReader(c, n, 2048), w: batch.NewWriter(c, n)}
}

// Send sends reqs in order, failing the test if any cannot go.
func (g *Bursts) Send(tb testing.TB, reqs ...[]byte) {
	tb.Helper()
	for _, r := range reqs {
		g.w.Add(r, netip.AddrPort{}, nil)
	}
	if _, err := g.w.Flush(); err != nil {
		tb.Fatal(err)
	}
}

// Receive reads n replies, each within Timeout, and calls f on each in
// the order they came; the slice is valid during the call only.
func (g *Bursts) Receive(tb testing.TB, n int, f func(reply []byte)) {
	tb.Helper()
	for got := 0; got < n; {
		g.c.SetReadDeadline(time.Now().Add(Timeout))
		ms, err := g.r.Read()
		if err != nil {
			tb.Fatalf("after %d of %d replies: %v", got, n, err)
		}
		for _, m := range ms {
			f(m.Buf)
		}
		got += len(ms)
	}
}

var greeting = []byte("Alice")

// send sends k greetings with as few calls as the platform allows. A
// refused write (the server's port closed for a moment) is a lost
// request: GreetingRate refills the window after 100ms.
func (g *Bursts) send(tb testing.TB, k int) {
	for range k {
		g.w.Add(greeting, netip.AddrPort{}, nil)
	}
	g.w.Flush()
}
