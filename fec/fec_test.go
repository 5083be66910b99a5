package fec

import (
	"bytes"
	"context"
	"errors"
	"net"
	"os"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/udplab/udplab/internal/conntest"
	"github.com/udplab/udplab/message"
)

// TestConformance runs the contract every transport keeps.
func TestConformance(t *testing.T) {
	conntest.Run(t, conntest.Transport{
		Serve: func(t testing.TB, addr string, h message.Handler) net.Addr {
			// "udp" binds the family of addr's literal IP.
			return startServer(t, "udp", addr, h, nil).Addr()
		},
		Dial:       func(t testing.TB, addr net.Addr) message.Conn { return dial(t, addr, nil) },
		MaxMessage: MaxMessage,
	})
}

func startServer(t testing.TB, network, addr string, h message.Handler, cfg *Config) *Server {
	t.Helper()
	pc, err := net.ListenPacket(network, addr)
	if err != nil {
		t.Skipf("cannot bind %s %s: %v", network, addr, err)
	}
	return newServer(t, pc, h, cfg)
}

func dial(t testing.TB, addr net.Addr, cfg *Config) *Conn {
	t.Helper()
	c, err := Dial(addr.String(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func TestConfigValidate(t *testing.T) {
	for _, tt := range []struct {
		cfg  Config
		want string // "" for valid
	}{
		{Config{}, ""},
		{Config{DataShards: 1, ParityShards: 1}, ""},
		{Config{DataShards: 255, ParityShards: 1}, ""},
		{Config{DataShards: 200, ParityShards: 57}, "DataShards 200, ParityShards 57: want at least 1 each and at most 256 together"},
		{Config{DataShards: -1}, "DataShards -1"},
		{Config{ParityShards: -3}, "ParityShards -3"},
		{Config{Flush: -time.Millisecond}, "Flush -1ms: want a positive duration"},
		{Config{Idle: -time.Second}, "Idle -1s: want a positive duration"},
		{Config{MaxPeers: -1}, "MaxPeers -1: want at least 1"},
	} {
		err := tt.cfg.Validate()
		switch {
		case tt.want == "" && err != nil:
			t.Errorf("Validate(%+v) = %v, want nil", tt.cfg, err)
		case tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want) || !strings.HasPrefix(err.Error(), "fec: ")):
			t.Errorf("Validate(%+v) = %v, want fec: ...%s", tt.cfg, err, tt.want)
		}
	}
	if err := (*Config)(nil).Validate(); err != nil {
		t.Errorf("nil Config: %v", err)
	}
	got := Config{}.WithDefaults()
	if got.DataShards != 10 || got.ParityShards != 3 || got.Flush != DefaultFlush || got.Idle != time.Minute || got.MaxPeers != 1024 || got.Logger == nil {
		t.Errorf("WithDefaults = %+v", got)
	}
}

// TestBadConfigClosesSocket: a constructor that takes a PacketConn over
// closes it when it fails.
func TestBadConfigClosesSocket(t *testing.T) {
	bad := &Config{DataShards: 300}
	for name, build := range map[string]func(net.PacketConn) error{
		"NewConn":   func(pc net.PacketConn) error { _, err := NewConn(pc, pc.LocalAddr(), bad); return err },
		"NewServer": func(pc net.PacketConn) error { _, err := NewServer(pc, message.Echo, bad); return err },
	} {
		pc := conntest.NewMemNet().Listen("10.0.0.1:4000")
		if err := build(pc); err == nil {
			t.Fatalf("%s with %+v succeeded", name, bad)
		}
		if _, err := pc.WriteTo([]byte("x"), pc.LocalAddr()); !errors.Is(err, net.ErrClosed) {
			t.Errorf("%s failed and left its socket open", name)
		}
	}
}

// TestGarbageIsSurvived sends datagrams that are not shards, then greets:
// each is counted as malformed, none makes a peer, and the greeting is
// answered. One read loop handles the socket in order, so the reply proves
// the garbage before it was handled.
func TestGarbageIsSurvived(t *testing.T) {
	s := startServer(t, "udp4", "127.0.0.1:0", message.Greet, nil)
	junk, err := net.DialUDP("udp4", nil, s.Addr().(*net.UDPAddr))
	if err != nil {
		t.Fatal(err)
	}
	defer junk.Close()
	valid := dataShard(7, 0, []byte("Mallory"))
	flipped := bytes.Clone(valid)
	flipped[len(flipped)-1] ^= 1
	garbage := [][]byte{{}, {0x10}, []byte("Alice"), bytes.Repeat([]byte{0xff}, 1400), flipped, valid[:len(valid)-1]}
	for i, g := range garbage {
		if _, err := junk.Write(g); err != nil {
			t.Fatal(err)
		}
		conntest.WaitFor(t, func() bool { return s.Stats().FEC.Malformed == uint64(i+1) })
	}
	c := dial(t, s.Addr(), nil)
	if got := conntest.RoundTrip(t, c, "Dave"); got != "Hello Dave!\n" {
		t.Fatalf("after garbage, reply = %q", got)
	}
	if st := s.Stats(); st.Peers != 1 || st.Requests != 1 {
		t.Errorf("stats = %+v, want 1 peer and 1 request", st)
	}
}

func TestOversizedReplyIsCountedNotSent(t *testing.T) {
	s := startServer(t, "udp4", "127.0.0.1:0", message.Greet, nil)
	c := dial(t, s.Addr(), nil)
	if err := c.pc.(*net.UDPConn).SetWriteBuffer(1 << 20); err != nil {
		t.Fatal(err)
	}
	// "Hello " + name + "!\n" is 8 bytes over the name: too big for a shard.
	if err := c.Send(context.Background(), bytes.Repeat([]byte("a"), MaxMessage)); err != nil {
		t.Fatal(err)
	}
	if got := conntest.RoundTrip(t, c, "Eve"); got != "Hello Eve!\n" {
		t.Fatalf("reply = %q, want Eve's greeting (and nothing for the oversized name)", got)
	}
	if st := s.Stats(); st.Oversized != 1 {
		t.Errorf("Oversized = %d, want 1", st.Oversized)
	}
}

// TestForeignDatagramsDropped has a stranger send to an unconnected
// client: Receive drops and counts it, and returns the server's reply.
func TestForeignDatagramsDropped(t *testing.T) {
	s := startServer(t, "udp4", "127.0.0.1:0", message.Greet, nil)
	pc, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	c := newClient(t, pc, s.Addr(), nil)
	stranger, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer stranger.Close()
	if _, err := stranger.WriteTo(dataShard(1, 0, []byte("spoof")), c.LocalAddr()); err != nil {
		t.Fatal(err)
	}
	if got := conntest.RoundTrip(t, c, "Frank"); got != "Hello Frank!\n" {
		t.Errorf("reply = %q, want the server's greeting, not the stranger's datagram", got)
	}
	if c.Foreign() != 1 {
		t.Errorf("Foreign() = %d, want 1", c.Foreign())
	}
}

// TestListenAndStats greets through Listen and checks both ends' counters:
// one full group of D greetings each way, so parity leaves at once.
func TestListenAndStats(t *testing.T) {
	// No flush within the test: groups close only when full, however slow
	// the machine.
	cfg := &Config{DataShards: 4, ParityShards: 2, Flush: time.Hour}
	s, err := Listen("127.0.0.1:0", message.Greet, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if _, ok := s.SocketDrops(); !ok {
		t.Log("socket drops unknown on this platform")
	}
	c := dial(t, s.Addr(), cfg)
	for _, name := range []string{"a", "bb", "ccc", "dddd"} {
		if got := conntest.RoundTrip(t, c, name); got != "Hello "+name+"!\n" {
			t.Fatalf("reply = %q", got)
		}
	}
	// The server's parity may still be on its way to the client.
	conntest.WaitFor(t, func() bool { return s.Stats().FEC.ParitySent == 2 })
	want := Stats{DataSent: 4, ParitySent: 2, Received: 4, Groups: 1}
	if got := c.Stats(); got != want {
		t.Errorf("client stats = %+v, want %+v", got, want)
	}
	if got := s.Stats(); got.FEC != want || got.Requests != 4 || got.Replies != 4 || got.Peers != 1 {
		t.Errorf("server stats = %+v, want FEC %+v, 4 requests and replies, 1 peer", got, want)
	}
}

// TestMaxPeers fills the peer table: a third address is refused, counted,
// and answered by nobody, while the two kept are served.
func TestMaxPeers(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		n := conntest.NewMemNet()
		s := newServer(t, n.Listen("10.0.0.1:4000"), message.Greet, &Config{MaxPeers: 2})
		var conns []*Conn
		for _, addr := range []string{"10.0.0.2:4000", "10.0.0.3:4000", "10.0.0.4:4000"} {
			conns = append(conns, newClient(t, n.Listen(addr), s.Addr(), nil))
		}
		for i, c := range conns {
			got, err := conntest.Request(c, []byte("Ann"), time.Second)
			if served := i < 2; served != (err == nil) || served && string(got) != "Hello Ann!\n" {
				t.Errorf("client %d: reply %q, %v; want served = %v", i, got, err, served)
			}
		}
		// The third client's request and its parity were refused.
		if st := s.Stats(); st.Peers != 2 || st.Refused != 2 {
			t.Errorf("stats = %+v, want 2 peers and 2 datagrams refused", st)
		}
	})
}

// TestIdlePeersAreReaped: a peer silent for Idle is forgotten between Idle
// and 1.5×Idle after its last datagram, and comes back as a new peer.
func TestIdlePeersAreReaped(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		n := conntest.NewMemNet()
		s := newServer(t, n.Listen("10.0.0.1:4000"), message.Greet, &Config{Idle: time.Second})
		c := newClient(t, n.Listen("10.0.0.2:4000"), s.Addr(), nil)
		// The reaper looks every 0.5s from 0. The client's last datagram is
		// its request's parity, at DefaultFlush: at 1s the peer has been
		// silent for less than Idle, at 1.5s for more.
		conntest.RoundTrip(t, c, "Bob")
		time.Sleep(1500*time.Millisecond - time.Nanosecond)
		synctest.Wait()
		if st := s.Stats(); st.Reaped != 0 {
			t.Fatalf("reaped too soon: %+v", st)
		}
		time.Sleep(time.Nanosecond)
		synctest.Wait()
		if st := s.Stats(); st.Reaped != 1 {
			t.Fatalf("not reaped at the first look after Idle: %+v", st)
		}
		if got := conntest.RoundTrip(t, c, "Bob"); got != "Hello Bob!\n" {
			t.Errorf("reply after reaping = %q", got)
		}
		if st := s.Stats(); st.Peers != 2 {
			t.Errorf("Peers = %d, want 2: the reaped peer came back as a new one", st.Peers)
		}
	})
}

// TestCloseUnblocks: Close wakes a blocked Receive with net.ErrClosed, and
// Send and Receive fail alike afterwards, also with messages waiting.
func TestCloseUnblocks(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		n := conntest.NewMemNet()
		c := newClient(t, n.Listen("10.0.0.2:4000"), n.Listen("10.0.0.1:4000").LocalAddr(), nil)
		errc := make(chan error)
		go func() {
			_, err := c.Receive(context.Background())
			errc <- err
		}()
		synctest.Wait()
		c.Close()
		if err := <-errc; !errors.Is(err, net.ErrClosed) {
			t.Errorf("Receive blocked over Close = %v", err)
		}
		c.inbox.push([]byte("left over"))
		if _, err := c.Receive(context.Background()); !errors.Is(err, net.ErrClosed) {
			t.Errorf("Receive after Close = %v", err)
		}
		if err := c.Send(context.Background(), nil); !errors.Is(err, net.ErrClosed) {
			t.Errorf("Send after Close = %v", err)
		}
		if err := c.Close(); err != nil {
			t.Errorf("second Close = %v", err)
		}
	})
}

// TestReceiveDeadline: a deadline with nothing to receive matches both
// os.ErrDeadlineExceeded and context.DeadlineExceeded, exactly at the
// deadline.
func TestReceiveDeadline(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		n := conntest.NewMemNet()
		c := newClient(t, n.Listen("10.0.0.2:4000"), n.Listen("10.0.0.1:4000").LocalAddr(), nil)
		start := time.Now()
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Millisecond)
		defer cancel()
		_, err := c.Receive(ctx)
		if !errors.Is(err, os.ErrDeadlineExceeded) || !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("Receive = %v", err)
		}
		if waited := time.Since(start); waited != 30*time.Millisecond {
			t.Errorf("Receive returned after %v, want 30ms", waited)
		}
	})
}

// TestParityWithheld: a forged source that sends one small data shard
// gets its reply, 3 times its request's wire bytes, but not the parity
// that would make the server send it more than 3 times what it received;
// a real client, which sends parity too, gets both.
func TestParityWithheld(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		n := conntest.NewMemNet()
		big := func(dst, req []byte) ([]byte, error) { return append(dst, make([]byte, 83)...), nil }
		s := newServer(t, n.Listen("10.0.0.1:4000"), big, nil)
		forged := n.Listen("10.0.0.2:4000")
		forged.WriteTo(dataShard(1, 0, []byte("x")), s.Addr()) // 41 bytes with headers: 123 may come back
		time.Sleep(time.Second)
		synctest.Wait()
		if got := sent(t, forged, time.Now(), 10, 3); strings.Count(got, "data") != 1 || strings.Contains(got, "parity") {
			t.Errorf("forged source got %s, want the reply (123 bytes with headers) alone", got)
		}
		if st := s.Stats(); st.Withheld != 1 || st.FEC.ParitySent != 0 {
			t.Errorf("stats = %+v, want 1 parity withheld, none sent", st)
		}

		// The client's parity goes out before the reply's (a shorter
		// Flush), so it has counted by the time the reply's parity is due.
		c := newClient(t, n.Listen("10.0.0.3:4000"), s.Addr(), &Config{Flush: time.Millisecond})
		for range 3 {
			conntest.RoundTrip(t, c, "a name of some length")
			time.Sleep(time.Second) // each a group of one, with its parity
		}
		if st := s.Stats(); st.Withheld != 1 || st.FEC.ParitySent != 3 {
			t.Errorf("stats = %+v, want the client's 3 parity shards sent", st)
		}
	})
}

// TestRoundTripAllocatesNothing: a greeting sent and its reply received,
// client and server together, on loopback, allocate nothing once both
// windows have been round.
func TestRoundTripAllocatesNothing(t *testing.T) {
	if testing.Short() || raceEnabled {
		t.Skip("measures allocations")
	}
	s := startServer(t, "udp4", "127.0.0.1:0", message.Greet, nil)
	c := dial(t, s.Addr(), nil)
	ctx := context.Background()
	req := []byte("Alice")
	roundTrip := func() {
		if err := c.Send(ctx, req); err != nil {
			t.Fatal(err)
		}
		if _, err := c.Receive(ctx); err != nil {
			t.Fatal(err)
		}
	}
	// A slow machine may flush groups early: make every partial group's
	// code now, as a long-running pair would have.
	for k := 1; k <= DefaultDataShards; k++ {
		c.enc.codes.get(k)
		s.codes.get(k)
	}
	for range 10 * window {
		roundTrip()
	}
	if allocs := testing.AllocsPerRun(200, roundTrip); allocs != 0 {
		t.Errorf("an fec round trip allocated %v times, want 0", allocs)
	}
}
