package raw

import (
	"bytes"
	"encoding/binary"
	"log/slog"
	"net/netip"
	"testing"
	"time"

	"github.com/udplab/udplab/internal/conntest"
	"github.com/udplab/udplab/message"
)

// ingressPeers is how many source addresses FuzzIngress sends from.
const ingressPeers = 4

// FuzzIngress hands a greeting server arbitrary datagrams from several
// source addresses. Each source must get exactly the replies message.Greet
// makes of its datagrams, in order, and none for a datagram Greet refuses
// or whose reply would not fit one; nothing may panic; and a client is
// greeted after every batch. One server serves every iteration.
func FuzzIngress(f *testing.F) {
	f.Add(ingress(0, []byte("Alice")))
	f.Add(ingress(1, []byte("Bob\n"), []byte("exit"), []byte{}, []byte("\xff\xfe"), []byte("a\x00b")))
	long := func(fill byte, short int) []byte { return []byte{0x80 | byte(short>>8), byte(short), fill} }
	f.Add(append([]byte{2}, long('a', len("Hello !\n"))...)) // the longest name answered
	f.Add(append([]byte{2}, long('a', len("Hello !\n")-1)...))
	f.Add(append([]byte{2}, long('a', 0)...))
	f.Add(ingress(3, []byte("Carol\r\n"), []byte("\n"), []byte(" "), []byte("é")))
	mn := conntest.NewMemNet()
	s := NewServer(mn.Listen("10.0.0.1:1"), message.Greet, &ServerConfig{Logger: slog.New(slog.DiscardHandler)})
	f.Cleanup(func() { s.Close() })
	var peers [ingressPeers]*conntest.MemConn
	for i := range peers {
		peers[i] = mn.Listen(netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, 2, 0, byte(i)}), 1).String())
		f.Cleanup(func() { peers[i].Close() })
	}
	c := NewConn(mn.Listen("10.0.0.2:1"), s.Addr())
	f.Cleanup(func() { c.Close() })
	f.Fuzz(func(t *testing.T, in []byte) {
		var want [ingressPeers][][]byte
		for long := 0; len(in) > 2; {
			p := int(in[0]) % ingressPeers
			d, rest := datagram(in[1:], long < 4)
			if len(d) > 1<<10 {
				long++ // a few a batch, or the batch gets slow
			}
			in = rest
			mn.Inject(s.Addr(), netip.MustParseAddrPort(peers[p].LocalAddr().String()), d)
			if reply, err := message.Greet(nil, d); err == nil && len(reply) <= MaxMessage {
				want[p] = append(want[p], reply)
			}
		}
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

// datagram cuts the next datagram from in: a big-endian length and that
// many bytes, or, when the length's top bit is set, the next byte repeated
// to MaxMessage less the length's other bits (unless long is false), so
// that datagrams near the largest are cheap to write and to minimize.
func datagram(in []byte, long bool) (d, rest []byte) {
	n := int(binary.BigEndian.Uint16(in))
	in = in[2:]
	if n&0x8000 != 0 && len(in) > 0 && long {
		return bytes.Repeat(in[:1], MaxMessage-n&0x7fff), in[1:]
	}
	n = min(n, len(in))
	return in[:n], in[n:]
}

// ingress lays datagrams out as FuzzIngress reads them: a source byte and
// a big-endian length before each.
func ingress(src byte, datagrams ...[]byte) []byte {
	var out []byte
	for _, d := range datagrams {
		out = append(out, src)
		out = binary.BigEndian.AppendUint16(out, uint16(len(d)))
		out = append(out, d...)
	}
	return out
}
