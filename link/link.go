// Package link simulates a lossy network path in user space, for udplab's
// comparisons and for any UDP program.
//
// A Link has two directions, Up (client to server) and Down (server to
// client), each with its own Params: Bernoulli and Gilbert-Elliott loss,
// delay and jitter, reordering, duplication, corruption, a rate limit with
// a bounded queue, and an MTU. What a direction holds at once (its delay
// line and its rate queue) is bounded in packets and in bytes, as netem's
// limit is: Params.Limit and Params.LimitBytes, with defaults that cap
// its memory even when nothing is set. Wrap puts a direction on a net.PacketConn's
// egress, so both transports run over it unchanged; Proxy puts the link
// between two real sockets.
//
// Fates are replayable: whether the n-th packet of a direction is lost,
// duplicated, corrupted or reordered, and its jitter, depend only on the
// seed, the direction and n, whatever the timing. Queue drops depend on
// timing and are counted apart, as are limit drops, MTU drops and outages. Each
// direction delivers from one goroutine with one timer and an ordered
// queue: no goroutine and no timer per packet.
package link

import (
	"fmt"
	"io"
	"net"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Direction names one way through a link.
type Direction int

// The two directions.
const (
	Up   Direction = iota // client to server
	Down                  // server to client
)

func (d Direction) String() string {
	if d == Down {
		return "down"
	}
	return "up"
}

// Stats counts what one direction did.
type Stats struct {
	Offered, OfferedBytes     uint64 // datagrams written into the link
	Delivered, DeliveredBytes uint64 // datagrams the link passed on, duplicates included
	Lost                      uint64 // random loss (Bernoulli or burst)
	QueueDrops                uint64 // tail drops at the rate limiter
	LimitDrops                uint64 // dropped because the direction held Params.Limit packets or LimitBytes bytes
	MTUDrops                  uint64 // larger than the MTU
	OutageDrops               uint64 // during a scheduled outage
	Duplicated, Corrupted     uint64
	Reordered                 uint64 // sent past the delay queue
	QueueHigh                 int    // most packets ever waiting at the rate limiter
	Queued                    int    // packets in flight inside the link now
	HeldBytes                 int    // their payload bytes
	HeldBytesHigh             int    // the most payload bytes ever held at once
	WriteErrors               uint64 // deliveries the socket refused
	// Lateness is how late the link released the packets it held (delayed,
	// jittered or rate-limited) past the time their impairments set. On
	// an idle machine it is a few microseconds; a busy one shows here.
	Lateness Lateness
	// Bursts maps a loss-burst length (consecutive packets lost at random)
	// to how many bursts had it.
	Bursts map[uint64]uint64
}

// Lateness summarizes how late a direction released its packets.
type Lateness struct {
	Count         uint64 // packets that waited in the link and were timed
	P50, P99, Max time.Duration
}

// String renders s on one line, as udplab link prints it.
// Dropped is every datagram the link itself dropped: lost, at a full
// queue or hold limit, over the MTU, or in an outage.
func (s Stats) Dropped() uint64 {
	return s.Lost + s.QueueDrops + s.LimitDrops + s.MTUDrops + s.OutageDrops
}

func (s Stats) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "offered=%d delivered=%d lost=%d queue_drops=%d limit_drops=%d mtu_drops=%d outage_drops=%d dup=%d corrupt=%d reordered=%d queue_high=%d bytes_in=%d bytes_out=%d",
		s.Offered, s.Delivered, s.Lost, s.QueueDrops, s.LimitDrops, s.MTUDrops, s.OutageDrops, s.Duplicated, s.Corrupted, s.Reordered, s.QueueHigh, s.OfferedBytes, s.DeliveredBytes)
	if s.Lateness.Count > 0 {
		b.WriteString(" " + s.Lateness.String())
	}
	if len(s.Bursts) > 0 {
		lengths := make([]uint64, 0, len(s.Bursts))
		for k := range s.Bursts {
			lengths = append(lengths, k)
		}
		sort.Slice(lengths, func(i, j int) bool { return lengths[i] < lengths[j] })
		b.WriteString(" bursts=")
		for i, k := range lengths {
			if i > 0 {
				b.WriteByte(',')
			}
			b.WriteString(strconv.FormatUint(k, 10) + ":" + strconv.FormatUint(s.Bursts[k], 10))
		}
	}
	return b.String()
}

// String renders l as udplab link prints it: late_p50=… late_p99=…
// late_max=…, in milliseconds to the microsecond.
func (l Lateness) String() string {
	return "late_p50=" + fmtLate(l.P50) + " late_p99=" + fmtLate(l.P99) + " late_max=" + fmtLate(l.Max)
}

// fmtLate writes a lateness in milliseconds to the microsecond.
func fmtLate(d time.Duration) string {
	return strconv.FormatFloat(float64(d.Round(time.Microsecond))/1e6, 'f', 3, 64) + "ms"
}

// Options are a Link's optional parts. The zero value works.
type Options struct {
	// Trace, when set, receives one JSON object per packet (JSON Lines).
	Trace io.Writer
}

// Link is a simulated path. Its methods are safe for concurrent use.
type Link struct {
	dirs   [2]*direction
	state  atomic.Pointer[linkState]
	closed atomic.Bool
	trace  *tracer

	wg        sync.WaitGroup
	closeOnce sync.Once
	closeErr  error
}

// New starts a link with spec's impairments. Close stops it.
func New(spec Spec, opts *Options) (*Link, error) {
	if err := spec.Validate(); err != nil {
		return nil, err
	}
	if opts == nil {
		opts = &Options{}
	}
	l := &Link{trace: newTracer(opts.Trace)}
	l.state.Store(&linkState{params: [2]Params{spec.Up, spec.Down}})
	l.dirs[Up] = newDirection("up", 0, spec.Seed, &l.state, l.trace)
	l.dirs[Down] = newDirection("down", 1, spec.Seed, &l.state, l.trace)
	for _, d := range l.dirs {
		l.wg.Add(1)
		go func() {
			defer l.wg.Done()
			d.loop()
		}()
	}
	return l, nil
}

// linkState is what a link applies to the next packet, swapped whole so
// that a change reaches both directions at once.
type linkState struct {
	params [2]Params
	outage bool
}

// Set changes both directions' impairments in one step, for packets
// written from now on; packets already in flight keep their fates. It ends
// an outage. The seed cannot change.
func (l *Link) Set(spec Spec) error {
	if err := spec.Validate(); err != nil {
		return err
	}
	l.state.Store(&linkState{params: [2]Params{spec.Up, spec.Down}})
	return nil
}

// SetOutage starts or ends an outage: while on, every packet in both
// directions is dropped.
func (l *Link) SetOutage(on bool) {
	for {
		old := l.state.Load()
		next := *old
		next.outage = on
		if l.state.CompareAndSwap(old, &next) {
			return
		}
	}
}

// Stats returns a snapshot of one direction's counters.
func (l *Link) Stats(d Direction) Stats { return l.dirs[d].stats() }

// IntervalLateness returns direction d's lateness since the previous call
// (or since the link started) and starts a new interval, for reports made
// every so often; Stats keeps the figures since the start.
func (l *Link) IntervalLateness(d Direction) Lateness { return l.dirs[d].intervalLateness() }

// Wrap returns pc with d applied to everything written to it: what the
// returned conn sends goes through the link, what it reads is untouched.
// Closing the returned conn closes pc. Packets still in the link when pc
// closes are lost, counted as WriteErrors.
func (l *Link) Wrap(pc net.PacketConn, d Direction) net.PacketConn {
	return &conn{PacketConn: pc, dir: d, link: l}
}

// send passes b, which arrived at arrived (zero: now), through direction
// d to out, unless the link is closed. With an outbox, what goes on at
// once waits in it for the caller's flush (see direction.send).
func (l *Link) send(d Direction, b []byte, addr net.Addr, out sink, ob *outbox, arrived time.Time) bool {
	if l.closed.Load() {
		return false
	}
	l.dirs[d].send(b, addr, out, ob, arrived)
	return true
}

// Close stops the delivery goroutines, discarding packets still in flight,
// and flushes the trace. It returns the trace's first write error.
func (l *Link) Close() error {
	l.closeOnce.Do(func() {
		l.closed.Store(true)
		for _, d := range l.dirs {
			close(d.done)
		}
		l.wg.Wait()
		if err := l.trace.close(); err != nil {
			l.closeErr = fmt.Errorf("link: trace: %w", err)
		}
	})
	return l.closeErr
}

// conn is a PacketConn whose egress goes through one direction of a link.
type conn struct {
	net.PacketConn
	dir    Direction
	link   *Link
	closed atomic.Bool
}

// WriteTo hands b to the link and returns at once: like a real network, the
// link may deliver it later, or not at all. After the conn or its link is
// closed it returns an error matching net.ErrClosed.
func (c *conn) WriteTo(b []byte, addr net.Addr) (int, error) {
	if c.closed.Load() || !c.link.send(c.dir, b, addr, c.PacketConn, nil, time.Time{}) {
		return 0, &net.OpError{Op: "write", Net: "udp", Addr: addr, Err: net.ErrClosed}
	}
	return len(b), nil
}

func (c *conn) Close() error {
	c.closed.Store(true)
	return c.PacketConn.Close()
}
