package raw

import (
	"net"
	"testing"

	"github.com/udplab/udplab/internal/conntest"
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
		func() float64 { return conntest.GreetingRate(b, startBaseline(b), b.N, inFlight) },
		func() float64 { return conntest.GreetingRate(b, startRaw(b), b.N, inFlight) })
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
