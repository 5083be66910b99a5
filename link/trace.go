package link

import (
	"bufio"
	"io"
	"strconv"
	"sync"
	"time"
)

// Packet fates in a trace.
const (
	fateDelivered  = "delivered"
	fateDropped    = "dropped"
	fateDuplicated = "duplicated"
	fateCorrupted  = "corrupted"
)

// traceRecord is one packet's fate.
type traceRecord struct {
	dir       string
	n         uint64
	size      int
	fate      string
	cause     string
	delay     time.Duration
	reordered bool
}

// tracer writes one JSON object per packet, as JSON Lines, from its own
// goroutine: the data path only hands over a small record. When the writer
// falls behind, the channel fills and the data path waits: a trace never
// loses a record.
type tracer struct {
	mu     sync.RWMutex // guards closed against record racing close
	closed bool
	ch     chan traceRecord
	done   chan struct{}
	w      *bufio.Writer
	err    error
}

// traceBacklog is how many records may wait for the writer: a burst of
// this many packets costs the data path nothing.
const traceBacklog = 8192

func newTracer(w io.Writer) *tracer {
	if w == nil {
		return nil
	}
	t := &tracer{ch: make(chan traceRecord, traceBacklog), done: make(chan struct{}), w: bufio.NewWriterSize(w, 64<<10)}
	go t.run()
	return t
}

func (t *tracer) record(dir string, n uint64, size int, fate, cause string, delay time.Duration, reordered bool) {
	if t == nil {
		return
	}
	t.mu.RLock()
	if !t.closed {
		t.ch <- traceRecord{dir, n, size, fate, cause, delay, reordered}
	}
	t.mu.RUnlock()
}

func (t *tracer) run() {
	defer close(t.done)
	buf := make([]byte, 0, 256)
	for r := range t.ch {
		buf = appendRecord(buf[:0], &r)
		if _, err := t.w.Write(buf); err != nil && t.err == nil {
			t.err = err
		}
	}
	if err := t.w.Flush(); err != nil && t.err == nil {
		t.err = err
	}
}

// appendRecord encodes r by hand: every field is a number, a bool or a
// fixed word, so no escaping is needed and nothing is allocated.
func appendRecord(b []byte, r *traceRecord) []byte {
	b = append(b, `{"dir":"`...)
	b = append(b, r.dir...)
	b = append(b, `","n":`...)
	b = strconv.AppendUint(b, r.n, 10)
	b = append(b, `,"size":`...)
	b = strconv.AppendInt(b, int64(r.size), 10)
	b = append(b, `,"fate":"`...)
	b = append(b, r.fate...)
	b = append(b, '"')
	if r.cause != "" {
		b = append(b, `,"cause":"`...)
		b = append(b, r.cause...)
		b = append(b, '"')
	} else {
		b = append(b, `,"delay_us":`...)
		b = strconv.AppendInt(b, r.delay.Microseconds(), 10)
	}
	if r.reordered {
		b = append(b, `,"reordered":true`...)
	}
	return append(b, "}\n"...)
}

// close flushes the trace and returns the first write error.
func (t *tracer) close() error {
	if t == nil {
		return nil
	}
	t.mu.Lock()
	t.closed = true
	close(t.ch)
	t.mu.Unlock()
	<-t.done
	return t.err
}
