package netstack

import (
	"context"
	"errors"
	"io"
	"os"
	"testing"
	"time"

	"github.com/udplab/udplab/internal/paired"
	"github.com/udplab/udplab/link"
	"github.com/udplab/udplab/link/linktest"
)

// bulkChunk is the write size of the bulk benchmark.
const bulkChunk = 64 << 10

// BenchmarkNetstackBulk moves b.N chunks of 64 KiB one way over TCP
// between two hosts in this process, through a link that impairs nothing
// on loopback sockets, and, alternately in the same run, blasts as many
// bytes in DefaultMTU-sized datagrams through the same kind of link: the
// rate the link itself carries. It reports both in MB/s and the median
// netstack/link over 7 rounds: what a user-space TCP costs against bare
// datagrams. -benchtime=256x moves 16 MiB per round.
func BenchmarkNetstackBulk(b *testing.B) {
	paired.Compare(b, 7, "link-MB/s", "netstack-MB/s", "netstack/link",
		func() float64 { return linkRate(b, b.N*bulkChunk) / 1e6 },
		func() float64 { return netstackRate(b, b.N*bulkChunk) / 1e6 })
}

// netstackRate sends total bytes from a Dial host to a Listen host and
// returns bytes per second, counted when the last byte has been read.
func netstackRate(b *testing.B, total int) float64 {
	l := linktest.New(b, "")
	spc, cpc := udp(b), udp(b)
	ln, err := Listen(l.Wrap(spc, link.Down), nil)
	if err != nil {
		b.Fatal(err)
	}
	defer ln.Close()
	got := make(chan error, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			got <- err
			return
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(hangGuard))
		n, err := io.Copy(io.Discard, c)
		if err == nil && n != int64(total) {
			err = io.ErrUnexpectedEOF
		}
		got <- err
	}()
	c, err := Dial(context.Background(), l.Wrap(cpc, link.Up), spc.LocalAddr(), nil)
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(hangGuard))
	chunk := make([]byte, bulkChunk)
	start := time.Now()
	for sent := 0; sent < total; sent += len(chunk) {
		if _, err := c.Write(chunk[:min(len(chunk), total-sent)]); err != nil {
			b.Fatal(err)
		}
	}
	if err := c.CloseWrite(); err != nil {
		b.Fatal(err)
	}
	if err := <-got; err != nil {
		b.Fatal(err)
	}
	return float64(total) / time.Since(start).Seconds()
}

// linkRate writes total bytes as DefaultMTU-byte datagrams, as fast as
// the sender can, through a link that impairs nothing, and returns the
// bytes per second that arrived, timed to the last arrival. The loopback
// socket may drop what its reader cannot keep up with: only what arrived
// counts.
func linkRate(b *testing.B, total int) float64 {
	l := linktest.New(b, "")
	spc, cpc := udp(b), udp(b)
	out := l.Wrap(cpc, link.Up)
	count := (total + DefaultMTU - 1) / DefaultMTU
	type result struct {
		bytes int
		last  time.Time
		err   error
	}
	got := make(chan result, 1)
	go func() {
		var r result
		buf := make([]byte, readBuffer)
		for range count {
			n, _, err := spc.ReadFrom(buf)
			if err != nil {
				if !errors.Is(err, os.ErrDeadlineExceeded) {
					r.err = err
				}
				break
			}
			r.bytes += n
			r.last = time.Now()
		}
		got <- r
	}()
	spc.SetReadDeadline(time.Now().Add(hangGuard))
	dgram := make([]byte, DefaultMTU)
	start := time.Now()
	for i := range count {
		if _, err := out.WriteTo(dgram[:min(DefaultMTU, total-i*DefaultMTU)], spc.LocalAddr()); err != nil {
			b.Fatal(err)
		}
	}
	// A link that impairs nothing passes each datagram on within WriteTo:
	// what is not in the receiver's socket now was dropped. Give the
	// reader time to drain the socket, then stop it.
	spc.SetReadDeadline(time.Now().Add(time.Second))
	r := <-got
	if r.err != nil {
		b.Fatal(r.err)
	}
	if r.bytes == 0 {
		b.Fatal("no datagram arrived")
	}
	return float64(r.bytes) / r.last.Sub(start).Seconds()
}
