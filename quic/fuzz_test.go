package quic

import (
	"bytes"
	"encoding/hex"
	"errors"
	"io"
	"strconv"
	"strings"
	"testing"
)

// FuzzReadMessage reads a stream of size bytes (payload repeated) cut
// anywhere, its end arriving with the last bytes or after them, into a
// reused buffer: readMessage must return exactly the stream, or
// errTooLarge past MaxMessage, holding never more than twice what arrived
// (plus its starting room) nor more than MaxMessage+1 bytes.
func FuzzReadMessage(f *testing.F) {
	f.Add([]byte("Alice"), uint32(5), []byte{}, false, []byte("old"))
	f.Add([]byte("x"), uint32(startBuffer+1), []byte{0, 1, 0, 255}, true, []byte{})
	f.Add([]byte("ab"), uint32(MaxMessage), []byte{200}, true, []byte{})
	f.Add([]byte("ab"), uint32(MaxMessage+1), []byte{7}, false, []byte{})
	f.Add([]byte{}, uint32(0), []byte{}, true, []byte("stale"))
	f.Fuzz(func(t *testing.T, payload []byte, size uint32, cuts []byte, eofWithData bool, old []byte) {
		n := int(size % (MaxMessage + 2))
		if len(payload) == 0 {
			payload = []byte{'x'}
		}
		stream := bytes.Repeat(payload, n/len(payload)+1)[:n]
		r := &cutReader{stream: stream, cuts: cuts, eofWithData: eofWithData}
		old = bytes.Clone(old) // readMessage writes in its spare room, which may hold the other inputs
		got, err := readMessage(r, old)
		if n > MaxMessage {
			if !errors.Is(err, errTooLarge) || !bytes.HasPrefix(stream, got) || len(got) <= MaxMessage {
				t.Fatalf("readMessage(%d bytes) = %d bytes, %v; want errTooLarge past %d", n, len(got), err, MaxMessage)
			}
		} else if err != nil || !bytes.Equal(got, stream) {
			t.Fatalf("readMessage(%d bytes) = %d bytes, %v", n, len(got), err)
		}
		if cap(got) > MaxMessage+1 || cap(got) > max(cap(old), 2*len(got)+3*startBuffer) {
			t.Fatalf("readMessage(%d bytes) into %d holds %d", n, cap(old), cap(got))
		}
	})
}

// cutReader returns its stream in chunks whose lengths come from cuts in
// turn (times 64, plus the byte: short and long chunks both), then io.EOF:
// with the last bytes when eofWithData is set, as io.Reader allows.
type cutReader struct {
	stream      []byte
	cuts        []byte
	i           int
	eofWithData bool
	empty       bool // the last read returned nothing
}

func (r *cutReader) Read(p []byte) (int, error) {
	if len(r.stream) == 0 {
		return 0, io.EOF
	}
	n := len(r.stream)
	if len(r.cuts) > 0 {
		c := int(r.cuts[r.i%len(r.cuts)])
		r.i++
		n = c>>4*64 + c&15
	}
	if r.empty {
		n = max(n, 1) // a reader may return nothing, but not forever
	}
	r.empty = n == 0
	n = copy(p, r.stream[:min(n, len(r.stream))])
	r.stream = r.stream[n:]
	if len(r.stream) == 0 && r.eofWithData {
		return n, io.EOF
	}
	return n, nil
}

// FuzzParsePin: a pin ParsePin (--pin) accepts comes back as 64 lower-case
// hex digits that parse to themselves; what it refuses it refuses naming.
func FuzzParsePin(f *testing.F) {
	fp := strings.Repeat("ab", 32)
	for _, s := range []string{fp, strings.ToUpper(fp), "AB:" + strings.Repeat("cd:", 30) + "EF", fp[:63], fp + "00",
		"", ":", strings.Repeat("g", 64), "::" + fp + "::", strings.Repeat("a:", 64)} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		p, err := ParsePin(s)
		if err != nil {
			if !strings.Contains(err.Error(), strconv.Quote(s)) {
				t.Fatalf("ParsePin(%q) = %v, which does not name it", s, err)
			}
			return
		}
		if b, err := hex.DecodeString(p); err != nil || len(b) != 32 || strings.ToLower(p) != p {
			t.Fatalf("ParsePin(%q) = %q", s, p)
		}
		if again, err := ParsePin(p); err != nil || again != p {
			t.Fatalf("ParsePin(%q) = %q, which parses to %q, %v", s, p, again, err)
		}
	})
}
