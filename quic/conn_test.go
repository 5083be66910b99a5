package quic

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/udplab/udplab/internal/conntest"
	"github.com/udplab/udplab/internal/leakcheck"
	"github.com/udplab/udplab/link"
	"github.com/udplab/udplab/link/linktest"
	"github.com/udplab/udplab/message"
)

// TestManyInFlight keeps hundreds of requests in flight on one connection,
// more than a burst of MaxStreams among them: every reply comes back once,
// in whatever order.
func TestManyInFlight(t *testing.T) {
	s := startServer(t, "127.0.0.1:0", message.Echo, nil)
	c := dialTo(t, s)
	msgs := make([][]byte, 2*MaxStreams+100)
	for i := range msgs {
		msgs[i] = fmt.Appendf(nil, "m%05d", i)
	}
	msgs[7] = bytes.Repeat([]byte("long"), 100_000) // many packets, among small ones
	conntest.EchoUnordered(t, c, msgs)
	if st := s.Stats(); st.Streams != uint64(len(msgs)) || st.Replies != uint64(len(msgs)) || st.Accepted != 1 {
		t.Errorf("stats = %+v, want %d streams and replies on 1 connection", st, len(msgs))
	}
}

// refuse refuses "refuse", and echoes anything else.
func refuse(dst, req []byte) ([]byte, error) {
	if string(req) == "refuse" {
		return dst, message.ErrBadRequest
	}
	return message.Echo(dst, req)
}

// TestRefusedAndEmpty: a refused request, and an empty one, yield no
// message at all, and the Conn's slots for them are given back: the
// conversation goes on, and the next request is answered.
func TestRefusedAndEmpty(t *testing.T) {
	s := startServer(t, "127.0.0.1:0", refuse, nil)
	c := dialTo(t, s)
	ctx, cancel := context.WithTimeout(context.Background(), conntest.Timeout)
	defer cancel()
	sendMany(t, ctx, c, MaxStreams, "refuse")
	sendMany(t, ctx, c, 1, "")
	if err := c.Send(ctx, []byte("after")); err != nil {
		t.Fatal(err)
	}
	if got, err := c.Receive(ctx); err != nil || string(got) != "after" {
		t.Fatalf("Receive = %q, %v; want %q and nothing for the refused and the empty", got, err, "after")
	}
	// Streams are independent: refusals may still be under way.
	conntest.WaitFor(t, func() bool { return s.Stats().BadRequests == MaxStreams+1 })
	if st := s.Stats(); st.Replies != 1 || st.Requests != MaxStreams+2 {
		t.Errorf("stats = %+v, want 1 reply", st)
	}
}

// sendMany sends msg n times on c.
func sendMany(t *testing.T, ctx context.Context, c *Conn, n int, msg string) {
	t.Helper()
	for range n {
		if err := c.Send(ctx, []byte(msg)); err != nil {
			t.Fatal(err)
		}
	}
}

// TestOversizedReply: a reply longer than MaxMessage is counted, not sent,
// and delivers nothing; the connection goes on.
func TestOversizedReply(t *testing.T) {
	s := startServer(t, "127.0.0.1:0", message.Greet, nil)
	c := dialTo(t, s)
	if err := c.Send(context.Background(), bytes.Repeat([]byte("a"), MaxMessage)); err != nil {
		t.Fatal(err)
	}
	if got := conntest.RoundTrip(t, c, "Eve"); got != "Hello Eve!\n" {
		t.Errorf("reply = %q, want Eve's greeting (and nothing for the oversized name)", got)
	}
	// Streams are independent: the oversized one may finish last.
	conntest.WaitFor(t, func() bool { return s.Stats().Oversized == 1 })
}

// TestPeerCloses: once the server closes, a Receive returns an error
// matching io.EOF, and a Send fails.
func TestPeerCloses(t *testing.T) {
	s := startServer(t, "127.0.0.1:0", message.Greet, nil)
	c := dialTo(t, s)
	conntest.RoundTrip(t, c, "Alice")
	s.Close()
	ctx, cancel := context.WithTimeout(context.Background(), conntest.Timeout)
	defer cancel()
	if _, err := c.Receive(ctx); !errors.Is(err, io.EOF) {
		t.Errorf("Receive after the server closed = %v, want io.EOF", err)
	}
	if err := c.Send(ctx, []byte("Bob")); err == nil {
		t.Error("Send after the server closed succeeded")
	}
	if st := s.Stats(); st.Conns != 0 || st.Accepted != 1 || st.Wire.PacketsReceived == 0 {
		t.Errorf("stats after Close = %+v, want no connection open and the ended one's wire", st)
	}
}

func TestMaxConns(t *testing.T) {
	s := startServer(t, "127.0.0.1:0", message.Greet, &ServerConfig{MaxConns: 1})
	a := dialTo(t, s)
	conntest.RoundTrip(t, a, "a")
	ctx, cancel := context.WithTimeout(context.Background(), conntest.Timeout)
	defer cancel()
	if c, err := Dial(ctx, s.Addr().String(), &ClientConfig{Pin: s.Fingerprint()}); err == nil {
		c.Close()
		t.Fatal("a second connection was served beyond MaxConns=1")
	}
	if st := s.Stats(); st.Refused != 1 || st.Accepted != 1 || st.Conns != 1 {
		t.Errorf("stats = %+v, want 1 refused, 1 accepted and open", st)
	}
	// A place freed is taken again.
	a.Close()
	conntest.WaitFor(t, func() bool { return s.Stats().Conns == 0 })
	if got := conntest.RoundTrip(t, dialTo(t, s), "b"); got != "Hello b!\n" {
		t.Errorf("reply once a place was free = %q", got)
	}
}

// TestIdle: a silent connection is closed after Idle; its client learns
// it as soon as it sends again.
func TestIdle(t *testing.T) {
	s := startServer(t, "127.0.0.1:0", message.Greet, &ServerConfig{Idle: 200 * time.Millisecond})
	c := dialTo(t, s)
	conntest.RoundTrip(t, c, "a")
	conntest.WaitFor(t, func() bool { return s.Stats().Conns == 0 })
	ctx, cancel := context.WithTimeout(context.Background(), conntest.Timeout)
	defer cancel()
	_, err := message.RoundTrip(ctx, c, []byte("b"))
	if err == nil || errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("request on an idle-closed connection = %v, want the connection's end", err)
	}
}

// TestSendWaitsForReceive: with MaxStreams replies pending, Send waits
// until its context ends; once replies are received it goes on.
func TestSendWaitsForReceive(t *testing.T) {
	gate := make(chan struct{})
	gated := func(dst, req []byte) ([]byte, error) {
		<-gate
		return message.Echo(dst, req)
	}
	s := startServer(t, "127.0.0.1:0", gated, nil)
	c := dialTo(t, s)
	ctx, cancel := context.WithTimeout(context.Background(), conntest.Timeout)
	defer cancel()
	sendMany(t, ctx, c, MaxStreams, "x")
	short, cancelShort := context.WithTimeout(ctx, 50*time.Millisecond)
	defer cancelShort()
	if err := c.Send(short, []byte("one too many")); !errors.Is(err, context.DeadlineExceeded) || !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Errorf("Send with MaxStreams replies pending = %v, want a deadline error", err)
	}
	close(gate)
	for range MaxStreams {
		if got, err := c.Receive(ctx); err != nil || string(got) != "x" {
			t.Fatalf("Receive = %q, %v", got, err)
		}
	}
	if got := conntest.RoundTrip(t, c, "next"); got != "next" {
		t.Errorf("reply = %q", got)
	}
}

// TestOverLossyLink runs requests through link.Wrap with 10% loss each
// way: every one is answered, and quic-go's counters saw losses.
func TestOverLossyLink(t *testing.T) {
	l := linktest.New(t, "loss=10%,seed=3")
	spc, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s, err := NewServer(l.Wrap(spc, link.Down), message.Echo, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	cpc, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), conntest.Timeout)
	defer cancel()
	c, err := NewConn(ctx, l.Wrap(cpc, link.Up), s.Addr(), &ClientConfig{Pin: s.Fingerprint()})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	msgs := make([][]byte, 300)
	for i := range msgs {
		msgs[i] = bytes.Repeat(fmt.Appendf(nil, "%04d", i), 1+i%400) // up to 1600 bytes: one or two packets
	}
	conntest.EchoUnordered(t, c, msgs)
	c.Close()
	w := c.Wire()
	if w.PacketsLost == 0 || w.PacketsSent == 0 || w.PacketsReceived == 0 {
		t.Errorf("client wire after Close = %+v, want packets lost", w)
	}
	if st := l.Stats(link.Up); st.Lost == 0 {
		t.Errorf("the link lost nothing: %v", st)
	}
	if st := s.Stats(); st.Wire.PacketsLost == 0 || st.Replies != uint64(len(msgs)) {
		t.Errorf("server stats = %+v, want every request answered and packets lost", st)
	}
}

// TestCloseStopsEverything closes a server and a client with requests in
// flight: afterwards no goroutine of theirs, nor of quic-go's, is left.
func TestCloseStopsEverything(t *testing.T) {
	block := make(chan struct{})
	slow := func(dst, req []byte) ([]byte, error) {
		if string(req) == "slow" {
			<-block
		}
		return message.Echo(dst, req)
	}
	s, err := Listen("127.0.0.1:0", slow, nil)
	if err != nil {
		t.Fatal(err)
	}
	c, err := Dial(context.Background(), s.Addr().String(), &ClientConfig{Pin: s.Fingerprint()})
	if err != nil {
		t.Fatal(err)
	}
	conntest.RoundTrip(t, c, "fast")
	for range 10 {
		if err := c.Send(context.Background(), []byte("slow")); err != nil {
			t.Fatal(err)
		}
	}
	conntest.WaitFor(t, func() bool { return s.Stats().Requests == 11 })
	if err := c.Close(); err != nil {
		t.Errorf("Conn.Close = %v", err)
	}
	closed := make(chan error, 1)
	go func() { closed <- s.Close() }()
	close(block) // the handlers were the last ones running
	if err := <-closed; err != nil {
		t.Errorf("Server.Close = %v", err)
	}
	if err := c.Close(); err != nil {
		t.Errorf("second Conn.Close = %v", err)
	}
	goleak.VerifyNone(t, leakcheck.Options()...)
	if c.Wire().PacketsSent == 0 || c.HandshakeRTT() <= 0 {
		t.Errorf("after Close: wire %+v, handshake %v", c.Wire(), c.HandshakeRTT())
	}
}

// TestRefusalsCountOnce: the Initial packets of one attempt count once;
// the same address a window later, or another address, count again.
func TestRefusalsCountOnce(t *testing.T) {
	var r refusals
	t0 := time.Unix(1000, 0)
	for _, tt := range []struct {
		addr string
		at   time.Duration
		want bool
	}{
		{"192.0.2.1:5000", 0, true},
		{"192.0.2.1:5000", time.Millisecond, false}, // the second Initial
		{"192.0.2.2:5000", time.Millisecond, true},
		{"192.0.2.1:5000", refusalWindow, true}, // a retry
	} {
		if got := r.isNew(tt.addr, t0.Add(tt.at)); got != tt.want {
			t.Errorf("isNew(%s, +%v) = %v, want %v", tt.addr, tt.at, got, tt.want)
		}
	}
	// Past 16 other addresses, the ring forgets: memory stays bounded.
	for i := range 16 {
		r.isNew(fmt.Sprintf("198.51.100.%d:1", i), t0.Add(refusalWindow+time.Millisecond))
	}
	if !r.isNew("192.0.2.1:5000", t0.Add(refusalWindow+time.Millisecond)) {
		t.Error("an address pushed out of the ring is not counted again")
	}
}

// TestSendAfterPeerGone: with MaxStreams replies waiting for Receive and
// the server gone, Send says so at once instead of waiting for a token.
func TestSendAfterPeerGone(t *testing.T) {
	s := startServer(t, "127.0.0.1:0", message.Echo, nil)
	c := dialTo(t, s)
	ctx, cancel := context.WithTimeout(context.Background(), conntest.Timeout)
	defer cancel()
	sendMany(t, ctx, c, MaxStreams, "x")
	conntest.WaitFor(t, func() bool { return len(c.inbox) == MaxStreams })
	s.Close()
	if err := c.Send(ctx, []byte("y")); !errors.Is(err, io.EOF) {
		t.Errorf("Send once the server closed = %v, want io.EOF", err)
	}
	// What had arrived is still received, then the end.
	for range MaxStreams {
		if got, err := c.Receive(ctx); err != nil || string(got) != "x" {
			t.Fatalf("Receive = %q, %v", got, err)
		}
	}
	if _, err := c.Receive(ctx); !errors.Is(err, io.EOF) {
		t.Errorf("Receive after the replies = %v, want io.EOF", err)
	}
}

// TestCrowdedRetry: past half the connection table, new clients go through
// QUIC's Retry (crowded), and are still served.
func TestCrowdedRetry(t *testing.T) {
	s := startServer(t, "127.0.0.1:0", message.Greet, &ServerConfig{MaxConns: 4})
	var conns []message.Conn
	for _, name := range []string{"a", "b", "c", "d"} {
		if crowded := s.crowded(nil); crowded != (len(conns) >= 2) {
			t.Errorf("with %d connections crowded = %v", len(conns), crowded)
		}
		c := dialTo(t, s)
		if got := conntest.RoundTrip(t, c, name); got != "Hello "+name+"!\n" {
			t.Errorf("client %s got %q", name, got)
		}
		conns = append(conns, c)
	}
}
