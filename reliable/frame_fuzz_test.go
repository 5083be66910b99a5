package reliable

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"net/netip"
	"sync/atomic"
	"testing"
	"time"

	"github.com/udplab/udplab/internal/conntest"
	"github.com/udplab/udplab/message"
)

// memServer is a reliable server on an in-memory network, shared by a fuzz
// target's iterations and closed when the target ends. Every client gets
// an address of its own, never used again, so no session of an earlier
// iteration meets a later one's client.
type memServer struct {
	net  *conntest.MemNet
	srv  *Server
	cfg  Config
	next atomic.Uint32 // the last client address handed out
}

func newMemServer(f *testing.F, h message.Handler, cfg Config) *memServer {
	f.Helper()
	cfg.Logger = quiet
	m := &memServer{net: conntest.NewMemNet(), cfg: cfg}
	s, err := NewServer(m.net.Listen("10.0.0.1:1"), h, &cfg)
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { s.Close() })
	m.srv = s
	return m
}

// dial returns a client of m from a new address, closed as t ends.
func (m *memServer) dial(t testing.TB) *Conn {
	t.Helper()
	n := m.next.Add(1)
	return m.dialFrom(t, netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, 1, byte(n >> 8), byte(n)}), uint16(40000+n>>16)))
}

// dialFrom returns a client of m from ap, closed as t ends.
func (m *memServer) dialFrom(t testing.TB, ap netip.AddrPort) *Conn {
	t.Helper()
	c, err := NewConn(m.net.Listen(ap.String()), m.srv.Addr(), &m.cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// greet checks that a new client of m is greeted.
func (m *memServer) greet(t testing.TB, name string) {
	t.Helper()
	if got := conntest.RoundTrip(t, m.dial(t), name); got != "Hello "+name+"!\n" {
		t.Fatalf("greeting = %q", got)
	}
}

// FuzzFraming sends an echo server arbitrary sequences of KCP messages from
// one session: bare messages, frame headers of any declared length
// (none, too many, more than follows), framed messages cut by kcp-go,
// segments that run past a frame's end. The server must echo exactly the
// messages a reader of the rules in frame.go would see (model), drop the
// session at a bad header without panicking, and keep serving: a new
// client is greeted after every sequence.
func FuzzFraming(f *testing.F) {
	hdr := func(n uint32) []byte { return binary.BigEndian.AppendUint32([]byte{0xff}, n) }
	f.Add([]byte("\x05Alice\x03Bob"))
	f.Add([]byte("\x00\x10\x00"))                                         // a framed 4096-byte message
	f.Add([]byte("\x00\x00\x01"))                                         // a one-byte message, bare
	f.Add(append(hdr(3), "\x05abcde\x02fg"...))                           // a frame whose last segment runs over
	f.Add(append(hdr(0), "\x01x"...))                                     // a header declaring nothing
	f.Add(append(hdr(MaxMessage+1), "\x01x"...))                          // one declaring too much
	f.Add(append(hdr(MaxMessage), "\xfe\x01\xfe\x02"...))                 // a frame never finished
	f.Add(append(hdr(1), "\xff\xff\x55\x44\x4c\x00\x00\x00\x02\x01z"...)) // a header-shaped message inside a frame
	f.Add([]byte("\x08\xffUDL\x00\x00\x00\x01\x01q"))                     // a header written as a bare message
	f.Add([]byte("\xfe\x07\xfe\x08\x00\x00\x09"))
	m := newMemServer(f, message.Greet, Config{Idle: time.Second})
	echo := newMemServer(f, message.Echo, Config{Idle: time.Second})
	mss := segmentPayload(DefaultMTU, true, nil)
	f.Fuzz(func(t *testing.T, in []byte) {
		segs := fuzzSegments(in, mss)
		want, n := model(segs)
		c := echo.dial(t)
		ctx, cancel := context.WithTimeout(context.Background(), conntest.Timeout)
		defer cancel()
		// Write from a second goroutine while reading the echoes, or a
		// long sequence fills both windows. Only the segments up to the
		// end of the stream the server reads are sent.
		errc := make(chan error, 1)
		go func() {
			c.s.SetWriteDeadline(time.Now().Add(conntest.Timeout))
			for _, s := range segs[:n] {
				if _, err := c.s.Write(s); err != nil {
					errc <- err
					return
				}
			}
			errc <- nil
		}()
		for i, w := range want {
			got, err := c.Receive(ctx)
			if err != nil || !bytes.Equal(got, w) {
				cancel()
				c.Close()
				<-errc
				t.Fatalf("echo %d of %d: %d bytes %.16q, %v; want %d bytes %.16q", i, len(want), len(got), got, err, len(w), w)
			}
		}
		if err := <-errc; err != nil {
			t.Fatal(err)
		}
		m.greet(t, "Alice")
		if st := echo.srv.Stats(); st.Sessions > echo.srv.Config().MaxSessions {
			t.Fatalf("%d sessions, over MaxSessions", st.Sessions)
		}
	})
}

// fuzzSegments cuts in into KCP messages of 1 to mss bytes. Each starts
// with a control byte: 0xff and 4 bytes is a frame header declaring those
// bytes (big-endian); 0xfe and a byte is a message of mss bytes filled
// from that byte; 0 and 2 bytes is a message of that many bytes (or one,
// for 0) as writeMessage sends it, framed when it must be, cut by mss; any
// other value n is a message of the next n bytes. At most 256 KiB go in
// all, so an iteration stays quick.
func fuzzSegments(in []byte, mss int) [][]byte {
	var segs [][]byte
	total := 0
	take := func(n int) []byte {
		b := in[:min(n, len(in))]
		in = in[len(b):]
		return b
	}
	for len(in) > 0 && total < 256<<10 {
		var add [][]byte
		switch op := take(1)[0]; op {
		case 0xff:
			var n [4]byte
			copy(n[:], take(4))
			add = [][]byte{append([]byte(frameMagicBytes), n[:]...)}
		case 0xfe:
			fill := byte(0x5a)
			if b := take(1); len(b) > 0 {
				fill = b[0]
			}
			add = [][]byte{bytes.Repeat([]byte{fill}, mss)}
		case 0x00:
			var n [2]byte
			copy(n[:], take(2))
			msg := pattern(max(1, int(binary.BigEndian.Uint16(n[:]))))
			if len(msg) <= mss && !looksLikeHeader(msg) {
				add = [][]byte{msg}
				break
			}
			add = [][]byte{binary.BigEndian.AppendUint32([]byte(frameMagicBytes), uint32(len(msg)))}
			for ; len(msg) > 0; msg = msg[min(mss, len(msg)):] {
				add = append(add, msg[:min(mss, len(msg))])
			}
		default:
			if b := take(int(op)); len(b) > 0 {
				add = [][]byte{bytes.Clone(b)}
			}
		}
		for _, s := range add {
			segs = append(segs, s)
			total += len(s)
		}
	}
	return segs
}

// model returns the messages a reader following frame.go's rules gets
// from segs, each one KCP message: a segment is a message of its own
// unless it is a frame header, which declares how many bytes of the
// following segments make one message; a segment that runs past that end
// is cut there, and its rest read as the next segment. A header declaring
// 0 or more than MaxMessage bytes ends the stream. n is how many segments
// the reader consumes.
func model(segs [][]byte) (msgs [][]byte, n int) {
	var pending []byte
	want := 0
	var rest []byte // the uncut part of a segment that ran past a frame
	for n < len(segs) || rest != nil {
		seg := rest
		if seg == nil {
			seg = segs[n]
			n++
		}
		rest = nil
		if want == 0 {
			if !looksLikeHeader(seg) {
				msgs = append(msgs, seg)
				continue
			}
			want = int(binary.BigEndian.Uint32(seg[4:]))
			if want == 0 || want > MaxMessage {
				return msgs, n
			}
			pending = make([]byte, 0, want)
			continue
		}
		if left := want - len(pending); len(seg) > left {
			seg, rest = seg[:left], seg[left:]
		}
		pending = append(pending, seg...)
		if len(pending) == want {
			msgs = append(msgs, pending)
			want = 0
		}
	}
	return msgs, n
}

func TestModel(t *testing.T) {
	hdr := func(n uint32) []byte { return binary.BigEndian.AppendUint32([]byte(frameMagicBytes), n) }
	for _, tc := range []struct {
		segs [][]byte
		want string
		n    int
	}{
		{[][]byte{[]byte("a"), []byte("b")}, "[a b]", 2},
		{[][]byte{hdr(3), []byte("ab"), []byte("cde")}, "[abc de]", 3},
		{[][]byte{hdr(3), []byte("ab")}, "[]", 2},
		{[][]byte{[]byte("a"), hdr(0), []byte("b")}, "[a]", 2},
		{[][]byte{hdr(1), append([]byte("x"), hdr(1)...), []byte("y")}, "[x y]", 3},
	} {
		msgs, n := model(tc.segs)
		if got := fmt.Sprintf("%s", msgs); got != tc.want || n != tc.n {
			t.Errorf("model(%q) = %s, %d; want %s, %d", tc.segs, got, n, tc.want, tc.n)
		}
	}
}
