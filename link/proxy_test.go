package link

import (
	"bytes"
	"context"
	"fmt"
	"math"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/udplab/udplab/internal/conntest"
	"github.com/udplab/udplab/message"
	"github.com/udplab/udplab/raw"
)

// proxied starts a raw greeting server and a proxy in front of it with the
// given link, all on loopback, and returns a client dialled to the proxy.
func proxied(t *testing.T, spec string, opts *Options) (*raw.Conn, *Proxy, *Link) {
	t.Helper()
	srv, err := raw.Listen("127.0.0.1:0", message.Greet, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	s, err := Parse(spec)
	if err != nil {
		t.Fatal(err)
	}
	l, err := New(s, opts)
	if err != nil {
		t.Fatal(err)
	}
	p, err := NewProxy(ProxyConfig{Listen: "127.0.0.1:0", To: srv.Addr().String(), Link: l, Idle: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close(); l.Close() })
	c, err := raw.Dial(p.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c, p, l
}

type reply struct {
	seq int
	rtt time.Duration
}

// greetMany sends n greetings named by sequence number, spaced by gap, and
// collects replies until quiet has passed with none: every wait is bounded.
func greetMany(t *testing.T, c *raw.Conn, n int, gap, quiet time.Duration, size int) []reply {
	t.Helper()
	sent := make([]time.Time, n)
	var mu sync.Mutex
	pad := strings.Repeat("x", max(0, size-8))
	go func() {
		for i := range n {
			mu.Lock()
			sent[i] = time.Now()
			mu.Unlock()
			c.Send(context.Background(), fmt.Appendf(nil, "%08d%s", i, pad))
			if gap > 0 {
				time.Sleep(gap)
			}
		}
	}()
	var got []reply
	deadline := time.Now().Add(time.Duration(n)*gap + 10*time.Second)
	for time.Now().Before(deadline) {
		ctx, cancel := context.WithTimeout(context.Background(), quiet+time.Duration(n-len(got))*gap)
		msg, err := c.Receive(ctx)
		cancel()
		if err != nil {
			break
		}
		seq, err := strconv.Atoi(strings.TrimPrefix(string(msg[:14]), "Hello "))
		if err != nil {
			t.Fatalf("reply %q", msg)
		}
		mu.Lock()
		got = append(got, reply{seq, time.Since(sent[seq])})
		mu.Unlock()
	}
	return got
}

// TestProxyLoss: 20% loss each way lets 0.8 × 0.8 = 64% of round trips
// through.
func TestProxyLoss(t *testing.T) {
	const n = 2000
	c, _, l := proxied(t, "loss=20%", nil)
	got := greetMany(t, c, n, 50*time.Microsecond, 300*time.Millisecond, 8)
	want, sigma := 0.64*n, math.Sqrt(n*0.64*0.36)
	if math.Abs(float64(len(got))-want) > 3*sigma {
		t.Errorf("%d of %d round trips completed, want %.0f ± %.0f", len(got), n, want, 3*sigma)
	}
	up, down := l.Stats(Up), l.Stats(Down)
	if up.Offered != n || down.Offered != up.Delivered || uint64(len(got)) != down.Delivered {
		t.Errorf("up %+v, down %+v, %d replies: the counters do not add up", up, down, len(got))
	}
}

// TestProxyDelay: 50 ms ± 10 ms each way gives a median round trip near
// 100 ms, and jitter reorders nothing.
func TestProxyDelay(t *testing.T) {
	c, _, _ := proxied(t, "delay=50ms,jitter=10ms", nil)
	got := greetMany(t, c, 200, 2*time.Millisecond, 300*time.Millisecond, 8)
	if len(got) != 200 {
		t.Fatalf("%d of 200 replies", len(got))
	}
	rtts := make([]time.Duration, len(got))
	for i, r := range got {
		rtts[i] = r.rtt
		if r.seq != i {
			t.Fatalf("reply %d is for request %d: out of order", i, r.seq)
		}
	}
	slices.Sort(rtts)
	if med := rtts[len(rtts)/2]; med < 95*time.Millisecond || med > 115*time.Millisecond {
		t.Errorf("median round trip %v, want about 100ms", med)
	}
}

func TestProxyReorder(t *testing.T) {
	c, _, l := proxied(t, "delay=20ms,reorder=25%", nil)
	got := greetMany(t, c, 300, time.Millisecond, 200*time.Millisecond, 8)
	late := 0
	for i := 1; i < len(got); i++ {
		if got[i].seq < got[i-1].seq {
			late++
		}
	}
	if late == 0 || l.Stats(Up).Reordered == 0 {
		t.Errorf("reorder=25%%: %d replies out of order, %d reordered; want some", late, l.Stats(Up).Reordered)
	}
}

// TestProxyRate: at 1 Mbit/s a 1008-byte reply takes (1008+28)·8 µs, so
// greetings with 1000-byte names top out near 120 round trips a second.
func TestProxyRate(t *testing.T) {
	c, _, _ := proxied(t, "rate=1mbit", nil)
	const size, window = 1000, 4
	name := bytes.Repeat([]byte("r"), size)
	ctx := context.Background()
	for range window {
		c.Send(ctx, name)
	}
	var first time.Time
	count := 0
	for end := time.Now().Add(1500 * time.Millisecond); time.Now().Before(end); {
		rctx, cancel := context.WithTimeout(ctx, time.Second)
		_, err := c.Receive(rctx)
		cancel()
		if err != nil {
			t.Fatal(err)
		}
		if count == 0 {
			first = time.Now()
		}
		count++
		c.Send(ctx, name)
	}
	rate := float64(count-1) / time.Since(first).Seconds()
	want := 1e6 / float64((size+8+HeaderBytes)*8)
	if math.Abs(rate-want)/want > 0.05 {
		t.Errorf("%.1f round trips/s, want %.1f ± 5%%", rate, want)
	}
}

// TestProxySameSeedSameTrace: the same traffic through two proxies with
// the same seed gives the same fates, packet by packet. How up and down
// records interleave depends on timing; each line names its direction and
// index, so sorted traces are equal exactly when every packet's fate is.
func TestProxySameSeedSameTrace(t *testing.T) {
	run := func() string {
		var tr bytes.Buffer
		c, p, l := proxied(t, "loss=20%,dup=5%,seed=11", &Options{Trace: &tr})
		greetMany(t, c, 300, 100*time.Microsecond, 200*time.Millisecond, 8)
		p.Close()
		l.Close()
		lines := strings.Split(strings.TrimSpace(tr.String()), "\n")
		slices.Sort(lines)
		return strings.Join(lines, "\n")
	}
	a, b := run(), run()
	if a != b || strings.Count(a, "\n") < 500 {
		t.Errorf("traces differ or are short:\n%.300s\n---\n%.300s", a, b)
	}
}

func TestProxyExpiresIdleClients(t *testing.T) {
	srv, err := raw.Listen("127.0.0.1:0", message.Greet, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	l, _ := New(Spec{}, nil)
	defer l.Close()
	p, err := NewProxy(ProxyConfig{Listen: "127.0.0.1:0", To: srv.Addr().String(), Link: l, Idle: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	c, err := raw.Dial(p.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if got := conntest.RoundTrip(t, c, "Alice"); got != "Hello Alice!\n" {
		t.Fatalf("through the proxy: %q", got)
	}
	if p.Clients() != 1 {
		t.Fatalf("Clients = %d, want 1", p.Clients())
	}
	conntest.WaitFor(t, func() bool { return p.Clients() == 0 && p.Expired() == 1 })
	// A client coming back gets a new upstream socket.
	if got := conntest.RoundTrip(t, c, "Alice"); got != "Hello Alice!\n" {
		t.Errorf("after expiry: %q", got)
	}
}

var _ net.Addr = memAddr("")
