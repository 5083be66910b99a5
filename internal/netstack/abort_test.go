package netstack

import (
	"context"
	"errors"
	"io"
	"net"
	"testing"
	"time"

	"github.com/udplab/udplab/link"
	"github.com/udplab/udplab/link/linktest"
)

// TestAbort resets a connection from each side in turn: the peer's Read
// fails with an error that is not io.EOF, as a kernel TCP peer's would
// after a RST, and the aborted side's calls return net.ErrClosed.
func TestAbort(t *testing.T) {
	for _, side := range []string{"dialer", "acceptor"} {
		t.Run(side, func(t *testing.T) {
			spc, cpc := udp(t), udp(t)
			accepted := make(chan net.Conn, 1)
			release := make(chan struct{})
			listen(t, spc, func(c net.Conn) {
				accepted <- c
				<-release // the test is done with c
			})
			c := dial(t, cpc, spc.LocalAddr())
			sc := <-accepted
			defer close(release)
			roundTripBetween(t, c, sc, []byte("ping"))

			aborted, peer := net.Conn(c), sc
			if side == "acceptor" {
				aborted, peer = sc, c
			}
			if !Abort(aborted) {
				t.Fatalf("Abort(%T) = false", aborted)
			}
			if _, err := peer.Read(make([]byte, 1)); err == nil || err == io.EOF {
				t.Errorf("peer Read after the other side's Abort: %v, want a reset", err)
			}
			if _, err := aborted.Write([]byte("x")); !errors.Is(err, net.ErrClosed) {
				t.Errorf("Write after Abort: %v, want net.ErrClosed", err)
			}
			Abort(aborted) // twice is harmless
		})
	}
	if Abort(&net.TCPConn{}) {
		t.Error("Abort(*net.TCPConn) = true, want false")
	}
}

// TestAbortStopsLinger aborts a connection whose Close lingers for
// acknowledgements that cannot come (the link is cut): the Close returns,
// rather than after its Linger, far longer than the hang guard.
func TestAbortStopsLinger(t *testing.T) {
	l := linktest.New(t, "")
	spc, cpc := udp(t), udp(t)
	listen(t, l.Wrap(spc, link.Down), func(c net.Conn) { io.Copy(io.Discard, c) })
	ctx, cancel := context.WithTimeout(context.Background(), hangGuard)
	defer cancel()
	c, err := Dial(ctx, l.Wrap(cpc, link.Up), spc.LocalAddr(), &Config{Linger: 10 * hangGuard})
	if err != nil {
		t.Fatal(err)
	}
	l.SetOutage(true)
	if _, err := c.Write([]byte("never acknowledged")); err != nil {
		t.Fatal(err)
	}
	closed := make(chan struct{})
	go func() {
		defer close(closed)
		c.Close() // lingers: nothing gets through
	}()
	waitFor(t, "Close to linger", func() bool { return c.st.closed.Load() })
	Abort(c)
	select {
	case <-closed:
	case <-time.After(hangGuard):
		t.Fatal("Close still lingering after Abort")
	}
}
