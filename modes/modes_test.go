package modes

import (
	"context"
	"flag"
	"io"
	"net"
	"runtime"
	"slices"
	"strings"
	"testing"

	"github.com/udplab/udplab/internal/conntest"
	"github.com/udplab/udplab/internal/leakcheck"
	"github.com/udplab/udplab/message"
	"github.com/udplab/udplab/reliable"
)

func TestMain(m *testing.M) { leakcheck.VerifyTestMain(m) }

// TestLookup: every name and alias finds its mode, and nothing else does.
func TestLookup(t *testing.T) {
	for _, tt := range []struct{ name, want string }{
		{"raw", "raw"}, {"kcp", "kcp"}, {"reliable", "kcp"},
		{"kcp-fec", "kcp-fec"}, {"reliable-fec", "kcp-fec"}, {"kcp-rt", "kcp-rt"}, {"tcp", "tcp"}, {"fec", "fec"}, {"quic", "quic"},
	} {
		m, err := Lookup(tt.name)
		if err != nil || m.Name != tt.want {
			t.Errorf("Lookup(%q) = %v, %v; want %s", tt.name, m, err, tt.want)
		}
	}
	if _, err := Lookup("sctp"); err == nil {
		t.Error("Lookup(sctp) found a mode")
	}
	if got, want := Names(), []string{"raw", "fec", "kcp", "kcp-fec", "kcp-rt", "tcp", "quic"}; !slices.Equal(got, want) {
		t.Errorf("Names() = %v, want %v", got, want)
	}
}

// TestEveryModeIsComplete: each mode builds with defaults and says what
// the report and the command line need.
func TestEveryModeIsComplete(t *testing.T) {
	for _, m := range All() {
		tr, err := m.New(nil)
		if err != nil {
			t.Fatalf("%s: New(nil) = %v", m.Name, err)
		}
		tt := tr.Traits()
		if m.What == "" || m.DefaultAddr == "" || tt.Delivery == "" || tt.MaxMessage <= 0 ||
			tt.Stack == "" || tt.Congestion == "" || (tt.Network != "udp" && tt.Network != "tcp") {
			t.Errorf("%s: incomplete: %+v, traits %+v", m.Name, m, tt)
		}
		if (tt.Delivery == Unreliable) != (tr.RetryWait(4) == 0) {
			t.Errorf("%s: delivery %s but RetryWait %v", m.Name, tt.Delivery, tr.RetryWait(4))
		}
	}
}

// TestFECRuleIsTheModes: kcp never has FEC; kcp-fec and fec always do,
// with the shards --fec gives.
func TestFECRuleIsTheModes(t *testing.T) {
	s := &Settings{}
	fs := flag.NewFlagSet("", flag.ContinueOnError)
	Flags(fs, s, All(), false)
	if err := fs.Parse([]string{"--fec", "4,2"}); err != nil {
		t.Fatal(err)
	}
	kcp, _ := KCP.New(s)
	fec, _ := KCPFEC.New(s)
	if kcp.Traits().FEC || kcp.Traits().HeaderBytes != 24 {
		t.Errorf("kcp with --fec 4,2: FEC %v, header %d; want none, 24", kcp.Traits().FEC, kcp.Traits().HeaderBytes)
	}
	if got := fec.Traits().Settings["fec"]; got != "4,2" {
		t.Errorf("kcp-fec with --fec 4,2 runs FEC %v", got)
	}
	only, _ := FEC.New(s)
	if got := only.Traits().Settings["fec"]; got != "4,2" {
		t.Errorf("fec with --fec 4,2 runs FEC %v", got)
	}
	for _, m := range []*Mode{KCPFEC, FEC} {
		if _, err := m.New(&Settings{KCP: reliable.Config{NoFEC: true}}); err == nil {
			t.Errorf("%s with FEC off was made", m.Name)
		}
	}
}

// TestFlagsOnceEach: modes that share a flag register it once, and it
// fills the one setting both read; Owners names every mode that takes it.
func TestFlagsOnceEach(t *testing.T) {
	s := &Settings{}
	fs := flag.NewFlagSet("", flag.ContinueOnError)
	Flags(fs, s, All(), true) // would panic on a flag defined twice
	if err := fs.Parse([]string{"--idle", "5s", "--profile", "fast"}); err != nil {
		t.Fatal(err)
	}
	if s.Idle.String() != "5s" || s.KCP.Profile != "fast" {
		t.Errorf("settings = %+v", s)
	}
	if got := Owners("idle", true); !slices.Equal(got, []string{"fec", "kcp", "kcp-fec", "kcp-rt", "tcp", "quic"}) {
		t.Errorf("Owners(idle) = %v", got)
	}
	if got := Owners("idle", false); got != nil {
		t.Errorf("Owners(idle) off the server = %v, want none", got)
	}
	if got := Owners("fec", false); !slices.Equal(got, []string{"fec", "kcp-fec"}) {
		t.Errorf("Owners(fec) = %v", got)
	}
}

// TestListenFlag: serve's flag for a mode's address is its name, unless a
// setting took the name first.
func TestListenFlag(t *testing.T) {
	for _, m := range All() {
		want := m.Name
		if m == FEC {
			want = "fec-addr" // --fec is the shards
		}
		if got := m.ListenFlag(); got != want {
			t.Errorf("%s.ListenFlag() = %q, want %q", m.Name, got, want)
		}
	}
}

// TestKCPRanges holds the flags' ranges to what reliable.Config accepts.
func TestKCPRanges(t *testing.T) {
	for _, tt := range []struct {
		name string
		cfg  reliable.Config
		ok   bool
	}{
		{"least MTU", reliable.Config{MTU: minMTU}, true},
		{"most MTU", reliable.Config{MTU: maxMTU}, true},
		{"MTU below", reliable.Config{MTU: minMTU - 1}, false},
		{"MTU above", reliable.Config{MTU: maxMTU + 1}, false},
		{"least windows", reliable.Config{SendWindow: 1, ReceiveWindow: 1}, true},
		{"most windows", reliable.Config{SendWindow: maxWindow, ReceiveWindow: maxWindow}, true},
		{"send window above", reliable.Config{SendWindow: maxWindow + 1}, false},
		{"receive window above", reliable.Config{ReceiveWindow: maxWindow + 1}, false},
	} {
		if err := tt.cfg.Validate(); (err == nil) != tt.ok {
			t.Errorf("%s: Validate() = %v, want ok %v", tt.name, err, tt.ok)
		}
	}
}

// TestConformanceOverPacketConn runs the message contracts over every
// mode's PacketConn path, the one compare puts the simulated link on: for
// tcp, that is netstack over UDP sockets. Each mode's own package runs them
// over its real-address path.
func TestConformanceOverPacketConn(t *testing.T) {
	for _, m := range All() {
		t.Run(m.Name, func(t *testing.T) {
			tr, err := m.New(nil)
			if err != nil {
				t.Fatal(err)
			}
			conntest.Run(t, conntest.Transport{
				Serve: func(t testing.TB, addr string, h message.Handler) net.Addr {
					pc, err := net.ListenPacket("udp", addr)
					if err != nil {
						t.Skip(err)
					}
					s, err := tr.Serve(pc, h)
					if err != nil {
						t.Fatal(err)
					}
					t.Cleanup(func() { s.Close() })
					return pc.LocalAddr()
				},
				Dial: func(t testing.TB, addr net.Addr) message.Conn {
					host := "127.0.0.1:0"
					if a := addr.(*net.UDPAddr); a.IP.To4() == nil {
						host = "[::1]:0"
					}
					pc, err := net.ListenPacket("udp", host)
					if err != nil {
						t.Fatal(err)
					}
					c, err := tr.Dial(context.Background(), pc, addr)
					if err != nil {
						t.Fatal(err)
					}
					t.Cleanup(func() { c.Close() })
					return c
				},
				MaxMessage: tr.Traits().MaxMessage,
			})
		})
	}
}

// TestKernelTCPWireAfterClose: a tcp target's wire is the kernel's count,
// and the Conn keeps its last reading once closed, when the kernel has
// forgotten the connection.
func TestKernelTCPWireAfterClose(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("TCP_INFO is read on Linux only")
	}
	tr, _ := TCP.New(nil)
	s, err := tr.Listen("127.0.0.1:0", message.Greet)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	c, err := tr.DialAddr(context.Background(), s.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	if got := conntest.RoundTrip(t, c, "Alice"); got != "Hello Alice!\n" {
		t.Fatalf("reply %q", got)
	}
	c.Close()
	w, ok := c.(WireCounter).Wire()
	if !ok || w.Packets < 2 || w.Bytes < w.HeaderBytes+9+17 || w.HeaderBytes < 40*w.Packets {
		t.Errorf("wire after close = %+v, %v; want the exchange's segments, bytes and headers", w, ok)
	}
}

// TestQUICSettings: certificate files go in pairs, and a pin is 64 hex
// digits, colons and case ignored.
func TestQUICSettings(t *testing.T) {
	if _, err := QUIC.New(&Settings{QUIC: QUICSettings{Cert: "c.pem"}}); err == nil || !strings.Contains(err.Error(), "--tls-key") {
		t.Errorf("--cert alone: %v, want an error naming --tls-key", err)
	}
	if _, err := QUIC.New(&Settings{QUIC: QUICSettings{Cert: "nonexistent.pem", Key: "nonexistent-key.pem"}}); err == nil ||
		!strings.Contains(err.Error(), "nonexistent") {
		t.Errorf("missing files: %v, want an error naming them", err)
	}
	s := &Settings{}
	fs := flag.NewFlagSet("", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	Flags(fs, s, []*Mode{QUIC}, false)
	pin := strings.Repeat("AB:", 31) + "AB"
	if err := fs.Parse([]string{"--pin", pin}); err != nil || s.QUIC.Pin != strings.Repeat("ab", 32) {
		t.Errorf("--pin %s: %v, pin %q", pin, err, s.QUIC.Pin)
	}
	for _, bad := range []string{"ab", strings.Repeat("zz", 32), strings.Repeat("ab", 33)} {
		if err := fs.Parse([]string{"--pin", bad}); err == nil {
			t.Errorf("--pin %s accepted", bad)
		}
	}
}
