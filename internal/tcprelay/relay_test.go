package tcprelay

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/udplab/udplab/internal/leakcheck"
	"github.com/udplab/udplab/link"
	"github.com/udplab/udplab/link/linktest"
)

func TestMain(m *testing.M) { leakcheck.VerifyTestMain(m) }

// hangGuard bounds every blocking step of a test. It is no assertion on
// speed: it only keeps a broken test from hanging a busy machine's run.
const hangGuard = 2 * time.Minute

// newRelay starts a link with spec and a Relay through it to to; both
// close at the end of the test.
func newRelay(t testing.TB, spec, to string, cfg Config) (*Relay, *link.Link) {
	t.Helper()
	l := linktest.New(t, spec)
	cfg.Link, cfg.To = l, to
	r, err := Listen("127.0.0.1:0", cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	return r, l
}

// server accepts kernel TCP connections on loopback and runs serve on
// each; it stops, and waits for them, at the end of the test.
func server(t testing.TB, serve func(*net.TCPConn)) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.Close()
				c.SetDeadline(time.Now().Add(hangGuard))
				serve(c.(*net.TCPConn))
			}()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		wg.Wait()
	})
	return ln.Addr().String()
}

// echo copies what it reads back, then closes its writing half.
func echo(c *net.TCPConn) {
	if _, err := io.Copy(c, c); err == nil {
		c.CloseWrite()
	}
}

// dial connects to the relay; the connection closes at the end of the test.
func dial(t testing.TB, r *Relay) *net.TCPConn {
	t.Helper()
	c, err := net.Dial("tcp", r.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	c.SetDeadline(time.Now().Add(hangGuard))
	t.Cleanup(func() { c.Close() })
	return c.(*net.TCPConn)
}

// payload returns n bytes from a seeded source.
func payload(seed uint64, n int) []byte {
	r := rand.New(rand.NewPCG(seed, 1))
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

// echoThrough sends data through the relay to an echo server, closes its
// writing half, and reads everything back up to the echo's FIN.
func echoThrough(t testing.TB, c *net.TCPConn, data []byte) {
	t.Helper()
	errc := make(chan error, 1)
	go func() {
		_, err := c.Write(data)
		if err == nil {
			err = c.CloseWrite()
		}
		errc <- err
	}()
	got, err := io.ReadAll(c) // up to the echo's FIN, passed on
	if err != nil {
		t.Fatalf("reading the echo after %d bytes: %v", len(got), err)
	}
	if err := <-errc; err != nil {
		t.Fatalf("writing: %v", err)
	}
	if !bytes.Equal(got, data) {
		t.Fatalf("%d bytes sent, %d came back, equal=%v", len(data), len(got), bytes.Equal(got, data))
	}
}

// idle waits until r relays no connection, failing after hangGuard.
func idle(t testing.TB, r *Relay) Stats {
	t.Helper()
	for limit := time.Now().Add(hangGuard); ; time.Sleep(time.Millisecond) {
		if st := r.Stats(); st.Active == 0 {
			return st
		}
		if time.Now().After(limit) {
			t.Fatalf("connections still open: %+v", r.Stats())
		}
	}
}

// TestEcho sends 1 MB of random bytes each way, in two connections one
// after the other, and gets them back intact; FINs pass both ways, and
// the connections end cleanly.
func TestEcho(t *testing.T) {
	r, _ := newRelay(t, "", server(t, echo), Config{})
	const n = 1 << 20
	for i := range 2 {
		echoThrough(t, dial(t, r), payload(uint64(i), n))
	}
	st := idle(t, r)
	if st.Accepted != 2 || st.Reset != 0 || st.Refused != 0 || st.BytesUp != 2*n || st.BytesDown != 2*n {
		t.Errorf("stats %+v, want 2 accepted, none reset, %d bytes each way", st, 2*n)
	}
}

// TestLossy relays 256 KiB each way over a link that loses 5% of the
// datagrams each way and delays them 20 ms: the bytes arrive intact, and
// the middle leg retransmitted.
func TestLossy(t *testing.T) {
	r, l := newRelay(t, "loss=5%,delay=20ms,seed=7", server(t, echo), Config{})
	echoThrough(t, dial(t, r), payload(3, 256<<10))
	st := idle(t, r)
	if st.Reset != 0 {
		t.Errorf("a reset: %+v", st)
	}
	if st.Near.Retransmissions == 0 || st.Far.Retransmissions == 0 {
		t.Errorf("retransmissions near %d, far %d: want some each way", st.Near.Retransmissions, st.Far.Retransmissions)
	}
	for _, d := range []link.Direction{link.Up, link.Down} {
		if l.Stats(d).Lost == 0 {
			t.Errorf("the link lost nothing %v", d)
		}
	}
	t.Logf("near %+v", st.Near)
	t.Logf("far %+v", st.Far)
}

// TestServerHalfClose checks the other order: the server writes and
// closes first, and the client's data still gets through after the
// client has read EOF.
func TestServerHalfClose(t *testing.T) {
	greeting := payload(4, 100_000)
	got := make(chan [32]byte, 1)
	to := server(t, func(c *net.TCPConn) {
		c.Write(greeting)
		c.CloseWrite()
		h := sha256.New()
		io.Copy(h, c)
		got <- [32]byte(h.Sum(nil))
	})
	r, _ := newRelay(t, "delay=5ms", to, Config{})
	c := dial(t, r)
	b, err := io.ReadAll(c)
	if err != nil || !bytes.Equal(b, greeting) {
		t.Fatalf("read %d bytes of the greeting, %v", len(b), err)
	}
	data := payload(5, 200_000)
	if _, err := c.Write(data); err != nil {
		t.Fatal(err)
	}
	c.CloseWrite()
	if <-got != sha256.Sum256(data) {
		t.Error("the server read something else")
	}
	if st := idle(t, r); st.Reset != 0 {
		t.Errorf("a reset: %+v", st)
	}
}

// isReset reports whether err is what a reset leaves: an error, not EOF.
func isReset(err error) bool { return err != nil && !errors.Is(err, io.EOF) }

// TestReset passes resets on both ways: a server that resets, a client
// that resets, and a server that is not there.
func TestReset(t *testing.T) {
	t.Run("server", func(t *testing.T) {
		to := server(t, func(c *net.TCPConn) {
			io.ReadFull(c, make([]byte, 4))
			c.SetLinger(0)
			c.Close()
		})
		r, _ := newRelay(t, "", to, Config{})
		c := dial(t, r)
		c.Write([]byte("ping"))
		if _, err := io.ReadAll(c); !isReset(err) {
			t.Errorf("client read %v, want a reset", err)
		}
		if st := idle(t, r); st.Reset != 1 {
			t.Errorf("stats %+v, want 1 reset", st)
		}
	})
	t.Run("client", func(t *testing.T) {
		readErr := make(chan error, 1)
		to := server(t, func(c *net.TCPConn) {
			c.Write([]byte("hello"))
			_, err := io.ReadAll(c)
			readErr <- err
		})
		r, _ := newRelay(t, "", to, Config{})
		c := dial(t, r)
		io.ReadFull(c, make([]byte, 5))
		c.SetLinger(0)
		c.Close()
		if err := <-readErr; !isReset(err) {
			t.Errorf("server read %v, want a reset", err)
		}
		idle(t, r)
	})
	t.Run("no server", func(t *testing.T) {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		to := ln.Addr().String()
		ln.Close() // nobody listens there now
		r, _ := newRelay(t, "", to, Config{})
		// On loopback under load the reset may come back before connect
		// returns.
		if c, err := net.Dial("tcp", r.Addr().String()); err == nil {
			c.SetDeadline(time.Now().Add(hangGuard))
			if _, err := io.ReadAll(c); !isReset(err) {
				t.Errorf("client read %v, want a reset", err)
			}
			c.Close()
		} else if !isReset(err) {
			t.Fatalf("dial = %v, want success or a reset", err)
		}
		if st := idle(t, r); st.DialFailed != 1 || st.Reset != 1 {
			t.Errorf("stats %+v, want 1 failed connect, 1 reset", st)
		}
	})
}

// TestMaxConns refuses, with a reset, a client past the bound.
func TestMaxConns(t *testing.T) {
	r, _ := newRelay(t, "", server(t, echo), Config{MaxConns: 1})
	first := dial(t, r)
	echoOnce(t, first, "one")
	// On loopback the reset may come back before connect returns.
	if second, err := net.Dial("tcp", r.Addr().String()); err == nil {
		second.SetDeadline(time.Now().Add(hangGuard))
		if _, err := io.ReadAll(second); !isReset(err) {
			t.Errorf("second client read %v, want a reset", err)
		}
		second.Close()
	}
	if st := r.Stats(); st.Refused != 1 || st.Accepted != 1 || st.Active != 1 {
		t.Errorf("stats %+v, want 1 accepted and open, 1 refused", st)
	}
	echoOnce(t, first, "still")
}

// echoOnce writes msg and reads it back.
func echoOnce(t testing.TB, c net.Conn, msg string) {
	t.Helper()
	if _, err := c.Write([]byte(msg)); err != nil {
		t.Fatal(err)
	}
	b := make([]byte, len(msg))
	if _, err := io.ReadFull(c, b); err != nil || string(b) != msg {
		t.Fatalf("echo %q, %v; want %q", b, err, msg)
	}
}

// TestClose resets the connections in flight, stops every goroutine and
// refuses new clients; twice is harmless.
func TestClose(t *testing.T) {
	r, _ := newRelay(t, "delay=5ms", server(t, echo), Config{})
	c := dial(t, r)
	echoOnce(t, c, "ping")
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	if err := r.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if _, err := io.ReadAll(c); !isReset(err) {
		t.Errorf("client read after Close: %v, want a reset", err)
	}
	if c, err := net.Dial("tcp", r.Addr().String()); err == nil {
		c.Close()
		t.Error("a connect after Close succeeded")
	}
}

// TestHTTP fetches 256 KiB from an HTTP server through a lossy link with
// Go's HTTP client, twice on one kept-alive connection.
func TestHTTP(t *testing.T) {
	body := payload(6, 256<<10)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.Write(body) }))
	defer srv.Close()
	r, _ := newRelay(t, "loss=5%,delay=20ms,seed=9", srv.Listener.Addr().String(), Config{})
	tr := &http.Transport{}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr, Timeout: hangGuard}
	for range 2 {
		resp, err := client.Get("http://" + r.Addr().String() + "/file")
		if err != nil {
			t.Fatal(err)
		}
		got, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil || !bytes.Equal(got, body) {
			t.Fatalf("fetched %d bytes, %v; want the %d bytes intact", len(got), err, len(body))
		}
	}
	tr.CloseIdleConnections()
	if st := idle(t, r); st.Accepted != 1 || st.Far.Retransmissions == 0 {
		t.Errorf("stats %+v: want one connection, and retransmissions on the way back", st)
	}
}
