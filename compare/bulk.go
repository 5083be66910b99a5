package compare

import (
	"encoding/binary"
	"sync"
	"time"

	"github.com/udplab/udplab/message"
)

// Bulk is what one bulk flow measured: Bytes sent from a client to a
// server in messages of MessageSize as fast as the mode allows, received by
// a server that answers nothing.
type Bulk struct {
	Mode        string `json:"mode"`         // the flow's mode: the run's, or the competing flow's
	Bytes       int64  `json:"bytes"`        // what the flow had to send
	MessageSize int    `json:"message_size"` // bytes a message; the last may be shorter
	Messages    int    `json:"messages"`     // messages Bytes is cut into

	SentBytes      int64 `json:"sent_bytes"`      // bytes Send accepted
	DeliveredBytes int64 `json:"delivered_bytes"` // bytes the server received intact, each once
	Delivered      int   `json:"delivered"`       // messages received intact, each once
	InOrder        int   `json:"in_order"`        // of those, received after every earlier one
	Duplicates     int   `json:"duplicates"`      // messages received again
	Corrupt        int   `json:"corrupt"`         // messages whose bytes were not what was sent
	Complete       bool  `json:"complete"`        // every byte arrived

	// CompletionS is from the first send to the last byte delivered.
	CompletionS float64 `json:"completion_s"`
	// GoodputBPS is DeliveredBytes in bits over CompletionS.
	GoodputBPS float64 `json:"goodput_bps"`
	// LinkShare is GoodputBPS as a share of the link's up rate, when the
	// link has one.
	LinkShare *float64 `json:"link_share"`
	// SharedGoodputBPS is the goodput while both flows were sending (with
	// a competing flow): from the common start until the first flow
	// finished.
	SharedGoodputBPS *float64 `json:"shared_goodput_bps,omitempty"`
	// SeriesBPS is the goodput in each SeriesStepS from the first send.
	SeriesBPS   []float64 `json:"goodput_series_bps"`
	SeriesStepS float64   `json:"series_step_s"`
}

// Bulk workload defaults and limits.
const (
	DefaultBulkBytes = 4_000_000
	// bulkHeader is the sequence number each bulk message starts with.
	bulkHeader = 8
	// MinBulkSize is the smallest bulk message: a sequence number and a
	// byte of data.
	MinBulkSize = bulkHeader + 1
	// MaxBulkBytes bounds a transfer: the sink keeps a flag per message.
	MaxBulkBytes = 1_000_000_000
	// seriesStep is the goodput series' resolution; bucketStep the finer
	// one kept while running, so a shared interval ends within 10 ms.
	seriesStep = 100 * time.Millisecond
	bucketStep = 10 * time.Millisecond
)

// bulkMessage fills buf with message seq of a transfer of total bytes cut
// into messages of size: the sequence number, then bytes that depend on
// their place in the transfer, so a message delivered in the wrong place
// or with one byte changed is seen. A last message too short for the
// sequence number is all data: its length alone says which it is.
func bulkMessage(buf []byte, seq, size int, total int64) []byte {
	buf = buf[:bulkLen(seq, size, total)]
	from := 0
	if len(buf) > bulkHeader {
		binary.BigEndian.PutUint64(buf, uint64(seq))
		from = bulkHeader
	}
	at := uint64(seq) * uint64(size)
	for i := from; i < len(buf); i++ {
		buf[i] = fill(at + uint64(i))
	}
	return buf
}

// bulkLen is the length of message seq.
func bulkLen(seq, size int, total int64) int {
	return int(min(int64(size), total-int64(seq)*int64(size)))
}

// fill is the byte at offset p of a transfer.
func fill(p uint64) byte { return byte(p ^ p>>8 ^ p>>16 ^ p>>24) }

// bulkCount is how many messages of size carry total bytes.
func bulkCount(total int64, size int) int {
	return int((total + int64(size) - 1) / int64(size))
}

// sink is the server's side of a bulk flow: a handler that checks every
// message against what was sent, counts it once, and answers nothing.
type sink struct {
	size  int
	total int64
	n     int

	mu        sync.Mutex
	start     time.Time // the flows' common start
	got       []bool
	delivered int
	bytes     int64
	inOrder   int
	next      int // one past the highest sequence number seen
	dups      int
	corrupt   int
	last      time.Duration // when the last message was delivered, from start
	buckets   []int64       // bytes delivered in each bucketStep
	done      chan struct{} // closed when every message is in
}

func newSink(total int64, size int) *sink {
	n := bulkCount(total, size)
	return &sink{size: size, total: total, n: n, start: time.Now(), got: make([]bool, n), done: make(chan struct{})}
}

// restart sets the time the series and the completion time count from.
func (s *sink) restart(t time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.start = t
}

// handle is the sink's message.Handler.
func (s *sink) handle(dst, req []byte) ([]byte, error) {
	ok, seq := s.check(req)
	s.mu.Lock()
	defer s.mu.Unlock()
	now := max(0, time.Since(s.start))
	switch {
	case !ok:
		s.corrupt++
	case s.got[seq]:
		s.dups++
	default:
		s.got[seq] = true
		s.delivered++
		s.bytes += int64(len(req))
		if seq >= s.next {
			s.inOrder++
			s.next = seq + 1
		}
		s.last = now
		b := int(now / bucketStep)
		for len(s.buckets) <= b {
			s.buckets = append(s.buckets, 0)
		}
		s.buckets[b] += int64(len(req))
		if s.delivered == s.n {
			close(s.done)
		}
	}
	return dst, message.ErrNoReply
}

// check reports whether req is exactly a message of this transfer, and
// which.
func (s *sink) check(req []byte) (bool, int) {
	seq, from := s.n-1, 0 // a short last message has no header
	if len(req) > bulkHeader {
		seq64 := binary.BigEndian.Uint64(req)
		if seq64 >= uint64(s.n) {
			return false, 0
		}
		seq, from = int(seq64), bulkHeader
	}
	if len(req) == 0 || len(req) != bulkLen(seq, s.size, s.total) {
		return false, 0
	}
	at := uint64(seq) * uint64(s.size)
	for i := from; i < len(req); i++ {
		if req[i] != fill(at+uint64(i)) {
			return false, 0
		}
	}
	return true, seq
}

// progress is how many bytes have arrived, and when the last did.
func (s *sink) progress() (int64, time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.bytes, s.last
}

// result fills b with what the sink counted.
func (s *sink) result(b *Bulk) {
	s.mu.Lock()
	defer s.mu.Unlock()
	b.Bytes, b.MessageSize, b.Messages = s.total, s.size, s.n
	b.DeliveredBytes, b.Delivered, b.InOrder = s.bytes, s.delivered, s.inOrder
	b.Duplicates, b.Corrupt = s.dups, s.corrupt
	b.Complete = s.delivered == s.n
	b.CompletionS = s.last.Seconds()
	if b.CompletionS > 0 {
		b.GoodputBPS = float64(s.bytes) * 8 / b.CompletionS
	}
	per := int(seriesStep / bucketStep)
	b.SeriesStepS = seriesStep.Seconds()
	b.SeriesBPS = nil
	for i := 0; i < len(s.buckets); i += per {
		var sum int64
		for _, v := range s.buckets[i:min(i+per, len(s.buckets))] {
			sum += v
		}
		b.SeriesBPS = append(b.SeriesBPS, float64(sum)*8/seriesStep.Seconds())
	}
}

// bytesBefore is how many bytes had arrived by t from the start, counting
// whole buckets: t's own bucket is in.
func (s *sink) bytesBefore(t time.Duration) int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	var sum int64
	for i, v := range s.buckets {
		if time.Duration(i)*bucketStep >= t {
			break
		}
		sum += v
	}
	return sum
}

// jain is Jain's fairness index of xs: 1 when all are equal, 1/n when one
// takes everything; nil when all are zero.
func jain(xs ...float64) *float64 {
	var sum, sq float64
	for _, x := range xs {
		sum += x
		sq += x * x
	}
	if sq == 0 {
		return nil
	}
	j := sum * sum / (float64(len(xs)) * sq)
	return &j
}
