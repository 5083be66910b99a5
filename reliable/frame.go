package reliable

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"

	kcp "github.com/xtaci/kcp-go/v5"

	"github.com/udplab/udplab/internal/budget"
	"github.com/udplab/udplab/message"
)

// MaxMessage is the largest message the reliable transport carries. A KCP
// segment carries at most one MTU, and kcp-go's Write cuts anything longer
// into separate messages, so udplab frames long messages itself (see
// writeMessage); this bound caps what a receiver reassembles per session.
const MaxMessage = 1 << 20

// Wire sizes kcp-go adds below a message, from its sess.go and kcp.go.
const (
	kcpOverhead     = 24 // KCP segment header
	fecOverhead     = 8  // FEC header (6) plus the size field (2)
	blockOverhead   = 20 // nonce (16) and CRC32 (4) of the non-AEAD ciphers
	headerLen       = 8  // frame header: magic and big-endian length
	maxSegment      = 1500
	frameMagicBytes = "\xffUDL"
)

var frameMagic = []byte(frameMagicBytes)

// segmentPayload returns how many message bytes one KCP segment carries
// under these settings: kcp-go's mss.
func segmentPayload(mtu int, fec bool, block kcp.BlockCrypt) int {
	n := min(mtu, maxSegment) - kcpOverhead
	if fec {
		n -= fecOverhead
	}
	switch b := block.(type) {
	case nil:
	case interface {
		NonceSize() int
		Overhead() int
	}: // kcp-go's AEAD
		n -= b.NonceSize() + b.Overhead()
	default:
		n -= blockOverhead
	}
	return n
}

// messageWriter is a KCP session as writeMessage uses it: kcp-go's
// UDPSession, or a server's own session.
type messageWriter interface {
	Write(b []byte) (int, error)
	WriteBuffers(v [][]byte) (int, error)
}

// segmentReader is a KCP session as a reader uses it: each Read returns
// one KCP message, or as much of it as the buffer holds.
type segmentReader interface {
	Read(b []byte) (int, error)
}

// writeMessage sends msg as one message. A message that fits one segment
// goes bare, as one Write and so one KCP message: any kcp-go program can
// read it. A longer one goes as a header segment (magic and length) and then
// the message, which kcp-go cuts into segments; WriteBuffers queues them all
// under one lock, so they stay together and in order. A short message that
// looks like a header is framed too, so a header is never ambiguous.
func writeMessage(s messageWriter, msg []byte, mss int) error {
	if len(msg) > MaxMessage {
		return fmt.Errorf("send %d bytes: %w: at most %d", len(msg), message.ErrTooLarge, MaxMessage)
	}
	if len(msg) == 0 {
		// KCP cannot send an empty segment; it would vanish.
		return fmt.Errorf("send: %w: an empty message cannot be sent", message.ErrBadRequest)
	}
	if len(msg) <= mss && !looksLikeHeader(msg) {
		_, err := s.Write(msg)
		return err
	}
	var hdr [headerLen]byte
	copy(hdr[:], frameMagic)
	binary.BigEndian.PutUint32(hdr[4:], uint32(len(msg)))
	_, err := s.WriteBuffers([][]byte{hdr[:], msg})
	return err
}

func looksLikeHeader(b []byte) bool {
	return len(b) == headerLen && bytes.HasPrefix(b, frameMagic)
}

// reader reassembles messages from a session's segments. It keeps partial
// state across calls, so a read that times out mid-message loses nothing.
// The message it returns is valid until its next call. A framed message's
// buffer grows as its segments arrive, never to the length its header
// declares before the bytes are there, and takes its memory from a budget
// the server's sessions share (nil: no budget, for a client).
type reader struct {
	s       segmentReader
	budget  *budget.Bytes
	seg     []byte // one segment's worth; a server's lends it while serving
	pending []byte // the framed message being reassembled
	held    int    // bytes of pending's capacity taken from budget
	want    int    // its length; 0 when none is under way
}

func newReader(s segmentReader, b *budget.Bytes) *reader {
	return &reader{s: s, budget: b, seg: make([]byte, maxSegment)}
}

// next returns the next whole message, valid until the next call.
func (r *reader) next() ([]byte, error) {
	// The last message is spent: its buffer serves the next one, so a
	// busy session does not grow one a message, until a read finds none
	// waiting: an idle server session holds no more than its segment
	// buffer.
	if r.want == 0 {
		r.pending = r.pending[:0]
	}
	for r.want == 0 {
		n, err := r.s.Read(r.seg)
		if err != nil {
			r.release()
			return nil, err
		}
		seg := r.seg[:n]
		if !looksLikeHeader(seg) {
			return seg, nil
		}
		want := int(binary.BigEndian.Uint32(seg[4:]))
		if want == 0 || want > MaxMessage {
			return nil, fmt.Errorf("%w: frame header declares %d bytes, want 1 to %d", message.ErrBadRequest, want, MaxMessage)
		}
		r.want, r.pending = want, r.pending[:0]
	}
	for len(r.pending) < r.want {
		if err := r.grow(); err != nil {
			return nil, err
		}
		// kcp-go copies a segment straight into a slice with room for
		// it, so read into the message itself: no copy of our own. A
		// segment longer than what is left (a broken sender) is cut
		// there by kcp-go and its rest read as the next message.
		end := min(r.want, cap(r.pending))
		n, err := r.s.Read(r.pending[len(r.pending):end])
		if err != nil {
			return nil, err
		}
		r.pending = r.pending[:len(r.pending)+n]
	}
	r.want = 0
	return r.pending, nil
}

// grow makes room in pending for at least one more segment, doubling it
// (up to the message's length) so a long message costs few copies.
func (r *reader) grow() error {
	if cap(r.pending)-len(r.pending) >= maxSegment || cap(r.pending) >= r.want {
		return nil
	}
	size := min(max(2*cap(r.pending), 4*maxSegment), r.want)
	if !r.budget.Take(size - r.held) {
		return errBudget
	}
	r.held = size
	r.pending = append(make([]byte, 0, size), r.pending...)
	return nil
}

// release gives the reader's memory back to the budget.
func (r *reader) release() {
	r.budget.Give(r.held)
	r.held, r.pending = 0, nil
}

// errBudget is the error of a message that reassembly has no memory for.
var errBudget = errors.New("reliable: reassembly memory budget spent")

// reassemblyBudget is what a server's sessions together may hold in
// messages being reassembled: 64 sessions each mid-way through a
// MaxMessage message, while each of a thousand held sessions costs
// nothing until its data arrives. A variable so that a test can make it
// small.
var reassemblyBudget int64 = 64 * MaxMessage
