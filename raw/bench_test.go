package raw

import (
	"errors"
	"net"
	"os"
	"testing"
	"time"

	"github.com/udplab/udplab/internal/paired"
	"github.com/udplab/udplab/message"
)

// inFlight is how many greetings the benchmark client keeps outstanding.
const inFlight = 32

// BenchmarkGreetingVsBaseline measures greetings per second through the raw
// server and through a minimal ReadFrom/WriteTo loop that answers the same
// greeting, alternately in the same run, with 32 requests in flight, and
// reports the median raw/baseline over 7 rounds: the cost of udplab's server
// over bare sockets. b.N is the number of greetings per side.
func BenchmarkGreetingVsBaseline(b *testing.B) {
	b.ReportAllocs()
	paired.Compare(b, 7, "baseline-req/s", "raw-req/s", "raw/baseline",
		func() float64 { return greetingRate(b, startBaseline(b), b.N) },
		func() float64 { return greetingRate(b, startRaw(b), b.N) })
}

func startRaw(b *testing.B) net.Addr {
	pc := listenBench(b)
	s := NewServer(pc, message.Greet, nil)
	b.Cleanup(func() { s.Close() })
	return s.Addr()
}

// startBaseline serves the greeting with the least code that can: the
// yardstick, not a server anyone should run.
func startBaseline(b *testing.B) net.Addr {
	pc := listenBench(b)
	done := make(chan struct{})
	go func() {
		defer close(done)
		buf := make([]byte, readBufferSize)
		reply := make([]byte, 0, readBufferSize)
		for {
			n, from, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			reply = append(append(append(reply[:0], "Hello "...), buf[:n]...), "!\n"...)
			pc.WriteTo(reply, from)
		}
	}()
	b.Cleanup(func() { pc.Close(); <-done })
	return pc.LocalAddr()
}

func listenBench(b *testing.B) net.PacketConn {
	pc, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	pc.(*net.UDPConn).SetReadBuffer(4 << 20)
	return pc
}

// greetingRate sends n greetings to addr keeping inFlight outstanding and
// returns replies per second. A reply that does not come within 100ms is
// taken as lost and its slot refilled, so a drop cannot stall the run.
func greetingRate(b *testing.B, addr net.Addr, n int) float64 {
	c, err := net.ListenUDP("udp4", nil)
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	c.SetReadBuffer(4 << 20)
	to := addr.(*net.UDPAddr).AddrPort()
	req := []byte("Alice")
	buf := make([]byte, 256)
	start := time.Now()
	sent, got := 0, 0
	for ; sent < min(inFlight, n); sent++ {
		c.WriteToUDPAddrPort(req, to)
	}
	for got < n {
		c.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
		if _, _, err := c.ReadFromUDPAddrPort(buf); err != nil {
			if !errors.Is(err, os.ErrDeadlineExceeded) {
				b.Fatal(err)
			}
			for range inFlight { // refill the window
				c.WriteToUDPAddrPort(req, to)
			}
			continue
		}
		got++
		if sent < n {
			c.WriteToUDPAddrPort(req, to)
			sent++
		}
	}
	return float64(n) / time.Since(start).Seconds()
}
