package conntest

import (
	"errors"
	"net"
	"os"
	"testing"
	"time"
)

// GreetingRate sends n greetings ("Alice") to addr from a bare socket,
// keeping inFlight outstanding, and returns replies per second. A reply
// that does not come within 100ms is taken as lost and the window
// refilled, so a drop cannot stall a benchmark.
func GreetingRate(b testing.TB, addr net.Addr, n, inFlight int) float64 {
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
			for range inFlight {
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
