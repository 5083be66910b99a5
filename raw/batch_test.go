package raw

import (
	"context"
	"fmt"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/udplab/udplab/internal/conntest"
	"github.com/udplab/udplab/message"
)

// TestBatchedRepliesInOrder: many clients send bursts of numbered
// requests at once, so the server reads them in batches mixing clients;
// each client gets every reply, in the order it sent.
func TestBatchedRepliesInOrder(t *testing.T) {
	s := startServer(t, "udp4", "127.0.0.1:0", message.Greet)
	const clients, bursts, burst = 8, 20, 24
	var wg sync.WaitGroup
	for k := range clients {
		c := conntest.NewBursts(t, s.Addr(), 64)
		wg.Go(func() {
			next := 0
			for range bursts {
				reqs := make([][]byte, burst)
				for i := range reqs {
					reqs[i] = fmt.Appendf(nil, "c%d-%05d", k, next+i)
				}
				c.Send(t, reqs...)
				c.Receive(t, burst, func(reply []byte) {
					if want := fmt.Sprintf("Hello c%d-%05d!\n", k, next); string(reply) != want {
						t.Errorf("client %d: reply %q, want %q", k, reply, want)
					}
					next++
				})
			}
		})
	}
	wg.Wait()
	if st := s.Stats(); st.Requests != clients*bursts*burst || st.Replies != st.Requests {
		t.Errorf("stats = %+v, want %d requests all answered", st, clients*bursts*burst)
	}
}

// TestBatchedGuard: the checks hold within a batch: a request whose reply
// would exceed 3 times its wire bytes, and one from the server's own
// address, are dropped and counted; the requests around them are
// answered, in order.
func TestBatchedGuard(t *testing.T) {
	s := startServer(t, "udp4", "127.0.0.1:0", sized)
	if _, err := s.pc.WriteTo([]byte("a"), s.pc.LocalAddr()); err != nil { // a loop, as a forged source makes one
		t.Fatal(err)
	}
	c := conntest.NewBursts(t, s.Addr(), 64)
	c.Send(t, []byte("a"), []byte("63"), []byte("62"), []byte("a"))
	var got []int
	c.Receive(t, 3, func(reply []byte) { got = append(got, len(reply)) })
	if fmt.Sprint(got) != "[9 62 9]" {
		t.Errorf("reply sizes %v, want [9 62 9]: Hello a!, 62 bytes, Hello a!, and none to 63", got)
	}
	st := s.Stats()
	if st.LoopsDropped != 1 || st.AmplificationCapped != 1 || st.Requests != 4 || st.Replies != 3 {
		t.Errorf("stats = %+v, want 1 loop dropped, 1 reply capped, 3 of 4 requests answered", st)
	}
}

// TestBatchedServeAllocatesNothing locks the server's batched path at no
// allocation: a burst of 32 requests read with one call, answered, and
// the replies written with one.
func TestBatchedServeAllocatesNothing(t *testing.T) {
	if testing.Short() {
		t.Skip("measures allocations")
	}
	s := startServer(t, "udp4", "127.0.0.1:0", message.Greet)
	c := conntest.NewBursts(t, s.Addr(), 64)
	reqs := make([][]byte, 32)
	for i := range reqs {
		reqs[i] = []byte("Alice")
	}
	none := func([]byte) {}
	allocs := testing.AllocsPerRun(100, func() {
		c.Send(t, reqs...)
		c.Receive(t, len(reqs), none)
	})
	if allocs != 0 {
		t.Errorf("32 greetings through the batched server allocated %v times, want 0", allocs)
	}
}

// TestShutdownCutsOffTheBatch: Shutdown with its context done comes while
// the handler holds the second request of a batch. The requests not yet
// answered on the wire are cut off (the first one's reply was made but
// not sent), the one the guard dropped is not.
func TestShutdownCutsOffTheBatch(t *testing.T) {
	pc, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	c := dial(t, pc.LocalAddr())
	// Queued before the server reads: its first read takes them all.
	if _, err := pc.WriteTo([]byte("loop"), pc.LocalAddr()); err != nil {
		t.Fatal(err)
	}
	for _, req := range []string{"a", "b", "c"} {
		if err := c.Send(context.Background(), []byte(req)); err != nil {
			t.Fatal(err)
		}
	}
	entered := make(chan struct{})
	s := NewServer(pc, func(dst, req []byte) ([]byte, error) {
		if string(req) == "b" {
			close(entered)
			// Held until Shutdown's Close has closed the socket.
			for pc.SetWriteDeadline(time.Time{}) == nil {
				time.Sleep(time.Millisecond)
			}
		}
		return message.Echo(dst, req)
	}, nil)
	t.Cleanup(func() { s.Close() })
	<-entered
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	conntest.WantCutOff(t, s.Shutdown(ctx), 3)
	if st := s.Stats(); st.Requests != 3 || st.LoopsDropped != 1 {
		t.Errorf("stats = %+v, want 3 requests and 1 loop dropped", st)
	}
}
