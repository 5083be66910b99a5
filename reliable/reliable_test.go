package reliable

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/udplab/udplab/internal/conntest"
	"github.com/udplab/udplab/internal/leakcheck"
	"github.com/udplab/udplab/message"
)

func TestMain(m *testing.M) { leakcheck.VerifyTestMain(m) }

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

func startServer(t testing.TB, network, addr string, h message.Handler, cfg Config) *Server {
	t.Helper()
	pc, err := net.ListenPacket(network, addr)
	if err != nil {
		t.Skipf("cannot bind %s %s: %v", network, addr, err)
	}
	cfg.Logger = quiet
	s, err := NewServer(pc, h, &cfg)
	if err != nil {
		pc.Close()
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func dial(t testing.TB, addr net.Addr, cfg Config) *Conn {
	t.Helper()
	c, err := Dial(addr.String(), &cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// TestConformance runs the contract every transport keeps, keyed, with FEC.
func TestConformance(t *testing.T) {
	cfg := Config{Key: "k"}
	conntest.Run(t, conntest.Transport{
		Serve: func(t testing.TB, addr string, h message.Handler) net.Addr {
			// "udp" binds the family of addr's literal IP.
			return startServer(t, "udp", addr, h, cfg).Addr()
		},
		Dial:       func(t testing.TB, addr net.Addr) message.Conn { return dial(t, addr, cfg) },
		MaxMessage: MaxMessage,
	})
}

var configs = map[string]Config{
	"plain":          {NoFEC: true},
	"fec":            {},
	"fec+aes-gcm":    {Key: "secret"},
	"fec+salsa20":    {Key: "secret", Crypt: "salsa20"},
	"nofec+none":     {NoFEC: true, Key: "secret", Crypt: "none"},
	"fec+null":       {Crypt: "null"},
	"normal+mtu1400": {Profile: "normal", MTU: 1400, Key: "k"},
}

// TestMessageBoundaries sends messages around the one-segment limit of each
// cipher family, a header-shaped message and large ones, pipelined, and
// checks each comes back whole and in order. If segmentPayload overstated
// kcp-go's segment size, a message at the limit would come back in two.
func TestMessageBoundaries(t *testing.T) {
	for name, cfg := range configs {
		t.Run(name, func(t *testing.T) {
			s := startServer(t, "udp4", "127.0.0.1:0", message.Echo, cfg)
			c := dial(t, s.Addr(), cfg)
			mss := c.mss
			hdr := append([]byte(frameMagicBytes), 0, 0, 0, 5)
			msgs := [][]byte{[]byte("a"), hdr, hdr[:7]}
			for _, n := range []int{mss - 1, mss, mss + 1, 2 * mss, 64 << 10, MaxMessage} {
				msgs = append(msgs, pattern(n))
			}
			t.Logf("mss %d", mss)
			conntest.EchoInOrder(t, c, msgs)
		})
	}
}

func pattern(n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(i*7 + i/251)
	}
	return b
}

func TestSendLimits(t *testing.T) {
	s := startServer(t, "udp4", "127.0.0.1:0", message.Echo, Config{})
	c := dial(t, s.Addr(), Config{})
	err := c.Send(context.Background(), make([]byte, MaxMessage+1))
	if !errors.Is(err, message.ErrTooLarge) || !strings.Contains(err.Error(), fmt.Sprint(MaxMessage)) {
		t.Errorf("Send(%d bytes) = %v, want ErrTooLarge naming the limit", MaxMessage+1, err)
	}
	if err := c.Send(context.Background(), nil); err == nil {
		t.Error("Send(empty) = nil, want an error: KCP cannot carry an empty message")
	}
}

// TestManyClients: 50 concurrent clients × 100 greetings, every reply right.
func TestManyClients(t *testing.T) {
	const clients, each = 50, 100
	cfg := Config{Key: "k"}
	s := startServer(t, "udp4", "127.0.0.1:0", message.Greet, cfg)
	conns := make([]message.Conn, clients)
	for i := range conns {
		conns[i] = dial(t, s.Addr(), cfg)
	}
	conntest.GreetMany(t, conns, each)
	st := s.Stats()
	if st.Accepted != clients || st.Replies != clients*each {
		t.Errorf("stats = %+v, want %d sessions and %d replies", st, clients, clients*each)
	}
}

func TestWrongKeyGetsNothing(t *testing.T) {
	s := startServer(t, "udp4", "127.0.0.1:0", message.Greet, Config{Key: "right"})
	c := dial(t, s.Addr(), Config{Key: "wrong"})
	_, err := conntest.Request(c, []byte("Mallory"), 300*time.Millisecond)
	if !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("round trip under a wrong key = %v, want a timeout", err)
	}
	st := s.Stats()
	if st.Accepted != 0 || st.Sessions != 0 || st.Requests != 0 {
		t.Errorf("stats = %+v, want no session and no request", st)
	}
	if st.AuthFailures == 0 {
		t.Errorf("AuthFailures = 0, want the forged packets counted")
	}
	// The right key still works.
	if got := conntest.RoundTrip(t, dial(t, s.Addr(), Config{Key: "right"}), "Alice"); got != "Hello Alice!\n" {
		t.Errorf("reply = %q", got)
	}
}

// TestGarbageIsSurvived sends datagrams of many sizes, up to the largest UDP
// payload, then greets.
func TestGarbageIsSurvived(t *testing.T) {
	for _, cfg := range []Config{{Key: "k"}, {NoFEC: true}, {}} {
		t.Run(cfg.FECString()+cfg.Key, func(t *testing.T) {
			s := startServer(t, "udp4", "127.0.0.1:0", message.Greet, cfg)
			junk, err := net.ListenPacket("udp4", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			defer junk.Close()
			for _, n := range []int{0, 1, 7, 8, 23, 24, 25, 100, 1350, 1500, 1501, 9000, 65507} {
				for _, fill := range []byte{0x00, 0xff, 0x51} {
					if _, err := junk.WriteTo(bytes.Repeat([]byte{fill}, n), s.Addr()); err != nil {
						t.Fatal(err)
					}
				}
			}
			if got := conntest.RoundTrip(t, dial(t, s.Addr(), cfg), "Alice"); got != "Hello Alice!\n" {
				t.Errorf("after garbage, reply = %q", got)
			}
		})
	}
}

func TestIdleSessionsAreReaped(t *testing.T) {
	s := startServer(t, "udp4", "127.0.0.1:0", message.Greet, Config{Idle: 100 * time.Millisecond})
	conntest.RoundTrip(t, dial(t, s.Addr(), Config{}), "Alice")
	conntest.WaitFor(t, func() bool { st := s.Stats(); return st.Reaped == 1 && st.Sessions == 0 })
}

func TestSessionTableIsBounded(t *testing.T) {
	s := startServer(t, "udp4", "127.0.0.1:0", message.Greet, Config{MaxSessions: 2})
	for _, name := range []string{"a", "b"} {
		conntest.RoundTrip(t, dial(t, s.Addr(), Config{}), name)
	}
	if _, err := conntest.Request(dial(t, s.Addr(), Config{}), []byte("c"), 300*time.Millisecond); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Errorf("third client = %v, want no reply", err)
	}
	if st := s.Stats(); st.Refused == 0 || st.Sessions != 2 {
		t.Errorf("stats = %+v, want refusals and 2 sessions", st)
	}
}

func TestConfigErrors(t *testing.T) {
	tests := []struct {
		cfg  Config
		want string
	}{
		{Config{Profile: "turbo"}, `profile "turbo": want one of normal, fast, fast2, fast3`},
		{Config{Crypt: "aes"}, `crypt "aes" needs a key`},
		{Config{Key: "k", Crypt: "rot13"}, `crypt "rot13": want one of`},
		{Config{MTU: 100}, "MTU 100: want 256 to 1500"},
		{Config{DataShards: 10}, "FEC 10,0"},
		{Config{Idle: -time.Second}, "idle -1s"},
		{Config{SendWindow: -1}, "window -1,512"},
	}
	for _, tt := range tests {
		_, _, err := tt.cfg.populate()
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("populate(%+v) = %v, want %q", tt.cfg, err, tt.want)
		}
	}
}

func TestParseFEC(t *testing.T) {
	tests := []struct {
		in   string
		want string
		bad  bool
	}{
		{in: "10,3", want: "10,3"},
		{in: " 4 , 2 ", want: "4,2"},
		{in: "0,0", want: "0,0"},
		{in: "10", bad: true},
		{in: "10,0", bad: true},
		{in: "-1,3", bad: true},
		{in: "200,100", bad: true},
		{in: "a,b", bad: true},
	}
	for _, tt := range tests {
		var c Config
		err := c.ParseFEC(tt.in)
		if tt.bad {
			if err == nil || !strings.Contains(err.Error(), fmt.Sprintf("%q", tt.in)) {
				t.Errorf("ParseFEC(%q) = %v, want an error naming the input", tt.in, err)
			}
			continue
		}
		if err != nil || c.FECString() != tt.want {
			t.Errorf("ParseFEC(%q) = %q, %v; want %q", tt.in, c.FECString(), err, tt.want)
		}
	}
}

func TestAcceptOneCancel(t *testing.T) {
	pc, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	cause := errors.New("nobody came")
	ctx, cancel := context.WithCancelCause(context.Background())
	errc := make(chan error, 1)
	go func() {
		_, err := AcceptOne(ctx, pc, nil)
		errc <- err
	}()
	cancel(cause)
	if err := <-errc; !errors.Is(err, cause) {
		t.Errorf("AcceptOne after cancel = %v, want the cause", err)
	}
}

// TestWarnsWithoutKeyBeyondLoopback binds the unspecified address, which
// sends nothing anywhere, and checks the forged-packet warning is logged
// there and only there.
func TestWarnsWithoutKeyBeyondLoopback(t *testing.T) {
	for _, tt := range []struct {
		addr, key string
		warn      bool
	}{
		{"0.0.0.0:0", "", true},
		{"0.0.0.0:0", "k", false},
		{"127.0.0.1:0", "", false},
	} {
		var logs bytes.Buffer
		pc, err := net.ListenPacket("udp4", tt.addr)
		if err != nil {
			t.Fatal(err)
		}
		s, err := NewServer(pc, message.Greet, &Config{Key: tt.key, Logger: slog.New(slog.NewTextHandler(&logs, nil))})
		if err != nil {
			t.Fatal(err)
		}
		s.Close()
		if got := strings.Contains(logs.String(), "anyone can forge packets"); got != tt.warn {
			t.Errorf("listen %s key %q: warned = %v, want %v; logs: %s", tt.addr, tt.key, got, tt.warn, logs.String())
		}
	}
}

func TestHeaderBytesAndRetryWait(t *testing.T) {
	for _, c := range []struct {
		cfg  Config
		want int
	}{
		{Config{NoFEC: true}, 24},
		{Config{}, 32},
		{Config{NoFEC: true, Key: "k", Crypt: "aes"}, 44},
	} {
		if got, err := c.cfg.HeaderBytes(); err != nil || got != c.want {
			t.Errorf("HeaderBytes(%+v) = %d, %v; want %d", c.cfg, got, err, c.want)
		}
	}
	// fast3 (no-delay): 200 + 300 + 400 + 500 ms; normal: 200 + 400 + 600 + 800.
	if got := (&Config{}).RetryWait(4); got != 1400*time.Millisecond {
		t.Errorf("fast3 RetryWait(4) = %v, want 1.4s", got)
	}
	if got := (&Config{Profile: "normal"}).RetryWait(4); got != 2*time.Second {
		t.Errorf("normal RetryWait(4) = %v, want 2s", got)
	}
}
