package raw

import (
	"bytes"
	"log/slog"
	"testing"
	"time"

	"github.com/udplab/udplab/internal/conntest"
	"github.com/udplab/udplab/message"
)

// FuzzIngress hands a greeting server arbitrary datagrams from several
// source addresses, as conntest.Forged reads them. Each source must get
// exactly the replies message.Greet makes of its datagrams, in order, and
// none for a datagram Greet refuses or whose reply would not fit one;
// nothing may panic; and a client is greeted after every batch. One server
// serves every iteration.
//
// A source byte's top bit makes its datagram long: its first byte
// repeated to MaxMessage less the datagram's other bytes, so that
// datagrams near the largest are cheap to write and to minimize. A few a
// batch are made long, or the batch gets slow.
func FuzzIngress(f *testing.F) {
	f.Add(conntest.Batch(0, []byte("Alice")))
	f.Add(conntest.Batch(1, []byte("Bob\n"), []byte("exit"), []byte{}, []byte("\xff\xfe"), []byte("a\x00b")))
	f.Add(conntest.Batch(3, []byte("Carol\r\n"), []byte("\n"), []byte(" "), []byte("é")))
	f.Add(conntest.Batch(0x82, []byte("a\x00\x00\x00\x00\x00\x00\x00\x00"))) // the longest name answered
	f.Add(conntest.Batch(0x82, []byte("a\x00\x00\x00\x00\x00\x00\x00")))     // one byte longer
	f.Add(conntest.Batch(0x82, []byte("a")))
	mn := conntest.NewMemNet()
	s := NewServer(mn.Listen("10.0.0.1:1"), message.Greet, &ServerConfig{Logger: slog.New(slog.DiscardHandler)})
	f.Cleanup(func() { s.Close() })
	var peers [conntest.ForgedSources]*conntest.MemConn
	for i := range peers {
		peers[i] = mn.Listen(conntest.ForgedAddr(byte(i)).String())
		f.Cleanup(func() { peers[i].Close() })
	}
	c := NewConn(mn.Listen("10.0.0.2:40000"), s.Addr())
	f.Cleanup(func() { c.Close() })
	f.Fuzz(func(t *testing.T, in []byte) {
		var want [conntest.ForgedSources][][]byte
		long := 0
		conntest.Forged(in, func(src byte, d []byte) {
			if src&0x80 != 0 && len(d) > 0 && long < 4 {
				d = bytes.Repeat(d[:1], MaxMessage-(len(d)-1))
				long++
			}
			p := int(src) % conntest.ForgedSources
			mn.Inject(s.Addr(), conntest.ForgedAddr(src), d)
			if reply, err := message.Greet(nil, d); err == nil && len(reply) <= MaxMessage {
				want[p] = append(want[p], reply)
			}
		})
		// The server answers in order, so once the client is greeted
		// every reply above has been sent.
		if got := conntest.RoundTrip(t, c, "Dave"); got != "Hello Dave!\n" {
			t.Fatalf("greeting = %q", got)
		}
		buf := make([]byte, 1<<16)
		for i, p := range peers {
			p.SetReadDeadline(time.Unix(1, 0)) // read what is queued, wait for nothing
			for j := 0; ; j++ {
				n, _, err := p.ReadFrom(buf)
				if err != nil {
					if j < len(want[i]) {
						t.Fatalf("peer %d: %d replies, want %d", i, j, len(want[i]))
					}
					break
				}
				if j >= len(want[i]) || !bytes.Equal(buf[:n], want[i][j]) {
					t.Fatalf("peer %d: reply %d is %.32q, want %d replies: %.32q", i, j, buf[:n], len(want[i]), want[i])
				}
			}
		}
	})
}
