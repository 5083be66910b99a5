package fec

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"net/netip"
	"testing"
	"testing/synctest"
	"time"

	"github.com/udplab/udplab/internal/conntest"
	"github.com/udplab/udplab/link"
	"github.com/udplab/udplab/link/linktest"
)

// chainMsg is the i-th test datagram: its lengths vary, so parity pads.
func chainMsg(i int) []byte { return fmt.Appendf(nil, "m%d%s", i, bytes.Repeat([]byte{'.'}, i%5)) }

// recoverable reports whether the chain code, with one parity or two,
// must rebuild every loss of lost: the losses come in runs of at most 3,
// at least 4 datagrams apart, and 3 arrive after the last.
func recoverable(lost []bool) bool {
	last, run, since := -1, 0, 4
	for i, l := range lost {
		switch {
		case l && run == 0 && since < 4:
			return false // too near the run before
		case l:
			run, last = run+1, i
		default:
			run, since = 0, since+1
		}
		if l {
			since = 0
		}
		if run > 3 {
			return false
		}
	}
	return last < 0 || len(lost)-1-last >= 3
}

// TestChainPatterns sends 20 datagrams with one parity and with two under
// every loss pattern of the middle 10: the receiver delivers each datagram
// at most once and never a wrong one, and rebuilds every loss whenever the
// code promises to.
func TestChainPatterns(t *testing.T) {
	for _, level := range []int{1, 2} {
		t.Run(fmt.Sprint(level), func(t *testing.T) { testChainPatterns(t, level) })
	}
}

func testChainPatterns(t *testing.T, level int) {
	const n, first, span = 20, 5, 10
	for pattern := range 1 << span {
		lost := make([]bool, n)
		for i := range span {
			lost[first+i] = pattern&(1<<i) != 0
		}
		var s chainSender
		var r chainReceiver
		got := map[string]int{}
		deliver := func(d []byte) { got[string(d)]++ }
		for i := range n {
			pkt := s.next(nil, 0, chainMsg(i), 0, level)
			if lost[i] {
				continue
			}
			h, payload, p, q, ok := parseChain(pkt)
			if !ok || h.seq != uint32(i+1) {
				t.Fatalf("datagram %d does not parse: % x", i, pkt)
			}
			if r.receive(h.seq, payload[h.split:], p, q, deliver) {
				deliver(payload)
			}
		}
		for i := range n {
			c := got[string(chainMsg(i))]
			switch {
			case c > 1:
				t.Fatalf("pattern %010b: datagram %d delivered %d times", pattern, i, c)
			case c == 0 && !lost[i]:
				t.Fatalf("pattern %010b: datagram %d arrived but was not delivered", pattern, i)
			case c == 0 && recoverable(lost):
				t.Fatalf("pattern %010b: datagram %d not rebuilt", pattern, i)
			}
			delete(got, string(chainMsg(i)))
		}
		if len(got) > 0 {
			t.Fatalf("pattern %010b: delivered what was never sent: %v", pattern, got)
		}
	}
}

// TestChainSplit: only the protected part is rebuilt, and a datagram with
// nothing to protect goes plain.
func TestChainSplit(t *testing.T) {
	var s chainSender
	var r chainReceiver
	var rebuilt [][]byte
	deliver := func(d []byte) { rebuilt = append(rebuilt, bytes.Clone(d)) }
	a := s.next(nil, 0, []byte("ackDATA1"), 3, 1)
	_ = s.next(nil, 0, []byte("ackDATA2"), 3, 1) // lost
	c := s.next(nil, 0, []byte("DATA3"), 0, 1)
	for _, pkt := range [][]byte{a, c} {
		h, payload, p, q, _ := parseChain(pkt)
		r.receive(h.seq, payload[h.split:], p, q, deliver)
	}
	if len(rebuilt) != 1 || string(rebuilt[0]) != "DATA2" {
		t.Errorf("rebuilt %q, want [DATA2]", rebuilt)
	}
	plain := appendPlain(nil, 7, []byte("ack"))
	if h, payload, _, _, ok := parseChain(plain); !ok || h.kind != chainPlain || h.report != 7 || string(payload) != "ack" {
		t.Errorf("plain datagram parsed as %+v %q %v", h, payload, ok)
	}
}

// TestChainReportsLoss: a receiver counts the datagrams it never saw, and
// the count rides in what it sends back.
func TestChainReportsLoss(t *testing.T) {
	var s chainSender
	var r chainReceiver
	for i := range 10 {
		pkt := s.next(nil, 0, chainMsg(i), 0, 0)
		if i == 3 || i == 4 || i == 7 {
			continue
		}
		h, payload, p, q, _ := parseChain(pkt)
		r.receive(h.seq, payload, p, q, func([]byte) {})
	}
	if r.missing != 3 {
		t.Errorf("missing = %d, want 3", r.missing)
	}
}

// chainPair returns a client ChainConn whose writes cross a link of spec
// to a server ChainConn on a MemNet, both closed as t ends.
func chainPair(t *testing.T, spec string, cfg *ChainConfig) (client, server *ChainConn, l *link.Link) {
	t.Helper()
	l = linktest.New(t, spec)
	n := conntest.NewMemNet()
	server = NewChainConn(n.Listen("10.0.0.1:4000"), cfg)
	client = NewChainConn(l.Wrap(n.Listen("10.0.0.2:4000"), link.Up), cfg)
	t.Cleanup(func() {
		client.Close()
		server.Close()
	})
	return client, server, l
}

// TestChainConnOverLossyLink sends 2000 datagrams through a link losing
// 5% at a fixed seed: every one that crossed is read once, the losses are
// rebuilt but for runs the code cannot cover, and nothing else is read.
// The link runs in real time (its waits spin, which a synctest bubble
// cannot follow), and nothing here depends on timing: without jitter the
// datagrams arrive in order, and which are lost depends on the seed only.
func TestChainConnOverLossyLink(t *testing.T) {
	const n = 2000
	// Parity on throughout: no reports flow back in this test.
	client, server, l := chainPair(t, "loss=5%,delay=1ms,seed=3", &ChainConfig{Probe: time.Hour, Hold: time.Hour})
	to := server.LocalAddr()
	for i := range n {
		if _, err := client.WriteTo(chainMsg(i), to); err != nil {
			t.Fatal(err)
		}
	}
	// The last datagram's parity follows it alone, 2ms later; a busy host
	// may have paused the writes, and flushed, before too. Wait for a
	// moment when the link has had every datagram the client coded, a
	// flush's at least, and let go of them all, and take both counts
	// then: a flush still to come would make counts taken apart disagree.
	var (
		st link.Stats
		cs ChainStats
	)
	conntest.WaitFor(t, func() bool {
		before := client.Stats()
		st, cs = l.Stats(link.Up), client.Stats()
		return before == cs && cs.Coded > n && st.Offered == cs.Coded && st.Delivered+st.Lost == st.Offered
	})
	seen := map[string]bool{}
	buf := make([]byte, 100)
	// Everything has arrived: a read waits only once the queue is empty.
	server.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
	for {
		k, _, err := server.ReadFrom(buf)
		if err != nil {
			break
		}
		if seen[string(buf[:k])] {
			t.Fatalf("%q read twice", buf[:k])
		}
		seen[string(buf[:k])] = true
	}
	ss := server.Stats()
	missing := n - len(seen)
	// Parity alone leaves after a pause of the writes, and carries no
	// datagram of its own: a busy host may pause them anywhere.
	if st.Lost == 0 || ss.Recovered > st.Lost || st.Offered != n+cs.Flushes || cs.Coded != st.Offered || cs.Parity != n-1 {
		t.Errorf("link %+v; server %+v; client %+v; read %d of %d", st, ss, cs, len(seen), n)
	}
	// At 5% loss a datagram is left unrepaired only when 2 of the few
	// around it are lost too: about 1 in 10,000, against 50 lost.
	if missing > int(st.Lost)/5 {
		t.Errorf("%d of %d losses unrepaired", missing, st.Lost)
	}
}

// TestChainFlushAndLinger, in virtual time: a peer whose datagrams pause
// gets their parity alone after twice their gap; a datagram with nothing
// to protect rides in the next coded one when it comes within 1.5 gaps,
// and goes alone after that otherwise.
func TestChainFlushAndLinger(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		n := conntest.NewMemNet()
		peer := n.Listen("10.0.0.1:4000")
		defer peer.Close()
		protect := func(b []byte) int {
			if bytes.HasPrefix(b, []byte("ack")) {
				return len(b)
			}
			return 0
		}
		c := NewChainConn(n.Listen("10.0.0.2:4000"), &ChainConfig{Protect: protect, Linger: time.Second, Probe: time.Hour, Hold: time.Hour})
		defer c.Close()
		to := peer.LocalAddr()
		start := time.Now()
		for i := range 4 {
			c.WriteTo(chainMsg(i), to)
			time.Sleep(10 * time.Millisecond)
		}
		c.WriteTo([]byte("ack1"), to) // at 40ms: rides in the next, at 45ms
		time.Sleep(5 * time.Millisecond)
		c.WriteTo(chainMsg(4), to)
		time.Sleep(5 * time.Millisecond)
		c.WriteTo([]byte("ack2"), to) // at 50ms: no data follows
		time.Sleep(100 * time.Millisecond)
		synctest.Wait()
		var got []string
		for {
			pkt, ok := peer.Recv()
			if !ok {
				break
			}
			h, payload, _, _, _ := parseChain(pkt.B)
			got = append(got, fmt.Sprintf("%x:%s@%v", h.kind, payload, pkt.At.Sub(start)))
		}
		// The gap settles near 10ms: the held ack goes alone 1.5 gaps
		// after it was written, and the parity alone 2 gaps and 2 mean
		// deviations after the last coded datagram.
		want := []string{"21:m0@0s", "21:m1.@10ms", "22:m2..@20ms", "22:m3...@30ms", "22:ack1m4....@45ms"}
		if len(got) != 7 || fmt.Sprint(got[:5]) != fmt.Sprint(want) {
			t.Fatalf("sent %q, want %q then a plain ack2 and a flush", got, want)
		}
		if !bytes.HasPrefix([]byte(got[5]), []byte("20:ack2@")) || !bytes.HasPrefix([]byte(got[6]), []byte("22:@")) {
			t.Errorf("after the last data: %q, want ack2 alone, then the flush", got[5:])
		}
	})
}

// TestChainConnPeerBound: datagrams from a low port make no peer, and
// what they carry is still read.
func TestChainConnPeerBound(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		n := conntest.NewMemNet()
		c := NewChainConn(n.Listen("10.0.0.1:4000"), nil)
		defer c.Close()
		var s chainSender
		n.Inject(c.LocalAddr(), netip.MustParseAddrPort("10.0.0.9:53"), s.next(nil, 0, []byte("x"), 0, 0))
		buf := make([]byte, 10)
		k, _, err := c.ReadFrom(buf)
		if err != nil || string(buf[:k]) != "x" {
			t.Fatalf("ReadFrom = %q, %v", buf[:k], err)
		}
		c.mu.Lock()
		peers := len(c.peers)
		c.mu.Unlock()
		if peers != 0 {
			t.Errorf("a low port made %d peers", peers)
		}
	})
}

// FuzzChainDecode feeds a ChainConn's decoder arbitrary datagrams: it
// never panics, what parses re-encodes to the same bytes, and what a
// window of datagrams cut from the input rebuilds fits a datagram.
func FuzzChainDecode(f *testing.F) {
	var s chainSender
	f.Add(s.next(nil, 1, []byte("hello"), 2, 0))
	f.Add(s.next(nil, 1, []byte("world!"), 0, 1))
	f.Add(s.next(nil, 1, []byte("again"), 0, 2))
	f.Add(s.next(nil, 1, nil, 0, 2))
	f.Add(appendPlain(nil, 3, []byte("ack")))
	f.Add([]byte{chainCoded2, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0xff, 0xff})
	f.Fuzz(func(t *testing.T, b []byte) {
		h, payload, p, q, ok := parseChain(b)
		if ok && h.kind != chainPlain {
			again := binary.BigEndian.AppendUint32([]byte{h.kind, h.report}, h.seq)
			again = binary.BigEndian.AppendUint16(again, uint16(h.split))
			again = binary.BigEndian.AppendUint16(again, uint16(len(payload)))
			again = append(again, payload...)
			if h.kind == chainCoded2 {
				again = binary.BigEndian.AppendUint16(again, uint16(len(p)))
			}
			again = append(append(again, p...), q...)
			if !bytes.Equal(again, b) {
				t.Fatalf("parseChain(% x) re-encodes as % x", b, again)
			}
		}
		// Datagrams cut from b at nearby sequence numbers reach the
		// window and the rebuilding.
		var r chainReceiver
		for i := 0; i+chainCodedBytes <= len(b); i += chainCodedBytes {
			pkt := bytes.Clone(b[i:])
			pkt[0] = chainCoded + pkt[0]%2
			binary.BigEndian.PutUint32(pkt[2:], uint32(1+i%7))
			if h, payload, p, q, ok := parseChain(pkt); ok {
				r.receive(h.seq, payload[h.split:], p, q, func(d []byte) {
					if len(d) > maxProtected {
						t.Fatalf("rebuilt %d bytes", len(d))
					}
				})
			}
		}
	})
}

// TestChainLevel: no parity on a clean link; with Parities unset, two
// until losses have been counted and while they come to
// SecondParityLoss of the datagrams sent, one below; a set Parities
// always.
func TestChainLevel(t *testing.T) {
	now := time.Now()
	c := &ChainConn{cfg: ChainConfig{Hold: time.Minute}}
	for _, tt := range []struct {
		name        string
		parities    int
		lossAt      time.Time
		lost, coded float64
		want        int
	}{
		{"never a loss", 0, time.Time{}, 0, 0, 0},
		{"losses long ago", 0, now.Add(-time.Hour), 10, 100, 0},
		{"no count yet", 0, now, 0, 0, 2},
		{"5% lost", 0, now, 5, 100, 1},
		{"10% lost", 0, now, 10, 100, 2},
		{"just over the bound", 0, now, 7.5, 100, 2},
		{"just under it", 0, now, 6.5, 100, 1},
		{"set to 1 at 10%", 1, now, 10, 100, 1},
		{"set to 2 at 5%", 2, now, 5, 100, 2},
	} {
		c.cfg.Parities = tt.parities
		p := &chainPeer{lossAt: tt.lossAt, lost: tt.lost, coded: tt.coded}
		if got := c.level(p, now); got != tt.want {
			t.Errorf("%s: level = %d, want %d", tt.name, got, tt.want)
		}
	}
}
