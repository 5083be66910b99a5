package reliable

import (
	"context"
	"fmt"
	"net"
	"reflect"
	"testing"
	"testing/synctest"
	"time"

	kcp "github.com/xtaci/kcp-go/v5"

	"github.com/udplab/udplab/internal/conntest"
	"github.com/udplab/udplab/link"
	"github.com/udplab/udplab/link/linktest"
	"github.com/udplab/udplab/message"
)

// fakeTicker has work every period until it has ticked left times, and
// records when it was ticked.
type fakeTicker struct {
	left   int
	period time.Duration
	at     []time.Time
}

func (f *fakeTicker) tick(now time.Time) time.Time {
	f.at = append(f.at, now)
	if f.left--; f.left <= 0 {
		return time.Time{}
	}
	return now.Add(f.period)
}

// TestTimerTicksWhatIsDue: an entry is ticked exactly when due, as long as
// it says it has work, then never again; an entry never scheduled is never
// ticked; a schedule earlier than the one pending wins, a later one not.
func TestTimerTicksWhatIsDue(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		tm := newTimer()
		defer tm.close()
		busy := &fakeTicker{left: 5, period: 10 * time.Millisecond}
		idle := &fakeTicker{left: 1}
		be := timerEntry{owner: busy, index: -1}
		_ = timerEntry{owner: idle, index: -1} // never scheduled
		start := time.Now()
		tm.schedule(&be, start.Add(30*time.Millisecond))
		tm.schedule(&be, start.Add(50*time.Millisecond)) // later: ignored
		tm.schedule(&be, start.Add(10*time.Millisecond)) // earlier: wins
		time.Sleep(time.Second)
		synctest.Wait()
		if len(busy.at) != 5 {
			t.Fatalf("busy ticked %d times, want 5", len(busy.at))
		}
		for i, at := range busy.at {
			if want := start.Add(time.Duration(i+1) * 10 * time.Millisecond); !at.Equal(want) {
				t.Errorf("tick %d at %v, want %v", i, at.Sub(start), want.Sub(start))
			}
		}
		if len(idle.at) != 0 || tm.scheduled() != 0 {
			t.Errorf("idle ticked %d times, %d entries left; want none", len(idle.at), tm.scheduled())
		}
	})
}

// onlySession returns s's one session.
func onlySession(t *testing.T, s *Server) *session {
	t.Helper()
	all := s.l.sessions()
	if len(all) != 1 {
		t.Fatalf("%d sessions, want 1", len(all))
	}
	return all[0]
}

// quiet reports whether sess has nothing to do but wait for its idle
// deadline: nothing in flight, no acknowledgement owed, no FEC state.
func (s *session) quiet() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return !s.ackDue && s.kcp.WaitSnd() == 0 && s.dec == nil && !s.enc.holding() && !s.serving
}

func (t *timer) tickCount() uint64 {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.ticks
}

// TestIdleSessionIsNotTicked: once a greeted session has been
// acknowledged and its FEC state let go, the timer holds only its idle
// deadline and ticks it no more, however long it waits.
func TestIdleSessionIsNotTicked(t *testing.T) {
	for _, cfg := range []Config{{NoFEC: true, Idle: time.Hour}, {Key: "k", Idle: time.Hour}} {
		t.Run(cfg.FECString(), func(t *testing.T) {
			s := startServer(t, "udp4", "127.0.0.1:0", message.Greet, cfg)
			conntest.RoundTrip(t, dial(t, s.Addr(), cfg), "Alice")
			sess := onlySession(t, s)
			conntest.WaitFor(t, sess.quiet)
			conntest.WaitFor(t, func() bool { return s.l.timer.scheduled() == 1 })
			before := s.l.timer.tickCount()
			time.Sleep(5 * s.l.interval)
			if got := s.l.timer.tickCount(); got != before || s.l.timer.scheduled() != 1 {
				t.Errorf("an idle session was ticked %d times, %d entries scheduled; want 0 ticks and its idle deadline alone",
					got-before, s.l.timer.scheduled())
			}
		})
	}
}

// unackedSession returns a server over an in-memory network whose one
// session sent a reply its client, closed, never acknowledges. The server
// closes when t ends.
func unackedSession(t *testing.T) (*Server, *session) {
	t.Helper()
	mn := conntest.NewMemNet()
	cfg := Config{NoFEC: true, Logger: quiet}
	h := conntest.NewHolder()
	s, err := NewServer(mn.Listen("10.0.0.1:1"), h.Handle, &cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	c, err := NewConn(mn.Listen("10.0.0.2:40000"), s.Addr(), &cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Send(context.Background(), []byte("wait")); err != nil {
		t.Fatal(err)
	}
	<-h.Entered
	c.Close()
	sess := onlySession(t, s)
	h.Free()
	conntest.WaitFor(t, func() bool { return !sess.settled() })
	return s, sess
}

// TestUnackedSessionIsTicked: a session whose peer vanished with a reply
// unacknowledged is ticked (its reply retransmitted) while the reply is
// unacknowledged.
func TestUnackedSessionIsTicked(t *testing.T) {
	s, sess := unackedSession(t)
	before := s.l.timer.tickCount()
	conntest.WaitFor(t, func() bool { return s.l.timer.tickCount() >= before+3 })
	if sess.settled() {
		t.Error("the reply was acknowledged by a closed client")
	}
}

// TestFECInterop: kcp-go clients and udplab's server exchange messages
// of several sizes with FEC over a lossy link (a fixed seed), each way in
// turn: loss only on the way up shows udplab's decoder rebuilding kcp-go's
// shards, loss only on the way down kcp-go's rebuilding udplab's; both
// count into the process's FEC recoveries.
func TestFECInterop(t *testing.T) {
	for _, dir := range []string{"up", "down"} {
		t.Run(dir, func(t *testing.T) {
			l := linktest.New(t, dir+":loss=10%,seed=7")
			cfg := Config{Key: "k", Logger: quiet}
			spc, cpc := loopbackPair(t)
			s, err := NewServer(l.Wrap(spc, link.Down), message.Echo, &cfg)
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			c, err := NewConn(l.Wrap(cpc, link.Up), s.Addr(), &cfg)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			before := ReadCounters()
			var msgs [][]byte
			for _, n := range []int{1, c.mss, 3000, 64 << 10} {
				for range 4 {
					msgs = append(msgs, pattern(n))
				}
			}
			conntest.EchoInOrder(t, c, msgs)
			d := ReadCounters().Sub(before)
			t.Logf("%s: %+v", dir, d)
			if d.FECRecovered == 0 {
				t.Errorf("no segment rebuilt from parity with 10%% loss %s", dir)
			}
		})
	}
}

// newLink starts a link with spec, unless parsing it failed with err.
// loopbackPair binds two sockets on 127.0.0.1 for a server and a client.
func loopbackPair(t *testing.T) (server, client net.PacketConn) {
	t.Helper()
	var pcs [2]net.PacketConn
	for i := range pcs {
		pc, err := net.ListenPacket("udp4", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		pcs[i] = pc
	}
	return pcs[0], pcs[1]
}

// TestFECShardsAreKCPGos checks udplab's FEC encoder against the format
// by hand: data shards numbered in order with the size field, and after
// every dataShards of them parityShards parity shards that rebuild a lost
// data shard with reedsolomon, whatever their lengths.
func TestFECShardsAreKCPGos(t *testing.T) {
	f, err := newFECCodec(3, 2)
	if err != nil {
		t.Fatal(err)
	}
	var e fecEncoder
	now := time.Unix(1e9, 0)
	var out [][]byte
	for i, n := range []int{30, 100, 50, 70, 20, 90} {
		b := make([]byte, fecOverhead+n, maxSegment)
		for k := fecOverhead; k < len(b); k++ {
			b[k] = byte(i*31 + k)
		}
		ps := e.encode(f, b, 0, now)
		out = append(out, b)
		out = append(out, ps...)
		now = now.Add(time.Millisecond)
	}
	if len(out) != 10 {
		t.Fatalf("%d packets, want 6 data and 4 parity", len(out))
	}
	d := newFECDecoder(f)
	for i, p := range out {
		if got := decodeSeqid(p); got != uint32(i) {
			t.Errorf("packet %d has seqid %d", i, got)
		}
	}
	// Lose the second data shard of each group: each comes back.
	var rebuilt int
	for i, p := range out {
		if i == 1 || i == 6 {
			continue
		}
		for _, r := range d.decode(f, p, now) {
			want := out[map[int]int{0: 1, 1: 6}[rebuilt]][fecHeader:]
			if got := r[:len(want)]; string(got) != string(want) {
				t.Errorf("rebuilt shard %d = %x, want %x", rebuilt, got, want)
			}
			rebuilt++
			putPacket(r)
		}
	}
	if rebuilt != 2 {
		t.Errorf("rebuilt %d shards, want 2", rebuilt)
	}
	d.release()
}

func decodeSeqid(p []byte) uint32 {
	return uint32(p[0]) | uint32(p[1])<<8 | uint32(p[2])<<16 | uint32(p[3])<<24
}

// TestManySessionsOneTimer greets from many clients and checks that no
// goroutine per session remains once they are idle.
func TestManySessionsOneTimer(t *testing.T) {
	const clients = 50
	cfg := Config{Idle: time.Hour}
	s := startServer(t, "udp4", "127.0.0.1:0", message.Greet, cfg)
	for i := range clients {
		conntest.RoundTrip(t, dial(t, s.Addr(), cfg), fmt.Sprint(i))
	}
	conntest.WaitFor(t, func() bool {
		for _, sess := range s.l.sessions() {
			if !sess.quiet() {
				return false
			}
		}
		return true
	})
	if n := s.l.timer.scheduled(); n != clients {
		t.Errorf("%d entries in the timer, want %d: each session's idle deadline", n, clients)
	}
}

// TestSmallQueues: a new session's KCP queues are kcp-go's smallest
// rings, and grow as a bulk transfer fills them.
func TestSmallQueues(t *testing.T) {
	k := newKCP(1, func([]byte, int) {}, &Config{Profile: "fast3", SendWindow: 128, ReceiveWindow: 512}, 1300)
	v := reflect.ValueOf(k).Elem()
	for _, name := range kcpQueues {
		if n := v.FieldByName(name).Elem().FieldByName("elements").Len(); n != kcp.RINGBUFFER_MIN {
			t.Errorf("%s holds %d segments, want %d", name, n, kcp.RINGBUFFER_MIN)
		}
	}
	for range 100 {
		k.Send(make([]byte, 1000))
	}
	if n := k.WaitSnd(); n != 100 {
		t.Errorf("WaitSnd = %d, want 100", n)
	}
}

// TestReapedMidMessageGivesMemoryBack: a session reaped while a long
// message is half reassembled gives its reassembly memory back.
func TestReapedMidMessageGivesMemoryBack(t *testing.T) {
	s := startServer(t, "udp4", "127.0.0.1:0", message.Echo, Config{Idle: 300 * time.Millisecond})
	c := dial(t, s.Addr(), Config{})
	hdr := append([]byte(frameMagicBytes), 0, 1, 0, 0) // 65,536 bytes to come
	if _, err := c.s.Write(hdr); err != nil {
		t.Fatal(err)
	}
	if _, err := c.s.Write(make([]byte, 1000)); err != nil {
		t.Fatal(err)
	}
	conntest.WaitFor(t, func() bool { return s.asm.Left() < reassemblyBudget })
	conntest.WaitFor(t, func() bool { st := s.Stats(); return st.Reaped == 1 && st.Sessions == 0 })
	if left := s.asm.Left(); left != reassemblyBudget {
		t.Errorf("reassembly memory left %d after the reap, want all %d", left, reassemblyBudget)
	}
}

// TestSlowHandlerIsNotSpun: a session whose handler outlasts the idle
// timeout is neither reaped under it nor ticked over and over meanwhile.
func TestSlowHandlerIsNotSpun(t *testing.T) {
	h := conntest.NewHolder()
	cfg := Config{Idle: 50 * time.Millisecond, Logger: quiet}
	s := startServer(t, "udp4", "127.0.0.1:0", h.Handle, cfg)
	t.Cleanup(h.Free)
	c := dial(t, s.Addr(), cfg)
	if err := c.Send(context.Background(), []byte("wait")); err != nil {
		t.Fatal(err)
	}
	<-h.Entered
	conntest.WaitFor(t, func() bool { return s.l.timer.scheduled() == 1 })
	before, start := s.l.timer.tickCount(), time.Now()
	time.Sleep(10 * cfg.Idle)
	// At most one look an idle time, however long the sleep took, and a
	// few flushes of the request's acknowledgement.
	n, held := s.l.timer.tickCount()-before, time.Since(start)
	if limit := uint64(held/cfg.Idle) + 10; n > limit {
		t.Errorf("the timer ticked %d times in %v of a held request, want at most %d: one an idle time", n, held, limit)
	}
	h.Free()
	if got, err := c.Receive(context.Background()); err != nil || string(got) != "wait" {
		t.Errorf("reply = %q, %v", got, err)
	}
	if st := s.Stats(); st.Reaped != 0 {
		t.Errorf("reaped %d sessions while a request was being handled", st.Reaped)
	}
}

// closingTicker is removed from its timer while it ticks, as a session
// closed by another goroutine during its tick is, and still says it has
// more work.
type closingTicker struct {
	tm    *timer
	e     timerEntry
	ticks int
}

func (c *closingTicker) tick(now time.Time) time.Time {
	c.ticks++
	c.tm.remove(&c.e)
	return now.Add(10 * time.Millisecond)
}

// TestTimerRemovedDuringTick: an entry removed while its tick runs is not
// put back by what the tick returns (a closed session stayed in the heap,
// and its memory with it, until that time).
func TestTimerRemovedDuringTick(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		tm := newTimer()
		defer tm.close()
		c := &closingTicker{tm: tm}
		c.e = timerEntry{owner: c, index: -1}
		tm.schedule(&c.e, time.Now().Add(time.Millisecond))
		time.Sleep(time.Second)
		synctest.Wait()
		if c.ticks != 1 || tm.scheduled() != 0 {
			t.Errorf("ticked %d times, %d entries left; want 1 tick and none", c.ticks, tm.scheduled())
		}
	})
}

// TestServerTakesProfileAcks: the server's sessions acknowledge as input
// arrives exactly when the profile says so, as tune makes kcp-go's
// sessions do (kcp-rt's rt profile; not fast3).
func TestServerTakesProfileAcks(t *testing.T) {
	for _, profile := range ProfileNames {
		s := startServer(t, "udp4", "127.0.0.1:0", message.Greet, Config{NoFEC: true, Profile: profile})
		if got, want := s.l.ackNoDelay, Profiles[profile].AckNoDelay; got != want {
			t.Errorf("profile %s: server acknowledges at once = %v, want %v", profile, got, want)
		}
	}
}
