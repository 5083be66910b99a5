package reliable

import (
	"context"
	"io"
	"net"
	"testing"
	"time"

	kcp "github.com/xtaci/kcp-go/v5"

	"github.com/udplab/udplab/internal/paired"
	"github.com/udplab/udplab/internal/sockstat"
)

// bulkMessage is the message size of the bulk benchmark.
const bulkMessage = 64 << 10

// BenchmarkBulkVsKCP moves 64 KiB messages one way, with FEC 10,3 and
// aes-128-gcm, through udplab's reliable transport and through bare kcp-go
// sessions with the same settings, alternately in the same run, and reports
// the median udplab/kcp over 7 rounds, and the lowest and highest: the cost
// of udplab's framing, interface and server sessions over kcp-go itself
// (kcp-go's client sends to udplab's AcceptOne, and to kcp-go's own
// listener). b.N is the number of messages per side.
func BenchmarkBulkVsKCP(b *testing.B) {
	cfg := Config{Key: "bench"}
	c, block, err := cfg.populate()
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	var base, cand []float64 // each round's rates, in order
	paired.Compare(b, 7, "kcp-MB/s", "udplab-MB/s", "udplab/kcp",
		func() float64 { r := bareKCPRate(b, &c, block, b.N) / 1e6; base = append(base, r); return r },
		func() float64 { r := udplabRate(b, &cfg, b.N) / 1e6; cand = append(cand, r); return r })
	// The spread of the rounds' ratios, beside their median.
	lo, hi := cand[0]/base[0], cand[0]/base[0]
	for i := range base {
		lo, hi = min(lo, cand[i]/base[i]), max(hi, cand[i]/base[i])
	}
	b.ReportMetric(lo, "udplab/kcp-min")
	b.ReportMetric(hi, "udplab/kcp-max")
}

// udplabRate sends n messages from a Conn to an AcceptOne Conn and returns
// bytes per second, counted when the last message has been received whole.
func udplabRate(b *testing.B, cfg *Config, n int) float64 {
	pc, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	recvDone := make(chan error, 1)
	go func() {
		srv, err := AcceptOne(context.Background(), pc, cfg)
		if err != nil {
			recvDone <- err
			return
		}
		defer srv.Close()
		for i := 0; i < n; i++ {
			msg, err := srv.Receive(context.Background())
			if err == nil && len(msg) != bulkMessage {
				err = io.ErrShortBuffer
			}
			if err != nil {
				recvDone <- err
				return
			}
		}
		recvDone <- nil
	}()
	cli, err := Dial(pc.LocalAddr().String(), cfg)
	if err != nil {
		b.Fatal(err)
	}
	defer cli.Close()
	msg := make([]byte, bulkMessage)
	start := time.Now()
	for i := 0; i < n; i++ {
		if err := cli.Send(context.Background(), msg); err != nil {
			b.Fatal(err)
		}
	}
	if err := <-recvDone; err != nil {
		b.Fatal(err)
	}
	return float64(n*bulkMessage) / time.Since(start).Seconds()
}

// bareKCPRate does what udplabRate does with kcp-go alone, configured the
// same way, reading bytes until n messages' worth have arrived.
func bareKCPRate(b *testing.B, c *Config, block kcp.BlockCrypt, n int) float64 {
	l, err := kcp.ListenWithOptions("127.0.0.1:0", block, c.DataShards, c.ParityShards)
	if err != nil {
		b.Fatal(err)
	}
	defer l.Close()
	l.SetReadBuffer(sockstat.BufferSize)
	l.SetWriteBuffer(sockstat.BufferSize)
	recvDone := make(chan error, 1)
	go func() {
		s, err := l.AcceptKCP()
		if err != nil {
			recvDone <- err
			return
		}
		defer s.Close()
		tune(s, c)
		buf := make([]byte, maxSegment)
		for left := n * bulkMessage; left > 0; {
			k, err := s.Read(buf)
			if err != nil {
				recvDone <- err
				return
			}
			left -= k
		}
		recvDone <- nil
	}()
	s, err := kcp.DialWithOptions(l.Addr().String(), block, c.DataShards, c.ParityShards)
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	tune(s, c)
	s.SetReadBuffer(sockstat.BufferSize)
	s.SetWriteBuffer(sockstat.BufferSize)
	msg := make([]byte, bulkMessage)
	start := time.Now()
	for i := 0; i < n; i++ {
		if _, err := s.Write(msg); err != nil {
			b.Fatal(err)
		}
	}
	if err := <-recvDone; err != nil {
		b.Fatal(err)
	}
	return float64(n*bulkMessage) / time.Since(start).Seconds()
}
