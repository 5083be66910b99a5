package quic

import (
	"bytes"
	"context"
	"errors"
	"testing"

	"github.com/udplab/udplab/internal/budget"
	"github.com/udplab/udplab/internal/conntest"
)

// serveHolder starts a server of a conntest.Holder.
func serveHolder(t testing.TB) (*Server, *conntest.Holder) {
	h := conntest.NewHolder()
	s := startServer(t, "127.0.0.1:0", h.Handle, nil)
	t.Cleanup(h.Free)
	return s, h
}

// TestShutdownDrains: a request being served when Shutdown comes is
// answered, and Shutdown returns nil.
func TestShutdownDrains(t *testing.T) {
	s, h := serveHolder(t)
	c := dialTo(t, s)
	ctx, cancel := context.WithTimeout(context.Background(), conntest.Timeout)
	defer cancel()
	if err := c.Send(ctx, []byte("wait first")); err != nil {
		t.Fatal(err)
	}
	<-h.Entered
	done := make(chan error)
	go func() { done <- s.Shutdown(context.Background()) }()
	conntest.WaitFor(t, func() bool { return s.drain.Err() != nil })
	h.Free()
	if got, err := c.Receive(ctx); err != nil || string(got) != "wait first" {
		t.Fatalf("reply = %q, %v; want wait first", got, err)
	}
	if err := <-done; err != nil {
		t.Errorf("Shutdown = %v, want nil", err)
	}
}

// TestShutdownCutOff: with ctx already done, Shutdown closes every
// connection while a request is being served, and says it cut that one
// off.
func TestShutdownCutOff(t *testing.T) {
	s, h := serveHolder(t)
	c := dialTo(t, s)
	ctx, cancel := context.WithTimeout(context.Background(), conntest.Timeout)
	defer cancel()
	if err := c.Send(ctx, []byte("wait late")); err != nil {
		t.Fatal(err)
	}
	<-h.Entered
	gone, stop := context.WithCancel(context.Background())
	stop()
	done := make(chan error)
	go func() { done <- s.Shutdown(gone) }()
	if _, err := c.Receive(ctx); err == nil {
		t.Error("a reply came through a connection cut off")
	}
	h.Free()
	err := <-done
	conntest.WantCutOff(t, err, 1)
}

// TestOverBudget: a request stream that needs more buffer than the
// server's budget has left is refused and counted, and the connection goes
// on; the budget is whole again after.
func TestOverBudget(t *testing.T) {
	s := startServer(t, "127.0.0.1:0", conntest.NewHolder().Handle, &ServerConfig{MaxBuffered: 16 << 10})
	c := dialTo(t, s)
	ctx, cancel := context.WithTimeout(context.Background(), conntest.Timeout)
	defer cancel()
	// The server may refuse the stream while Send writes it.
	_ = c.Send(ctx, bytes.Repeat([]byte("x"), 64<<10))
	if got := conntest.RoundTrip(t, c, "after"); got != "after" {
		t.Errorf("reply = %q, want after and nothing for the large one", got)
	}
	conntest.WaitFor(t, func() bool { return s.Stats().OverBudget == 1 && s.budget.Left() == 16<<10 })
}

// TestReadWithinTakesWhatItGrows: the budget pays for every byte a buffer
// grows by, and a read that would pass it stops.
func TestReadWithinTakesWhatItGrows(t *testing.T) {
	b := budget.New(1 << 20)
	msg, held, err := readWithin(chunks(make([]byte, 3000)), nil, b)
	if err != nil || len(msg) != 3000 || held != cap(msg) || b.Left() != 1<<20-int64(held) {
		t.Errorf("3000 bytes: %d read, %d held of cap %d, %d left, %v", len(msg), held, cap(msg), b.Left(), err)
	}
	if _, _, err := readWithin(chunks(make([]byte, 1<<20)), nil, budget.New(64<<10)); !errors.Is(err, errOverBudget) {
		t.Errorf("1 MiB within 64 KiB: %v, want errOverBudget", err)
	}
}
