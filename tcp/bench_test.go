package tcp

import (
	"bufio"
	"context"
	"encoding/binary"
	"io"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/udplab/udplab/internal/paired"
	"github.com/udplab/udplab/message"
)

const (
	// benchGreetings is how many greetings each side answers per round,
	// times b.N: enough that one round takes tens of milliseconds.
	benchGreetings = 20000
	// benchInFlight is how many requests the client keeps outstanding on
	// its one connection.
	benchInFlight = 32
)

// BenchmarkGreetingVsMinimal measures greetings per second over loopback,
// benchInFlight requests in flight on one connection, through Server and
// through minimalServer, the least a Go program can do to answer the same
// frames, alternately in the same run. It reports the median tcp/minimal
// over 7 rounds: what Server's dialects, counters, deadlines and connection
// bookkeeping cost, less what writing pipelined replies together (which the
// minimal server does not do) saves. The target is at least 0.9.
func BenchmarkGreetingVsMinimal(b *testing.B) {
	b.ReportAllocs()
	n := b.N * benchGreetings
	paired.Compare(b, 7, "minimal-greetings/s", "tcp-greetings/s", "tcp/minimal",
		func() float64 {
			addr, stop := minimalServer(b)
			defer stop()
			return greetingRate(b, addr, n)
		},
		func() float64 {
			s, err := Listen("127.0.0.1:0", message.Greet, nil)
			if err != nil {
				b.Fatal(err)
			}
			defer s.Close()
			return greetingRate(b, s.Addr(), n)
		})
}

// greetingRate greets n times over one connection to addr, keeping
// inFlight requests outstanding, and returns replies per second.
func greetingRate(b *testing.B, addr net.Addr, n int) float64 {
	ctx := context.Background()
	c, err := Dial(ctx, addr.String())
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	req := []byte("Alice")
	start := time.Now()
	sent := 0
	for ; sent < min(benchInFlight, n); sent++ {
		if err := c.Send(ctx, req); err != nil {
			b.Fatal(err)
		}
	}
	for got := 0; got < n; got++ {
		reply, err := c.Receive(ctx)
		if err != nil || string(reply) != "Hello Alice!\n" {
			b.Fatalf("reply %d = %q, %v", got, reply, err)
		}
		if sent < n {
			if err := c.Send(ctx, req); err != nil {
				b.Fatal(err)
			}
			sent++
		}
	}
	return float64(n) / time.Since(start).Seconds()
}

// minimalServer answers framed greetings on loopback with nothing but a
// buffered reader and one Write per reply. stop closes the listener and
// waits for its goroutines; each connection's ends when its client closes.
func minimalServer(b *testing.B) (addr net.Addr, stop func()) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			wg.Go(func() {
				defer c.Close()
				minimalGreet(c)
			})
		}
	})
	return l.Addr(), func() { l.Close(); wg.Wait() }
}

func minimalGreet(c net.Conn) {
	r := bufio.NewReader(c)
	var hdr [4]byte
	name := make([]byte, 0, 256)
	out := make([]byte, 0, 256)
	for {
		if _, err := io.ReadFull(r, hdr[:]); err != nil {
			return
		}
		n := binary.BigEndian.Uint32(hdr[:])
		if n > MaxMessage {
			return
		}
		if cap(name) < int(n) {
			name = make([]byte, n)
		}
		name = name[:n]
		if _, err := io.ReadFull(r, name); err != nil {
			return
		}
		out = append(out[:4], "Hello "...)
		out = append(out, name...)
		out = append(out, "!\n"...)
		binary.BigEndian.PutUint32(out, uint32(len(out)-4))
		if _, err := c.Write(out); err != nil {
			return
		}
	}
}
