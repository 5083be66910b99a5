package compare

import (
	"bytes"
	"errors"
	"slices"
	"testing"

	"github.com/udplab/udplab/message"
)

// FuzzParseGreeting holds parseGreeting, which reads every reply a greet
// run gets off the network, to the names the workload sends: a reply it
// accepts must be exactly the greeting of the name it reports, a name
// this run sent; and the greeting of every name sent parses back to it.
func FuzzParseGreeting(f *testing.F) {
	f.Add([]byte("Hello 0007!\n"), uint16(4), uint32(400), uint32(7))
	f.Add([]byte("Hello 0400!\n"), uint16(4), uint32(400), uint32(399))
	f.Add([]byte("Hello 7!\n"), uint16(1), uint32(10), uint32(9))
	f.Add([]byte("Hello 99999999999999999999999!\n"), uint16(23), uint32(1<<31), uint32(12345))
	f.Add([]byte("Hello -1!\n"), uint16(2), uint32(400), uint32(0))
	f.Add([]byte("Hello !\n"), uint16(0), uint32(1), uint32(0))
	f.Add([]byte("Good bye!\n"), uint16(2), uint32(1), uint32(0))
	f.Fuzz(func(t *testing.T, reply []byte, size uint16, n, seq uint32) {
		sz, count := int(size), int(n)
		got, ok := parseGreeting(reply, sz, count)
		// Workload.Validate lets through sizes that hold every sequence
		// number below n; outside them, parseGreeting must only not panic.
		if sz < 1 || count < 1 || digits(count-1) > sz {
			return
		}
		if ok {
			want := append(appendName([]byte(greetPrefix), got, sz), greetSuffix...)
			if got < 0 || got >= count || !bytes.Equal(reply, want) {
				t.Fatalf("parseGreeting(%q, %d, %d) = %d, whose greeting is %q", reply, sz, count, got, want)
			}
		}
		// Every name the workload sends comes back as itself.
		s := int(seq) % count
		name := appendName(nil, s, sz)
		greeting, err := message.Greet(nil, name)
		if err != nil {
			t.Fatalf("Greet(%q) = %v", name, err)
		}
		if got, ok := parseGreeting(greeting, sz, count); !ok || got != s {
			t.Fatalf("parseGreeting(%q, %d, %d) = %d, %v; want %d", greeting, sz, count, got, ok, s)
		}
	})
}

// FuzzBulkSink holds the bulk sink, which checks every message a bulk
// flow delivers, to what the flow sends: a message it accepts must be
// exactly the one it reports, every message of the transfer is accepted
// as itself, and the handler answers nothing and counts each once.
func FuzzBulkSink(f *testing.F) {
	f.Add(uint32(4000), uint16(1472), uint32(2), []byte("\x00\x00\x00\x00\x00\x00\x00\x02"))
	f.Add(uint32(1473), uint16(1472), uint32(1), []byte("\x01"))
	f.Add(uint32(1480), uint16(1472), uint32(1), []byte("\x00\x00\x00\x00\x00\x00\x00\x01"))
	f.Add(uint32(9), uint16(MinBulkSize), uint32(0), []byte{})
	f.Add(uint32(1), uint16(MinBulkSize), uint32(0), []byte{0})
	f.Add(uint32(100), uint16(10), uint32(9), bytes.Repeat([]byte{0xff}, 10))
	f.Fuzz(func(t *testing.T, total32 uint32, size16 uint16, seq32 uint32, req []byte) {
		// What Validate lets through, kept to 65536 messages so an
		// iteration stays cheap.
		size := max(int(size16), MinBulkSize)
		total := min(int64(total32)+1, int64(size)<<16)
		s := newSink(total, size)
		if ok, seq := s.check(req); ok {
			if seq < 0 || seq >= s.n || !bytes.Equal(req, bulkMessage(make([]byte, size), seq, size, total)) {
				t.Fatalf("check(%d bytes) accepts it as message %d of %d (total %d, size %d), which it is not", len(req), seq, s.n, total, size)
			}
		}
		seq := int(seq32 % uint32(s.n))
		msg := bulkMessage(make([]byte, size), seq, size, total)
		if ok, got := s.check(msg); !ok || got != seq {
			t.Fatalf("message %d of %d (total %d, size %d): check = %v, %d", seq, s.n, total, size, ok, got)
		}
		for range 2 {
			for _, m := range [][]byte{req, msg} {
				if reply, err := s.handle(nil, m); !errors.Is(err, message.ErrNoReply) || len(reply) != 0 {
					t.Fatalf("handle = %q, %v; want no reply", reply, err)
				}
			}
		}
		var b Bulk
		s.result(&b)
		if b.Delivered+b.Duplicates+b.Corrupt != 4 || b.Delivered < 1 || b.Delivered > 2 || b.DeliveredBytes < int64(len(msg)) {
			t.Fatalf("after two each of a message and another: %+v", b)
		}
	})
}

// FuzzParseLink holds ParseLink, which reads --link, to its own output: a
// link it accepts prints as grammar that parses back to the same link.
// A sweep it accepts yields links that each print back to themselves.
func FuzzParseLink(f *testing.F) {
	for _, s := range slices.Concat(DefaultMatrix, []string{"", "lte", "up:loss=1%,down:delay=3ms", "seed=9,loss=1%", "loss="}) {
		f.Add(s, "loss=0%,5%")
	}
	f.Add("delay=20ms", "up:rate=1mbit,10mbit")
	f.Add("", "=")
	f.Fuzz(func(t *testing.T, text, sweep string) {
		if l, err := ParseLink(text, 7); err == nil {
			again, err := ParseLink(l.Spec.String(), 7)
			if err != nil || again.Spec != l.Spec {
				t.Fatalf("ParseLink(%q) = %+v; its String %q parses to %+v, %v", text, l.Spec, l.Spec.String(), again.Spec, err)
			}
		}
		_, links, err := SweepLinks(text, sweep, 7)
		if err != nil {
			return
		}
		for _, l := range links {
			if again, err := ParseLink(l.Spec.String(), 7); err != nil || again.Spec != l.Spec {
				t.Fatalf("SweepLinks(%q, %q) link %+v prints as %q, which parses to %+v, %v", text, sweep, l.Spec, l.Spec.String(), again.Spec, err)
			}
		}
	})
}
