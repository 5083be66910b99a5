package fec

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"testing"
	"time"

	"github.com/udplab/udplab/internal/paired"
	"github.com/udplab/udplab/message"
	"github.com/udplab/udplab/raw"
)

// benchSizes are a greeting, a chat line's worth, and a full Ethernet MTU.
var benchSizes = []int{16, 512, 1400}

// BenchmarkEncode measures the sender's cost per message under the
// default 10,3, parity included: one op is one message, its data shard
// written to a no-op socket, and a tenth of its group's parity computed
// and written and of its flush deadline dropped.
func BenchmarkEncode(b *testing.B) {
	for _, size := range benchSizes {
		b.Run(fmt.Sprint(size), func(b *testing.B) {
			cfg := Config{}.WithDefaults()
			e := newEncoder(&cfg, newCodecs(10, 3), newFlusher(time.Hour), new(counters), func([]byte) error { return nil })
			msg := make([]byte, size)
			b.SetBytes(int64(size))
			b.ReportAllocs()
			far := time.Now().Add(2 * time.Hour)
			for i := 0; b.Loop(); i++ {
				if err := e.send(msg); err != nil {
					b.Fatal(err)
				}
				if i%10 == 9 {
					e.flush.fire(far) // the flusher's share: pop the filled group's deadline
				}
			}
		})
	}
}

// BenchmarkDecode measures the receiver's cost per message under the
// default 10,3: "clean" receives every shard (data delivered as it comes,
// parity dropped as the group is complete), "loss1" loses the first
// message of each group, which the first parity shard rebuilds.
func BenchmarkDecode(b *testing.B) {
	for _, size := range benchSizes {
		for _, lose := range []bool{false, true} {
			name := fmt.Sprintf("%d/clean", size)
			if lose {
				name = fmt.Sprintf("%d/loss1", size)
			}
			b.Run(name, func(b *testing.B) { benchDecode(b, size, lose) })
		}
	}
}

func benchDecode(b *testing.B, size int, lose bool) {
	const groups = 500
	c := newCodec(10, 3)
	msgs := make([][]byte, 10*groups)
	for i := range msgs {
		msgs[i] = make([]byte, size)
	}
	var pkts [][]byte
	for i, p := range c.send(b, msgs...) {
		if !lose || i%13 != 0 {
			pkts = append(pkts, p)
		}
	}
	cfg := Config{}.WithDefaults()
	delivered, next := 0, 0
	dec := newDecoder(&cfg, newCodecs(10, 3), new(counters), func([]byte) { delivered++ })
	b.SetBytes(int64(size))
	b.ReportAllocs()
	for b.Loop() {
		// One op is one message: feed datagrams until one more is out.
		for want := delivered + 1; delivered < want; next++ {
			if next == len(pkts) {
				next, dec.ring = 0, nil // replay the same groups to a fresh window
			}
			h, shard, _ := parse(pkts[next], 10, 3)
			dec.handle(h, shard)
		}
	}
}

// inFlight is how many greetings the benchmark client keeps outstanding.
const inFlight = 32

// BenchmarkGreetingVsRaw measures greetings per second through an fec
// client and server and through raw's, alternately in the same run, each
// client keeping 32 requests in flight on loopback, and reports the median
// fec/raw over 7 rounds: what coding both ways and sending 30% more
// datagrams costs. b.N is the number of greetings per side.
func BenchmarkGreetingVsRaw(b *testing.B) {
	b.ReportAllocs()
	paired.Compare(b, 7, "raw-req/s", "fec-req/s", "fec/raw",
		func() float64 { return greetingRate(b, startRawGreeter(b), b.N) },
		func() float64 { return greetingRate(b, startFECGreeter(b), b.N) })
}

func startRawGreeter(b *testing.B) message.Conn {
	s := raw.NewServer(listenBench(b), message.Greet, nil)
	c, err := raw.Dial(s.Addr().String())
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { c.Close(); s.Close() })
	return c
}

func startFECGreeter(b *testing.B) message.Conn {
	s, err := NewServer(listenBench(b), message.Greet, nil)
	if err != nil {
		b.Fatal(err)
	}
	c, err := Dial(s.Addr().String(), nil)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { c.Close(); s.Close() })
	return c
}

func listenBench(b *testing.B) net.PacketConn {
	pc, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	pc.(*net.UDPConn).SetReadBuffer(4 << 20)
	return pc
}

// greetingRate sends n greetings on c, keeping inFlight outstanding, and
// returns replies per second, as conntest.GreetingRate does from a bare
// socket: a reply that does not come within 100ms is taken as lost and the
// window refilled, so a drop cannot stall a benchmark.
func greetingRate(b *testing.B, c message.Conn, n int) float64 {
	ctx := context.Background()
	req := []byte("Alice")
	send := func() {
		if err := c.Send(ctx, req); err != nil {
			b.Fatal(err)
		}
	}
	start := time.Now()
	sent, got := 0, 0
	for ; sent < min(inFlight, n); sent++ {
		send()
	}
	for got < n {
		rctx, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
		_, err := c.Receive(rctx)
		cancel()
		if errors.Is(err, os.ErrDeadlineExceeded) {
			for range inFlight {
				send()
			}
			continue
		}
		if err != nil {
			b.Fatal(err)
		}
		got++
		if sent < n {
			send()
			sent++
		}
	}
	return float64(n) / time.Since(start).Seconds()
}
