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
	c, err := net.DialUDP("udp4", nil, addr.(*net.UDPAddr))
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	c.SetReadBuffer(4 << 20)
	g := &greeter{c: c, r: batch.NewReader(c, inFlight, 256), w: batch.NewWriter(c, inFlight)}
	start := time.Now()
	g.send(min(inFlight, n))
	sent, got := min(inFlight, n), 0
	for got < n {
		c.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
		ms, err := g.r.Read()
		if err != nil {
			if !errors.Is(err, os.ErrDeadlineExceeded) {
				b.Fatal(err)
			}
			g.send(inFlight)
			continue
		}
		got += len(ms)
		k := min(len(ms), n-sent)
		g.send(k)
		sent += k
	}
	return float64(n) / time.Since(start).Seconds()
}

// greeter is GreetingRate's socket, read and written in batches.
type greeter struct {
	c *net.UDPConn
	r *batch.Reader
	w *batch.Writer
}

var greeting = []byte("Alice")

// send sends k greetings with as few calls as the platform allows. A
// refused write (the server's port closed for a moment) is a lost
// request: the window refills after 100ms.
func (g *greeter) send(k int) {
	for range k {
		g.w.Add(greeting, netip.AddrPort{}, nil)
	}
	g.w.Flush()
}
