package reliable

import (
	"context"
	"encoding/binary"
	"testing"
	"time"

	"github.com/udplab/udplab/internal/conntest"
	"github.com/udplab/udplab/message"
)

// ingressMax is the table FuzzIngress gives its server, and
// ingressValidated how many of the forged sources it validates first, with
// a real client at each: with the client it checks, fewer than ingressMax.
const (
	ingressMax       = 8
	ingressValidated = 4
)

// FuzzIngress hands a server arbitrary datagrams from forged source
// addresses, as conntest.Forged reads them, with FEC and without (where
// they reach KCP's own parsing). The first ingressValidated sources were
// validated by a real client each before fuzzing, so what comes from them
// passes the gate to kcp-go; what comes from the others meets the gate's
// probation. Nothing may panic, the session table must stay within
// MaxSessions, and a client greeted before must still be greeted after
// every batch.
func FuzzIngress(f *testing.F) {
	servers := map[bool]*memServer{}
	greeted := map[bool]*Conn{}
	for _, fec := range []bool{false, true} {
		m := newMemServer(f, message.Greet, Config{NoFEC: !fec, Idle: time.Hour, MaxSessions: ingressMax})
		servers[fec], greeted[fec] = m, m.dial(f)
		if got := conntest.RoundTrip(f, greeted[fec], "Alice"); got != "Hello Alice!\n" {
			f.Fatalf("greeting = %q", got)
		}
		for i := range byte(ingressValidated) {
			c := m.dialFrom(f, conntest.ForgedAddr(i))
			if got := conntest.RoundTrip(f, c, "Bob"); got != "Hello Bob!\n" {
				f.Fatalf("greeting = %q", got)
			}
			if fec {
				continue
			}
			// Segments of the validated session's own conversation,
			// which the gate hands to kcp-go.
			conv := c.s.GetConv()
			push := kcpSegment(conv, 81, 0, 1, []byte("Bob"))
			f.Add(false, conntest.Batch(i, push))
			f.Add(false, conntest.Batch(i, kcpSegment(conv, 81, 255, 1, []byte("x"))))   // 255 fragments to come
			f.Add(false, conntest.Batch(i, kcpSegment(conv, 81, 0, 1<<31, []byte("x")))) // far past the window
			f.Add(false, conntest.Batch(i, kcpSegment(conv, 82, 0, 0, nil)))             // an acknowledgement
			f.Add(false, conntest.Batch(i, kcpSegment(conv, 83, 0, 0, nil)))             // a window probe
			f.Add(false, conntest.Batch(i, append(kcpSegment(conv, 81, 0, 1, []byte("\xffUDL\x00\x10\x00\x00")), push...)))
			long := kcpSegment(conv, 81, 0, 1, []byte("abc"))
			binary.LittleEndian.PutUint32(long[20:], 1<<30) // a length past the datagram
			f.Add(false, conntest.Batch(i, long))
		}
	}
	for _, fec := range []bool{false, true} {
		for _, d := range clientDatagrams(f, fec, "Alice") {
			f.Add(fec, conntest.Batch(0, d))                   // a validated source with a new conversation
			f.Add(fec, conntest.Batch(ingressValidated, d, d)) // a new source
		}
	}
	f.Add(false, conntest.Batch(ingressValidated+1, kcpSegment(1, 81, 0, 0, []byte("Bob"))))
	f.Add(true, conntest.Batch(2, []byte{0, 0, 0, 0, 0xf1, 0, 0, 0}, []byte{}, make([]byte, 1500)))
	f.Fuzz(func(t *testing.T, fec bool, in []byte) {
		m := servers[fec]
		conntest.Forged(in, func(src byte, d []byte) {
			m.net.Inject(m.srv.Addr(), conntest.ForgedAddr(src), d)
		})
		// The greeting's request queues behind every datagram above.
		if got := conntest.RoundTrip(t, greeted[fec], "Carol"); got != "Hello Carol!\n" {
			t.Fatalf("greeting = %q", got)
		}
		st := m.srv.Stats()
		if st.Sessions > ingressMax {
			t.Fatalf("%d sessions, MaxSessions is %d", st.Sessions, ingressMax)
		}
		// No forged source can answer a probe, so none opens a session,
		// and none ends a validated source's (a reset would open another).
		if want := uint64(1 + ingressValidated); st.Accepted != want {
			t.Fatalf("%d sessions ever accepted, want %d: the real clients' and the validated forged sources'", st.Accepted, want)
		}
	})
}

// kcpSegment builds a bare KCP segment (no FEC, no cipher) of conversation
// conv: cmd 81 is a push, 82 an acknowledgement, 83 a window probe.
func kcpSegment(conv uint32, cmd, frg byte, sn uint32, data []byte) []byte {
	b := binary.LittleEndian.AppendUint32(nil, conv)
	b = append(b, cmd, frg)
	b = binary.LittleEndian.AppendUint16(b, 128) // window
	b = binary.LittleEndian.AppendUint32(b, 0)   // timestamp
	b = binary.LittleEndian.AppendUint32(b, sn)
	b = binary.LittleEndian.AppendUint32(b, 0) // una
	b = binary.LittleEndian.AppendUint32(b, uint32(len(data)))
	return append(b, data...)
}

// clientDatagrams returns the datagrams a client sends to greet name, as
// seeds: what a server meets first.
func clientDatagrams(f *testing.F, fec bool, name string) [][]byte {
	f.Helper()
	mn := conntest.NewMemNet()
	rec := mn.Listen("10.0.0.1:1")
	defer rec.Close()
	cfg := Config{NoFEC: !fec, Logger: quiet}
	c, err := NewConn(mn.Listen("10.0.0.2:40000"), rec.LocalAddr(), &cfg)
	if err != nil {
		f.Fatal(err)
	}
	defer c.Close()
	if err := c.Send(context.Background(), []byte(name)); err != nil {
		f.Fatal(err)
	}
	var out [][]byte
	buf := make([]byte, 2048)
	rec.SetReadDeadline(time.Now().Add(conntest.Timeout))
	for len(out) < 4 {
		n, _, err := rec.ReadFrom(buf)
		if err != nil {
			break
		}
		out = append(out, append([]byte(nil), buf[:n]...))
		rec.SetReadDeadline(time.Now().Add(50 * time.Millisecond)) // a retransmission, if any
	}
	return out
}
