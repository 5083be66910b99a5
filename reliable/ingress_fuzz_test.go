package reliable

import (
	"context"
	"encoding/binary"
	"testing"
	"time"

	"github.com/udplab/udplab/internal/conntest"
	"github.com/udplab/udplab/message"
)

// ingressMax is the table FuzzIngress gives its server: fewer than
// conntest.ForgedSources, so it fills and refuses.
const ingressMax = 8

// FuzzIngress hands a server arbitrary datagrams from forged source
// addresses, as conntest.Forged reads them, with FEC and without (where
// they reach KCP's own parsing). Nothing may panic, the session table must
// stay within MaxSessions, and a client greeted before must still be
// greeted after every batch. Sessions the datagrams open stay until dropped for a
// bad frame, so the table stays full and keeps refusing.
func FuzzIngress(f *testing.F) {
	for _, fec := range []bool{false, true} {
		for _, d := range clientDatagrams(f, fec, "Alice") {
			f.Add(fec, conntest.Batch(0, d))
			f.Add(fec, conntest.Batch(1, d, d, d))
		}
	}
	push := kcpSegment(1, 81, 0, 0, []byte("Bob"))
	f.Add(false, conntest.Batch(2, push))
	f.Add(false, conntest.Batch(3, kcpSegment(1, 81, 255, 0, []byte("x"))))   // 255 fragments to come
	f.Add(false, conntest.Batch(4, kcpSegment(1, 81, 0, 1<<31, []byte("x")))) // far past the window
	f.Add(false, conntest.Batch(5, kcpSegment(1, 82, 0, 0, nil)))             // an acknowledgement
	f.Add(false, conntest.Batch(6, kcpSegment(1, 83, 0, 0, nil)))             // a window probe
	f.Add(false, conntest.Batch(7, append(kcpSegment(1, 81, 0, 0, []byte("\xffUDL\x00\x10\x00\x00")), push...)))
	long := kcpSegment(1, 81, 0, 0, []byte("abc"))
	binary.LittleEndian.PutUint32(long[20:], 1<<30) // a length past the datagram
	f.Add(false, conntest.Batch(8, long))
	f.Add(true, conntest.Batch(9, []byte{0, 0, 0, 0, 0xf1, 0}, []byte{}, make([]byte, 1500)))
	servers := map[bool]*memServer{}
	greeted := map[bool]*Conn{}
	for _, fec := range []bool{false, true} {
		m := newMemServer(f, message.Greet, Config{NoFEC: !fec, Idle: time.Hour, MaxSessions: ingressMax})
		servers[fec], greeted[fec] = m, m.dial(f)
		if got := conntest.RoundTrip(f, greeted[fec], "Alice"); got != "Hello Alice!\n" {
			f.Fatalf("greeting = %q", got)
		}
	}
	f.Fuzz(func(t *testing.T, fec bool, in []byte) {
		m := servers[fec]
		conntest.Forged(in, func(src byte, d []byte) {
			m.net.Inject(m.srv.Addr(), conntest.ForgedAddr(src), d)
		})
		// The greeting's request queues behind every datagram above.
		if got := conntest.RoundTrip(t, greeted[fec], "Carol"); got != "Hello Carol!\n" {
			t.Fatalf("greeting = %q", got)
		}
		if st := m.srv.Stats(); st.Sessions > ingressMax {
			t.Fatalf("%d sessions, MaxSessions is %d", st.Sessions, ingressMax)
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
	c, err := NewConn(mn.Listen("10.0.0.2:1"), rec.LocalAddr(), &cfg)
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
