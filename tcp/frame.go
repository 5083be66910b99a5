package tcp

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"

	"github.com/udplab/udplab/internal/budget"
	"github.com/udplab/udplab/message"
)

// MaxMessage is the largest message the TCP transport carries, in bytes. It
// bounds what a receiver buffers for one message, framed or text.
const MaxMessage = 1 << 20

// headerLen is the frame header: the message's length, big-endian. Since
// MaxMessage < 2^24, a header's first byte is always 0x00, which is how a
// server tells framed clients from text ones.
const headerLen = 4

// Buffer sizes, each with the reason for its value.
const (
	// readBufferSize is where every reader starts: a page, room for a
	// hundred pipelined greetings per read. It grows, doubling, only as a
	// longer message actually arrives.
	readBufferSize = 4 << 10
	// keepBufferSize is the most a server connection keeps between
	// messages: after a longer one it goes back to readBufferSize, so
	// MaxConns idle connections cannot each hold a MaxMessage buffer.
	keepBufferSize = 64 << 10
)

// appendFrame appends msg, framed, to dst.
func appendFrame(dst, msg []byte) []byte {
	dst = binary.BigEndian.AppendUint32(dst, uint32(len(msg)))
	return append(dst, msg...)
}

// frameErr is the error of a header declaring more than MaxMessage.
func frameErr(size uint32) error {
	return fmt.Errorf("%w: frame header declares %d bytes, at most %d; the stream is unusable", message.ErrBadRequest, size, MaxMessage)
}

// reader buffers a byte stream and cuts messages from it: frames (frame) or
// text lines (line). Every byte read stays in the buffer until it has been
// returned as part of a message, so a read that times out or fails part-way
// through a message loses nothing, and the next call goes on where it
// stopped. What a call returns is valid until the next call. One goroutine
// at a time.
type reader struct {
	src    io.Reader
	buf    []byte // buf[r:w] is read and not yet returned
	r, w   int
	seen   int   // buf[r:r+seen] holds no '\n': where line resumes its search
	err    error // a broken frame: every later frame call returns it
	shrink bool  // go back to readBufferSize after a message longer than keepBufferSize

	// budget, if not nil, is shared with other readers: the buffer grows
	// past readBufferSize only with bytes taken from it (held of them).
	budget *budget.Bytes
	held   int
}

// errOverBudget is a message that needs more buffer than the shared budget
// has left: its reader cannot go on.
var errOverBudget = errors.New("tcp: read buffers of all connections at their limit")

// newReader returns a reader of src with no budget: a server sets one.
func newReader(src io.Reader, shrink bool) *reader {
	return &reader{src: src, buf: make([]byte, readBufferSize), shrink: shrink}
}

// free gives back what the reader holds of its budget; it reads no more.
func (b *reader) free() {
	b.budget.Give(b.held)
	b.held, b.buf = 0, nil
}

// buffered returns how many bytes are read and not yet returned.
func (b *reader) buffered() int { return b.w - b.r }

// frame returns the next framed message.
func (b *reader) frame() ([]byte, error) {
	if b.err != nil {
		return nil, b.err
	}
	b.release()
	for {
		if b.buffered() >= headerLen {
			size := binary.BigEndian.Uint32(b.buf[b.r:])
			if size > MaxMessage {
				b.err = frameErr(size)
				return nil, b.err
			}
			end := b.r + headerLen + int(size)
			if end <= b.w {
				msg := b.buf[b.r+headerLen : end]
				b.r = end
				return msg, nil
			}
			if err := b.fill(headerLen+int(size), headerLen+int(size)); err != nil {
				return nil, err
			}
			continue
		}
		if err := b.fill(headerLen, headerLen); err != nil {
			return nil, err
		}
	}
}

// line returns the next line, its "\n" included. A line longer than max
// bytes, newline included, is an error wrapping message.ErrBadRequest.
func (b *reader) line(max int) ([]byte, error) {
	b.release()
	for {
		if i := bytes.IndexByte(b.buf[b.r+b.seen:b.w], '\n'); i >= 0 {
			end := b.r + b.seen + i + 1
			msg := b.buf[b.r:end]
			b.r, b.seen = end, 0
			return msg, nil
		}
		b.seen = b.buffered()
		if b.seen >= max {
			return nil, fmt.Errorf("%w: a text line longer than %d bytes", message.ErrBadRequest, max)
		}
		if err := b.fill(b.seen+1, max); err != nil {
			return nil, err
		}
	}
}

// rest returns every buffered byte as one message: a text request that
// ended with a pause or the end of the stream instead of a newline.
func (b *reader) rest() []byte {
	msg := b.buf[b.r:b.w]
	b.r, b.seen = b.w, 0
	return msg
}

// release lets go of what the previous call returned: the buffer may move.
func (b *reader) release() {
	if b.r == b.w {
		b.r, b.w = 0, 0
		if b.shrink && len(b.buf) > keepBufferSize {
			b.budget.Give(b.held)
			b.held, b.buf = 0, make([]byte, readBufferSize)
		}
	}
}

// fill reads once, first making room for more of the message under way:
// need is how many bytes from b.r it needs at least, limit how many it can
// take at most. fill moves the buffered bytes to the front when the rest of
// the buffer cannot take what is missing, and grows the buffer, doubling up
// to limit, when they fill it: the buffer is never more than twice what has
// arrived, whatever a header declares. Growing takes the new bytes from the
// budget first, and fails with errOverBudget when it has not that many.
func (b *reader) fill(need, limit int) error {
	if b.r > 0 && len(b.buf)-b.w < need-b.buffered() {
		b.w = copy(b.buf, b.buf[b.r:b.w])
		b.r = 0
	}
	if b.w == len(b.buf) {
		size := min(2*len(b.buf), limit)
		if !b.budget.Take(size - len(b.buf)) {
			return errOverBudget
		}
		b.held += size - len(b.buf)
		grown := make([]byte, size)
		b.w = copy(grown, b.buf[b.r:b.w])
		b.r, b.buf = 0, grown
	}
	n, err := b.src.Read(b.buf[b.w:])
	b.w += n
	if n > 0 {
		// The bytes come first; a lasting error (EOF, a closed
		// connection) comes back on the next read.
		return nil
	}
	return err
}
