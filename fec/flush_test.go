package fec

import (
	"context"
	"fmt"
	"github.com/udplab/udplab/internal/conntest"
	"strings"
	"testing"
	"testing/synctest"
	"time"
)

// sent describes the datagrams waiting at c, each as "kind index[/k+p] @
// offset from start", in arrival order.
func sent(t *testing.T, c *conntest.MemConn, start time.Time, d, p int) string {
	t.Helper()
	var out []string
	for {
		pkt, ok := c.Recv()
		if !ok {
			return strings.Join(out, ", ")
		}
		h, _, ok := parse(pkt.B, d, p)
		if !ok {
			t.Fatalf("malformed datagram % x", pkt.B)
		}
		at := pkt.At.Sub(start)
		if h.kind == kindData {
			out = append(out, fmt.Sprintf("data %d @%v", h.index, at))
		} else {
			out = append(out, fmt.Sprintf("parity %d/%d+%d @%v", h.index, h.k, h.p, at))
		}
	}
}

// TestFlushTimes checks when parity leaves, in virtual time: a partial
// group's exactly Flush after its first message, whatever came later; a
// full group's at once, with its last message; and none for a period with
// nothing sent.
func TestFlushTimes(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const flush = 10 * time.Millisecond
		n := conntest.NewMemNet()
		server := n.Listen("10.0.0.1:4000")
		c := newClient(t, n.Listen("10.0.0.2:4000"), server.LocalAddr(), &Config{DataShards: 4, ParityShards: 2, Flush: flush})
		ctx := context.Background()
		start := time.Now()
		step := func(name string, wait time.Duration, want string) {
			t.Helper()
			time.Sleep(wait)
			synctest.Wait()
			if got := sent(t, server, start, 4, 2); got != want {
				t.Errorf("%s:\n got %s\nwant %s", name, got, want)
			}
		}

		c.Send(ctx, []byte("a"))
		time.Sleep(3 * time.Millisecond)
		c.Send(ctx, []byte("bb"))
		step("partial group of 2", 20*time.Millisecond,
			"data 0 @0s, data 1 @3ms, parity 0/2+1 @10ms")

		for _, m := range []string{"c", "d", "e", "f"} {
			c.Send(ctx, []byte(m))
		}
		step("full group", 0,
			"data 0 @23ms, data 1 @23ms, data 2 @23ms, data 3 @23ms, parity 0/4+2 @23ms, parity 1/4+2 @23ms")
		step("nothing sent", time.Second, "")

		c.Send(ctx, []byte("g"))
		step("lone message", 0, "data 0 @1.023s")
		step("its flush", flush, "parity 0/1+1 @1.033s")

		want := Stats{DataSent: 7, ParitySent: 4, Groups: 3, Flushed: 2}
		if got := c.Stats(); got != want {
			t.Errorf("stats = %+v, want %+v", got, want)
		}
	})
}

// TestServerFlushTimes: a server's reply leaves at once and its parity
// Flush later, to a client that sent a shard made by hand.
func TestServerFlushTimes(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		n := conntest.NewMemNet()
		client := n.Listen("10.0.0.2:4000")
		s := newServer(t, n.Listen("10.0.0.1:4000"), func(dst, req []byte) ([]byte, error) {
			return append(dst, "re: "...), nil
		}, nil)
		start := time.Now()
		time.Sleep(time.Millisecond)
		client.WriteTo(dataShard(12345, 0, []byte("hi")), s.Addr())
		time.Sleep(time.Second)
		synctest.Wait()
		want := fmt.Sprintf("data 0 @1ms, parity 0/1+1 @%v", time.Millisecond+DefaultFlush)
		if got := sent(t, client, start, DefaultDataShards, DefaultParityShards); got != want {
			t.Errorf("server sent %s, want %s", got, want)
		}
	})
}
