package tcp

import (
	"bytes"
	"context"
	"errors"
	"io"
	"syscall"
	"testing"

	"github.com/udplab/udplab/internal/conntest"
	"github.com/udplab/udplab/message"
)

// TestReaderGrowsAsBytesArrive: a header declaring MaxMessage and a few
// bytes of it make the reader hold its first page and nothing from the
// budget; the buffer grows only as the message's bytes arrive.
func TestReaderGrowsAsBytesArrive(t *testing.T) {
	stream := append([]byte{0, 0x10, 0, 0}, bytes.Repeat([]byte("x"), 28)...)
	r := newReader(bytes.NewReader(stream), true)
	if _, err := r.frame(); !errors.Is(err, io.EOF) {
		t.Fatalf("frame() = %v, want EOF inside the frame", err)
	}
	if len(r.buf) != readBufferSize || r.held != 0 {
		t.Errorf("after 32 bytes of a 1 MiB frame: buffer %d bytes, %d taken; want %d, 0", len(r.buf), r.held, readBufferSize)
	}
}

// TestOverBudget: a connection whose request needs more buffer than the
// server's budget has left is closed and counted; its bytes go back to the
// budget, and other connections are served.
func TestOverBudget(t *testing.T) {
	s := startServer(t, "127.0.0.1:0", message.Greet, &ServerConfig{MaxBuffered: 16 << 10})
	big := rawDial(t, s.Addr())
	// 4 KiB grows to 8, 16 and 32 KiB: 28 KiB more than the first page.
	frame := append([]byte{0, 0x10, 0, 0}, bytes.Repeat([]byte("x"), 20<<10)...)
	if _, err := big.Write(frame); err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadAll(big); err != nil && !errors.Is(err, syscall.ECONNRESET) {
		t.Fatalf("the over-budget connection: %v, want it closed", err)
	}
	conntest.WaitFor(t, func() bool { return s.Stats().OverBudget == 1 && s.budget.Left() == 16<<10 })
	if got := conntest.RoundTrip(t, dial(t, s.Addr()), "Ann"); got != "Hello Ann!\n" {
		t.Errorf("reply = %q", got)
	}
}

// serveHolder starts a server of a conntest.Holder.
func serveHolder(t testing.TB) (*Server, *conntest.Holder) {
	h := conntest.NewHolder()
	s := startServer(t, "127.0.0.1:0", h.Handle, nil)
	t.Cleanup(h.Free)
	return s, h
}

// TestShutdownDrains: a request in the handler when Shutdown comes is
// answered; then the server ends the stream, and once the client closes,
// Shutdown returns nil. An idle connection ends at once, and no new
// connection is accepted.
func TestShutdownDrains(t *testing.T) {
	s, b := serveHolder(t)
	c, idle := dial(t, s.Addr()), dial(t, s.Addr())
	if got := conntest.RoundTrip(t, idle, "hi"); got != "hi" {
		t.Fatalf("reply = %q, want hi", got)
	}
	ctx, cancel := context.WithTimeout(context.Background(), conntest.Timeout)
	defer cancel()
	if err := c.Send(ctx, []byte("wait first")); err != nil {
		t.Fatal(err)
	}
	<-b.Entered
	done := make(chan error)
	go func() { done <- s.Shutdown(context.Background()) }()
	conntest.WaitFor(t, s.draining.Load)
	b.Free()
	if got, err := c.Receive(ctx); err != nil || string(got) != "wait first" {
		t.Fatalf("reply = %q, %v; want wait first", got, err)
	}
	for _, conn := range []*Conn{c, idle} {
		if _, err := conn.Receive(ctx); !errors.Is(err, io.EOF) {
			t.Errorf("after the replies: %v, want EOF", err)
		}
		conn.Close()
	}
	if err := <-done; err != nil {
		t.Errorf("Shutdown = %v, want nil", err)
	}
	if _, err := Dial(ctx, s.Addr().String()); err == nil {
		t.Error("a new connection was accepted after Shutdown")
	}
}

// TestShutdownCutOff: with ctx already done, Shutdown closes every
// connection while the handler holds a request, and says it cut that one
// off.
func TestShutdownCutOff(t *testing.T) {
	s, b := serveHolder(t)
	c := dial(t, s.Addr())
	ctx, cancel := context.WithTimeout(context.Background(), conntest.Timeout)
	defer cancel()
	if err := c.Send(ctx, []byte("wait late")); err != nil {
		t.Fatal(err)
	}
	<-b.Entered
	done := make(chan error)
	gone, stop := context.WithCancel(context.Background())
	stop()
	go func() { done <- s.Shutdown(gone) }()
	if _, err := c.Receive(ctx); err == nil {
		t.Error("a reply came through a connection cut off")
	}
	b.Free()
	err := <-done
	conntest.WantCutOff(t, err, 1)
}
