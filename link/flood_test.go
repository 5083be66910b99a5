package link

import (
	"bytes"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"syscall"
	"testing"
	"testing/synctest"
	"time"

	"github.com/udplab/udplab/message"
	"github.com/udplab/udplab/raw"
)

// spoofConn is a proxy's listening socket on which every datagram claims
// to come from the address it carries, so one sender is a flood of new
// source addresses.
type spoofConn struct{ *memConn }

func (c spoofConn) ReadFrom(b []byte) (int, net.Addr, error) {
	n, _, err := c.memConn.ReadFrom(b)
	return n, memAddr(b[:n]), err
}

// sourceFlood is a proxy whose upstream sockets fail past upstreams, with
// its log in a buffer, inside a synctest bubble.
type sourceFlood struct {
	proxy  *Proxy
	sender *memConn
	log    *bytes.Buffer
}

func newSourceFlood(t *testing.T, maxClients, upstreams int, idle time.Duration) *sourceFlood {
	t.Helper()
	l := newLink(t, "", nil)
	n := newMemNet()
	srv := raw.NewServer(n.listen("server"), message.Greet, nil)
	ups := 0
	dial := func() (net.PacketConn, error) { // called by the proxy's reader only
		if ups >= upstreams {
			return nil, syscall.EMFILE
		}
		ups++
		return n.listen(fmt.Sprintf("upstream%d", ups)), nil
	}
	f := &sourceFlood{sender: n.listen("sender"), log: &bytes.Buffer{}}
	logger := slog.New(slog.NewTextHandler(f.log, &slog.HandlerOptions{Level: slog.LevelDebug}))
	p, err := NewProxyConn(spoofConn{n.listen("proxy")}, memAddr("server"), dial,
		ProxyConfig{Link: l, Idle: idle, MaxClients: maxClients, Logger: logger})
	if err != nil {
		t.Fatal(err)
	}
	f.proxy = p
	t.Cleanup(func() { f.sender.Close(); p.Close(); srv.Close() })
	return f
}

// send sends one datagram from each of the sources from to to-1.
func (f *sourceFlood) send(t *testing.T, from, to int) {
	t.Helper()
	for i := from; i < to; i++ {
		if _, err := f.sender.WriteTo(fmt.Appendf(nil, "src%d", i), f.proxy.Addr()); err != nil {
			t.Fatal(err)
		}
	}
	synctest.Wait()
}

func (f *sourceFlood) count(msg string) int { return strings.Count(f.log.String(), msg) }

// TestSourceFloodLogsBounded: a thousand new sources past the open-files
// limit and past MaxClients are refused and counted, with one line per
// kind a second, the next carrying the count suppressed.
func TestSourceFloodLogsBounded(t *testing.T) {
	for _, tt := range []struct {
		name                  string
		maxClients, upstreams int
		msg                   string
	}{
		{"open files", 100, 5, "cannot open an upstream socket"},
		{"max clients", 5, 100, "it has MaxClients already"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				f := newSourceFlood(t, tt.maxClients, tt.upstreams, time.Minute)
				f.send(t, 0, 1000)
				if c, r := f.proxy.Clients(), f.proxy.Refused(); c != 5 || r != 995 {
					t.Errorf("clients %d, refused %d; want 5, 995", c, r)
				}
				if got := f.count(tt.msg); got != 1 {
					t.Errorf("%d lines say %q, want 1:\n%s", got, tt.msg, f.log)
				}
				time.Sleep(time.Second)
				f.send(t, 1000, 1001)
				if got := f.count(tt.msg); got != 2 || !strings.Contains(f.log.String(), "suppressed=994") {
					t.Errorf("a second later: %d lines, want 2, the last with suppressed=994:\n%s", got, f.log)
				}
			})
		})
	}
}

// TestSourceFloodWavesRelease: waves of new sources come and expire; the
// client table empties and is made anew, so a wave leaves nothing behind.
func TestSourceFloodWavesRelease(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newSourceFlood(t, 1000, 1<<30, 40*time.Millisecond)
		for wave := range 3 {
			f.send(t, wave*500, wave*500+500)
			if c := f.proxy.Clients(); c != 500 {
				t.Fatalf("wave %d: %d clients, want 500", wave, c)
			}
			time.Sleep(time.Second) // past Idle, and past the log's interval
			synctest.Wait()
			f.proxy.mu.Lock()
			c, peak := len(f.proxy.clients), f.proxy.peak
			f.proxy.mu.Unlock()
			if c != 0 || peak != 0 || f.proxy.Expired() != uint64(500*(wave+1)) {
				t.Fatalf("wave %d expired: %d clients, peak %d, %d expired; want an empty new map", wave, c, peak, f.proxy.Expired())
			}
		}
		if n := f.count("link: new client"); n != 3 {
			t.Errorf("%d debug lines for new clients, want one per wave, a second apart", n)
		}
	})
}
