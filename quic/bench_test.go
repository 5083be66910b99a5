package quic

import (
	"context"
	"crypto/tls"
	"io"
	"log/slog"
	"net"
	"sync"
	"testing"
	"time"

	quicgo "github.com/quic-go/quic-go"

	"github.com/udplab/udplab/internal/paired"
	"github.com/udplab/udplab/message"
)

// benchLoad is one paired benchmark's work: how many messages of what size
// per round (times b.N), how many in flight on the one connection, and the
// handler answering them.
type benchLoad struct {
	name     string
	count    int
	size     int
	inFlight int
	h        message.Handler
}

var benchLoads = []benchLoad{
	// Greetings: many small requests, as compare sends them.
	{"greetings", 5000, len("Alice"), 32, message.Greet},
	// Bulk: 64 KiB echoed, tens of packets each way per stream.
	{"bulk-64KiB", 300, 64 << 10, 8, message.Echo},
}

// BenchmarkVsBare measures messages per second over loopback, inFlight in
// flight on one connection, through this package's Server and Conn and
// through bare quic-go doing the same (a stream per request, read to its
// end, one goroutine per stream on both sides), with the same quic-go and
// TLS configuration, alternately in the same run. It reports the median
// quic/bare over 7 rounds: what the transport's bookkeeping (tokens,
// counters, an inbox) costs, less what its buffers save: bare reads each
// stream with io.ReadAll, which allocates about twice the bytes per 64 KiB
// message, and on two cores the garbage collector then competes with
// quic-go's packet work. The target is at least 0.9.
func BenchmarkVsBare(b *testing.B) {
	cert, err := SelfSigned()
	if err != nil {
		b.Fatal(err)
	}
	for _, load := range benchLoads {
		b.Run(load.name, func(b *testing.B) {
			b.ReportAllocs()
			n := b.N * load.count
			paired.Compare(b, 7, "bare-msgs/s", "quic-msgs/s", "quic/bare",
				func() float64 { return bareRate(b, cert, load, n) },
				func() float64 { return connRate(b, cert, load, n) })
		})
	}
}

// connRate runs load through Server and Conn.
func connRate(b *testing.B, cert tls.Certificate, load benchLoad, n int) float64 {
	s, err := Listen("127.0.0.1:0", load.h, &ServerConfig{TLS: &tls.Config{Certificates: []tls.Certificate{cert}}})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	ctx := context.Background()
	c, err := Dial(ctx, s.Addr().String(), &ClientConfig{Pin: Fingerprint(cert)})
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	req := make([]byte, load.size)
	copy(req, "Alice")
	start := time.Now()
	sent := 0
	for ; sent < min(load.inFlight, n); sent++ {
		if err := c.Send(ctx, req); err != nil {
			b.Fatal(err)
		}
	}
	for got := 0; got < n; got++ {
		if _, err := c.Receive(ctx); err != nil {
			b.Fatalf("reply %d: %v", got, err)
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

// bareRate runs load through quic-go alone, configured as Server and Conn
// configure it.
func bareRate(b *testing.B, cert tls.Certificate, load benchLoad, n int) float64 {
	addr, stop := bareServer(b, cert, load.h)
	defer stop()
	qc, closeClient := bareClient(b, addr, Fingerprint(cert))
	defer closeClient()
	req := make([]byte, load.size)
	copy(req, "Alice")
	replies := make(chan error, load.inFlight)
	send := func() {
		str, err := qc.OpenStreamSync(context.Background())
		if err == nil {
			_, err = str.Write(req)
		}
		if err != nil {
			b.Fatal(err)
		}
		str.Close()
		go func() {
			_, err := io.ReadAll(str)
			replies <- err
		}()
	}
	start := time.Now()
	sent := 0
	for ; sent < min(load.inFlight, n); sent++ {
		send()
	}
	for got := 0; got < n; got++ {
		if err := <-replies; err != nil {
			b.Fatalf("reply %d: %v", got, err)
		}
		if sent < n {
			send()
			sent++
		}
	}
	return float64(n) / time.Since(start).Seconds()
}

// bareServer answers each stream of each connection with h, one goroutine
// per stream, and no limits, counters or buffer reuse. stop closes
// everything and waits for its goroutines.
func bareServer(b *testing.B, cert tls.Certificate, h message.Handler) (addr net.Addr, stop func()) {
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	tlsConf, _, err := serverTLS(&tls.Config{Certificates: []tls.Certificate{cert}})
	if err != nil {
		b.Fatal(err)
	}
	tr := newTransport(pc)
	ln, err := tr.Listen(tlsConf, serverConfig(DefaultIdle))
	if err != nil {
		b.Fatal(err)
	}
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			qc, err := ln.Accept(context.Background())
			if err != nil {
				return
			}
			wg.Go(func() {
				for {
					str, err := qc.AcceptStream(context.Background())
					if err != nil {
						return
					}
					wg.Go(func() { bareAnswer(str, h) })
				}
			})
		}
	})
	return pc.LocalAddr(), func() {
		ln.Close()
		tr.Close()
		pc.Close()
		wg.Wait()
	}
}

func bareAnswer(str *quicgo.Stream, h message.Handler) {
	req, err := io.ReadAll(str)
	if err != nil {
		return
	}
	reply, err := h(nil, req)
	if err != nil {
		str.CancelWrite(CodeRefused)
		return
	}
	str.Write(reply)
	str.Close()
}

func bareClient(b *testing.B, addr net.Addr, pin string) (*quicgo.Conn, func()) {
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	tlsConf, err := clientTLS(&ClientConfig{Pin: pin}, "127.0.0.1", slog.New(slog.DiscardHandler))
	if err != nil {
		b.Fatal(err)
	}
	tr := newTransport(pc)
	qc, err := tr.Dial(context.Background(), addr, tlsConf, clientConfig())
	if err != nil {
		b.Fatal(err)
	}
	return qc, func() {
		qc.CloseWithError(CodeNormal, "")
		tr.Close()
		pc.Close()
	}
}
