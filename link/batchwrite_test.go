package link

import (
	"fmt"
	"net"
	"slices"
	"strconv"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/udplab/udplab/internal/conntest"
	"github.com/udplab/udplab/message"
	"github.com/udplab/udplab/raw"
)

// TestProxyBatchedWritesBothWays sends bursts of numbered greetings
// through a proxy on loopback, with nothing to impair and with a delay, so
// that both directions write batches (GSO runs where the kernel has them)
// from the reading goroutines and from the delay loop: every reply comes,
// in order, and both directions count each datagram once.
func TestProxyBatchedWritesBothWays(t *testing.T) {
	for _, spec := range []string{"", "delay=5ms"} {
		t.Run("spec="+spec, func(t *testing.T) {
			srv, err := raw.Listen("127.0.0.1:0", message.Greet, nil)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { srv.Close() })
			l := newLink(t, spec, nil)
			p, err := NewProxy(ProxyConfig{Listen: "127.0.0.1:0", To: srv.Addr().String(), Link: l})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { p.Close() })
			c := conntest.NewBursts(t, p.Addr(), 64)
			const bursts, burst = 20, 40 // a burst is more than a batch
			next := 0
			for range bursts {
				reqs := make([][]byte, burst)
				for i := range reqs {
					reqs[i] = fmt.Appendf(nil, "%06d", next+i)
				}
				c.Send(t, reqs...)
				c.Receive(t, burst, func(reply []byte) {
					if want := fmt.Sprintf("Hello %06d!\n", next); string(reply) != want {
						t.Fatalf("reply %q, want %q", reply, want)
					}
					next++
				})
			}
			for _, d := range []Direction{Up, Down} {
				// A write is counted once its call returns, which may be
				// after the receiver has it.
				conntest.WaitFor(t, func() bool { return l.Stats(d).Delivered >= bursts*burst })
				if st := l.Stats(d); st.Offered != bursts*burst || st.Delivered != st.Offered || st.WriteErrors != 0 {
					t.Errorf("%v: %+v, want %d offered and delivered", d, st, bursts*burst)
				}
			}
		})
	}
}

// TestOutboxRuns: an outbox writes its datagrams in the order added, a
// batch per run of one socket, counts each in its direction, and returns
// the pooled copies it was given.
func TestOutboxRuns(t *testing.T) {
	l := newLink(t, "", nil)
	d := l.dirs[Up]
	src, other := bigConn(t), bigConn(t)
	a, b := bigConn(t), bigConn(t)
	ob := newOutbox()
	var wantA, wantB []string
	for i := range 100 {
		out, to, want := net.PacketConn(src), a.LocalAddr(), &wantA
		switch {
		case i%10 == 9:
			out, to, want = other, b.LocalAddr(), &wantB // another socket cuts the run
		case i%7 == 3:
			to, want = b.LocalAddr(), &wantB // another address, the same socket
		}
		msg := strconv.Itoa(i)
		*want = append(*want, msg)
		ob.add(d, []byte(msg), getBuf([]byte(msg)), to, out)
		if i%33 == 32 {
			ob.flush()
		}
	}
	ob.flush()
	if st := d.stats(); st.Delivered != 100 || st.DeliveredBytes != 190 || st.WriteErrors != 0 {
		t.Errorf("stats %+v, want 100 datagrams (190 bytes) delivered", st)
	}
	for _, rx := range []struct {
		c    *net.UDPConn
		want []string
	}{{a, wantA}, {b, wantB}} {
		buf := make([]byte, 64)
		var got []string
		for range rx.want {
			rx.c.SetReadDeadline(time.Now().Add(conntest.Timeout))
			n, _, err := rx.c.ReadFrom(buf)
			if err != nil {
				t.Fatal(err)
			}
			got = append(got, string(buf[:n]))
		}
		if !slices.Equal(got, rx.want) {
			t.Errorf("%v received %v, want %v", rx.c.LocalAddr(), got, rx.want)
		}
	}
}

// TestProxyDelayBurst runs in virtual time: a burst of requests at one
// instant through 20ms each way comes back exactly 40ms later, every
// reply in order: the delay loop hands all that is due at once to its
// socket together, in the order it was due.
func TestProxyDelayBurst(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		m := newMemProxy(t, "delay=20ms", time.Minute)
		const n = 100 // more than a batch
		start := time.Now()
		for i := range n {
			m.send(t, fmt.Appendf(nil, "%04d", i))
		}
		b := make([]byte, 64)
		for i := range n {
			k, _, err := m.client.ReadFrom(b)
			if err != nil {
				t.Fatal(err)
			}
			if seq, err := strconv.Atoi(strings.TrimSuffix(strings.TrimPrefix(string(b[:k]), "Hello "), "!\n")); err != nil || seq != i {
				t.Fatalf("reply %d is %q: out of order", i, b[:k])
			}
			if rtt := time.Since(start); rtt != 40*time.Millisecond {
				t.Fatalf("reply %d after %v, want 40ms exactly", i, rtt)
			}
		}
		for _, d := range []Direction{Up, Down} {
			if st := m.link.Stats(d); st.Delivered != n || st.Lateness.Count != n {
				t.Errorf("%v: %+v, want %d delivered and timed", d, st, n)
			}
		}
	})
}
