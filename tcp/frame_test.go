package tcp

import (
	"bytes"
	"errors"
	"io"
	"testing"

	"github.com/udplab/udplab/message"
)

// chunkReader returns its stream in chunks whose lengths are cut from
// cuts in turn, as a network may split a stream anywhere. A zero length
// returns nothing at all, once: the read after it returns a byte at least.
type chunkReader struct {
	stream []byte
	cuts   []byte
	i      int
	empty  bool // the last read returned nothing
}

func (r *chunkReader) Read(p []byte) (int, error) {
	if len(r.stream) == 0 {
		return 0, io.EOF
	}
	n := len(r.stream)
	if len(r.cuts) > 0 {
		n = int(r.cuts[r.i%len(r.cuts)])
		r.i++
	}
	if r.empty {
		n = max(n, 1)
	}
	r.empty = n == 0
	n = copy(p, r.stream[:min(n, len(r.stream))])
	r.stream = r.stream[n:]
	return n, nil
}

// splitMessages cuts payload into messages whose lengths are taken from
// sizes in turn (each byte times 64 plus its rest, so messages of a few
// bytes and of several kilobytes both occur); with no sizes, one message.
func splitMessages(payload, sizes []byte) [][]byte {
	if len(sizes) == 0 {
		return [][]byte{payload}
	}
	var msgs [][]byte
	for i := 0; len(payload) > 0 || i < len(sizes); i++ {
		s := sizes[i%len(sizes)]
		n := min(int(s>>2)*64+int(s&3), len(payload))
		msgs = append(msgs, payload[:n])
		payload = payload[n:]
		if i > 10000 {
			break
		}
	}
	return msgs
}

func FuzzFrames(f *testing.F) {
	f.Add([]byte("Alice"), []byte{}, []byte{})
	f.Add([]byte("AliceBobCarol"), []byte{5, 3, 5}, []byte{1})
	f.Add([]byte("\x00\x00\x00\x05hello"), []byte{0, 9}, []byte{0, 2, 0, 3})
	f.Add(bytes.Repeat([]byte{0xff}, 9000), []byte{255, 0, 1}, []byte{7, 200})
	f.Add([]byte{0x00, 0xff, 0xff, 0xff, 'x'}, []byte{}, []byte{3})
	f.Fuzz(func(t *testing.T, payload, sizes, cuts []byte) {
		// Encode, split anywhere, decode: the same messages come out,
		// then the end of the stream.
		msgs := splitMessages(payload, sizes)
		var stream []byte
		for _, m := range msgs {
			stream = appendFrame(stream, m)
		}
		r := newReader(&chunkReader{stream: stream, cuts: cuts}, true)
		for i, want := range msgs {
			got, err := r.frame()
			if err != nil || !bytes.Equal(got, want) {
				t.Fatalf("message %d: got %d bytes, %v; want %d bytes", i, len(got), err, len(want))
			}
		}
		if got, err := r.frame(); !errors.Is(err, io.EOF) {
			t.Fatalf("after the last message: %d bytes, %v; want EOF", len(got), err)
		}

		// Decode the payload itself as a stream: what comes out, framed
		// again, is the stream up to where decoding stopped, and it stops
		// only at the end, at a cut frame, or at a header over MaxMessage.
		r = newReader(&chunkReader{stream: payload, cuts: cuts}, false)
		var again []byte
		for {
			m, err := r.frame()
			if err != nil {
				if !bytes.HasPrefix(payload, again) {
					t.Fatalf("re-encoded messages are not a prefix of the stream")
				}
				rest := payload[len(again):]
				switch {
				case errors.Is(err, io.EOF) && len(rest) < headerLen:
				case errors.Is(err, io.EOF) && int(rest[1])<<16|int(rest[2])<<8|int(rest[3]) > len(rest)-headerLen && rest[0] == 0:
				case errors.Is(err, message.ErrBadRequest) && rest[0] != 0 || errors.Is(err, message.ErrBadRequest) && int(rest[1])<<16|int(rest[2])<<8|int(rest[3]) > MaxMessage:
				default:
					t.Fatalf("decoding stopped %d bytes before the end with %v", len(rest), err)
				}
				if cap(r.buf) > 2*max(len(payload), readBufferSize) {
					t.Fatalf("buffer grew to %d bytes for a %d-byte stream", cap(r.buf), len(payload))
				}
				return
			}
			again = appendFrame(again, m)
		}
	})
}

// FuzzLines splits text at arbitrary points: the lines come out whole, and
// what follows the last newline is left for rest.
func FuzzLines(f *testing.F) {
	f.Add([]byte("Alice\nBob\r\nCarol"), []byte{1, 0, 3})
	f.Add([]byte("\n\n\n"), []byte{})
	f.Fuzz(func(t *testing.T, text, cuts []byte) {
		r := newReader(&chunkReader{stream: text, cuts: cuts}, true)
		want := bytes.SplitAfter(text, []byte("\n"))
		tail := want[len(want)-1]
		for i, w := range want[:len(want)-1] {
			got, err := r.line(MaxMessage)
			if err != nil || !bytes.Equal(got, w) {
				t.Fatalf("line %d = %q, %v; want %q", i, got, err, w)
			}
		}
		if got, err := r.line(MaxMessage); !errors.Is(err, io.EOF) || !bytes.Equal(r.rest(), tail) {
			t.Fatalf("after the last line: %q, %v; want EOF and %q left", got, err, tail)
		}
	})
}

// TestLineLimit: a line over the limit is a bad request, found without
// buffering past the limit.
func TestLineLimit(t *testing.T) {
	r := newReader(bytes.NewReader(bytes.Repeat([]byte("a"), 3*readBufferSize)), true)
	if got, err := r.line(readBufferSize + 10); !errors.Is(err, message.ErrBadRequest) || len(r.buf) > readBufferSize+10 {
		t.Errorf("overlong line = %d bytes, %v, buffer %d bytes; want a bad request and at most the limit buffered", len(got), err, len(r.buf))
	}
	r = newReader(bytes.NewReader([]byte("abc\n")), true)
	if got, err := r.line(4); err != nil || string(got) != "abc\n" {
		t.Errorf("line at the limit = %q, %v", got, err)
	}
}
