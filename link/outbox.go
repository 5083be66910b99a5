package link

import (
	"net"
	"time"

	"github.com/udplab/udplab/internal/batch"
	"github.com/udplab/udplab/internal/udpsock"
)

// writeBatch is how many datagrams one system call writes at most: as
// many as one read takes, so a batch read is a batch written.
const writeBatch = readBatch

// outbox gathers the deliveries one goroutine makes while it handles a
// batch (a read's datagrams, or the packets due at once) and writes them
// at the end, a sendmmsg per socket instead of a sendto per datagram.
// Only its goroutine uses it.
type outbox struct {
	pending []delivery
	writers map[net.PacketConn]*batch.Writer // one per socket written to lately
}

// delivery is one datagram waiting in an outbox.
type delivery struct {
	d    *direction
	b    []byte
	bp   *[]byte // a pooled copy b is in, returned once written; nil if none
	addr net.Addr
	out  sink
}

// maxWriters bounds the sockets an outbox keeps a writer for: past it,
// they are dropped and made anew, so clients that come and go leave
// nothing behind for long.
const maxWriters = 64

func newOutbox() *outbox {
	return &outbox{pending: make([]delivery, 0, writeBatch), writers: map[net.PacketConn]*batch.Writer{}}
}

// add queues b for addr on out for direction d; bp, if not nil, goes back
// to the pool once b is written.
func (o *outbox) add(d *direction, b []byte, bp *[]byte, addr net.Addr, out sink) {
	o.pending = append(o.pending, delivery{d: d, b: b, bp: bp, addr: addr, out: out})
}

// full reports whether the outbox holds as much as it keeps room for: a
// read of coalesced runs can bring thousands of datagrams, and writing
// them out a part at a time keeps the outbox from growing past shrinkCap
// and being made anew on every such read.
func (o *outbox) full() bool { return len(o.pending) >= shrinkCap }

// flush writes what is pending, in order, a batch per run of datagrams
// for the same socket, and counts each write in its direction.
func (o *outbox) flush() {
	for i := 0; i < len(o.pending); {
		n := i + 1
		for n < len(o.pending) && o.pending[n].out == o.pending[i].out {
			n++
		}
		o.write(o.pending[i:n])
		i = n
	}
	o.pending = o.pending[:0]
	if cap(o.pending) > shrinkCap {
		o.pending = make([]delivery, 0, writeBatch)
	}
}

// write writes run, whose datagrams all go to one sink: batched when the
// sink is a socket (or a capture's wrapper of one), one by one otherwise.
func (o *outbox) write(run []delivery) {
	pc, capt := socketOf(run[0].out)
	if pc == nil {
		for i := range run {
			e := &run[i]
			e.d.deliver(e.b, e.addr, e.out)
			e.done()
		}
		return
	}
	w := o.writer(pc)
	for i := range run {
		w.Add(run[i].b, udpsock.AddrPort(run[i].addr), run[i].addr)
	}
	ms, _ := w.Flush()
	now := time.Time{}
	for i := range run {
		e := &run[i]
		e.d.count(len(e.b), ms[i].Err)
		if ms[i].Err == nil && capt != nil {
			if now.IsZero() {
				now = time.Now()
			}
			capt.c.record(captureLeft, now, capt.src, captureAddr(e.addr), e.b)
		}
		e.done()
	}
}

// done returns e's pooled copy, if it has one, and lets go of e's
// references.
func (e *delivery) done() {
	if e.bp != nil {
		putBuf(e.bp)
	}
	*e = delivery{}
}

// writer is pc's batch writer, made on first use.
func (o *outbox) writer(pc net.PacketConn) *batch.Writer {
	w, ok := o.writers[pc]
	if !ok {
		if len(o.writers) >= maxWriters {
			clear(o.writers)
		}
		w = batch.NewWriter(pc, writeBatch)
		o.writers[pc] = w
	}
	return w
}

// socketOf is the socket out writes to, if it is one a batch can go
// through, and the capture that records what it sends, if any.
func socketOf(out sink) (net.PacketConn, *captureSink) {
	switch s := out.(type) {
	case *net.UDPConn:
		return s, nil
	case *captureSink:
		if u, ok := s.out.(*net.UDPConn); ok {
			return u, s
		}
	}
	return nil, nil
}
