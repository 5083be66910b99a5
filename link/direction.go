package link

import (
	"container/heap"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"
)

// Drop causes.
const (
	CauseLoss   = "loss"   // random loss: Bernoulli or Gilbert-Elliott
	CauseQueue  = "queue"  // the rate limiter's queue was full
	CauseMTU    = "mtu"    // larger than the MTU
	CauseOutage = "outage" // a scheduled outage
)

// sink is where a direction delivers: a socket's WriteTo.
type sink interface {
	WriteTo(b []byte, addr net.Addr) (int, error)
}

type packet struct {
	at   time.Time // release time
	seq  uint64    // arrival order, breaks ties in at
	buf  *[]byte   // pooled copy of the datagram
	addr net.Addr
	out  sink
}

type packetHeap []packet

func (h packetHeap) Len() int { return len(h) }
func (h packetHeap) Less(i, j int) bool {
	if h[i].at.Equal(h[j].at) {
		return h[i].seq < h[j].seq
	}
	return h[i].at.Before(h[j].at)
}
func (h packetHeap) Swap(i, j int) { h[i], h[j] = h[j], h[i] }
func (h *packetHeap) Push(x any)   { *h = append(*h, x.(packet)) }
func (h *packetHeap) Pop() any {
	old := *h
	p := old[len(old)-1]
	old[len(old)-1] = packet{}
	*h = old[:len(old)-1]
	return p
}

var bufPool = sync.Pool{New: func() any { b := make([]byte, 0, 2048); return &b }}

// direction is one way through the link: its fates, its queue and its one
// delivery goroutine.
type direction struct {
	name    string
	id      uint64
	seed    uint64
	state   *atomic.Pointer[linkState] // shared by both directions
	trace   *tracer
	precise bool // finish waits precisely (see wait.go)
	fine    fine // the loop's precise waits

	mu          sync.Mutex
	n           uint64 // index of the next packet
	geBad       bool
	lastRelease time.Time   // order preservation under jitter
	txFree      time.Time   // when the rate limiter is next idle
	txEnds      []time.Time // serialization ends of the packets in the rate queue, FIFO
	q           packetHeap
	seq         uint64
	st          Stats
	burstRun    uint64
	late        lateRecord // since the start
	lateIv      lateRecord // since the last IntervalLateness

	delivered, deliveredBytes, writeErrors atomic.Uint64

	wake chan struct{}
	done chan struct{}
}

func newDirection(name string, id, seed uint64, state *atomic.Pointer[linkState], tr *tracer) *direction {
	d := &direction{
		name: name, id: id, seed: seed, state: state, trace: tr, precise: preciseWaits.Load(),
		late: newLateRecord(), lateIv: newLateRecord(),
		wake: make(chan struct{}, 1), done: make(chan struct{}),
	}
	d.st.Bursts = map[uint64]uint64{}
	return d
}

// send applies the link to one datagram written to out for addr. It copies
// b, so the caller may reuse it at once.
func (d *direction) send(b []byte, addr net.Addr, out sink) {
	state := d.state.Load()
	p := &state.params[d.id]
	d.mu.Lock()
	n := d.n
	d.n++
	d.st.Offered++
	d.st.OfferedBytes += uint64(len(b))
	if !p.impaired() && !state.outage && len(d.q) == 0 {
		// Nothing to do but count: write through, in the caller's
		// goroutine, with no copy and no queue.
		d.endBurst()
		d.mu.Unlock()
		d.trace.record(d.name, n, len(b), fateDelivered, "", 0, false)
		d.deliver(b, addr, out)
		return
	}
	now := time.Now() // the fast path above has no use for it
	r := packetRNG(d.seed, d.id, n)
	cause := d.dropCause(p, state.outage, &r, len(b))
	if cause != "" {
		if cause == CauseLoss {
			d.burstRun++
		}
		d.mu.Unlock()
		d.trace.record(d.name, n, len(b), fateDropped, cause, 0, false)
		return
	}
	if p.Loss > 0 || p.Burst.P > 0 {
		d.endBurst()
	}
	dup := r.float() < p.Dup
	corrupt := r.float() < p.Corrupt
	bit := r.next()
	reorder := r.float() < p.Reorder
	jit := r.jitter(float64(p.Jitter), p.Dist)

	base := now
	if p.Rate > 0 {
		limit := p.Queue
		if limit == 0 {
			limit = DefaultQueue
		}
		i := 0
		for i < len(d.txEnds) && !d.txEnds[i].After(now) {
			i++
		}
		d.txEnds = d.txEnds[i:]
		if len(d.txEnds) >= limit {
			d.st.QueueDrops++
			d.mu.Unlock()
			d.trace.record(d.name, n, len(b), fateDropped, CauseQueue, 0, false)
			return
		}
		start := now
		if d.txFree.After(now) {
			start = d.txFree
		}
		d.txFree = start.Add(time.Duration(float64((len(b)+HeaderBytes)*8) / float64(p.Rate) * float64(time.Second)))
		d.txEnds = append(d.txEnds, d.txFree)
		d.st.QueueHigh = max(d.st.QueueHigh, len(d.txEnds))
		base = d.txFree
	}
	release := base
	if reorder {
		d.st.Reordered++
	} else {
		release = base.Add(max(0, p.Delay+time.Duration(jit)))
		if p.Order == KeepOrder {
			if release.Before(d.lastRelease) {
				release = d.lastRelease // jitter never reorders
			}
			d.lastRelease = release
		}
	}
	fate := fateDelivered
	if dup {
		fate = fateDuplicated
		d.st.Duplicated++
	}
	if corrupt {
		fate = fateCorrupted
		d.st.Corrupted++
	}
	bp := bufPool.Get().(*[]byte)
	*bp = append((*bp)[:0], b...)
	if corrupt && len(b) > 0 {
		i := bit % uint64(len(b)*8)
		(*bp)[i/8] ^= 1 << (i % 8)
	}
	if !release.After(now) && (reorder || len(d.q) == 0) {
		// Due already, and overtaking nothing it should not: deliver from
		// the caller's goroutine, as the fast path does, rather than wake
		// the loop, which may be in a precise sleep for a later packet.
		d.mu.Unlock()
		d.trace.record(d.name, n, len(b), fate, "", 0, reorder)
		d.deliverNow(bp, addr, out, dup)
		return
	}
	first := len(d.q) == 0 || release.Before(d.q[0].at)
	d.push(release, bp, addr, out)
	if dup {
		cp := bufPool.Get().(*[]byte)
		*cp = append((*cp)[:0], *bp...)
		d.push(release, cp, addr, out)
	}
	d.mu.Unlock()
	d.trace.record(d.name, n, len(b), fate, "", release.Sub(now), reorder)
	if first {
		select {
		case d.wake <- struct{}{}:
		default:
		}
	}
}

// dropCause decides, with d.mu held, whether packet n is dropped and why.
// It always makes the same draws, so the stream stays aligned.
func (d *direction) dropCause(p *Params, outage bool, r *rng, size int) string {
	uGE, uGELoss, uLoss := r.float(), r.float(), r.float()
	if outage {
		d.st.OutageDrops++
		return CauseOutage
	}
	if p.MTU > 0 && size > p.MTU {
		d.st.MTUDrops++
		return CauseMTU
	}
	lost := uLoss < p.Loss
	if g := p.Burst; g.P > 0 {
		if d.geBad {
			d.geBad = uGE >= g.R
		} else {
			d.geBad = uGE < g.P
		}
		lossP := g.LossGood
		if d.geBad {
			lossP = g.LossBad
		}
		lost = lost || uGELoss < lossP
	}
	if lost {
		d.st.Lost++
		return CauseLoss
	}
	return ""
}

// endBurst closes a run of random losses, recording its length.
func (d *direction) endBurst() {
	if d.burstRun > 0 {
		d.st.Bursts[d.burstRun]++
		d.burstRun = 0
	}
}

func (d *direction) push(at time.Time, bp *[]byte, addr net.Addr, out sink) {
	heap.Push(&d.q, packet{at: at, seq: d.seq, buf: bp, addr: addr, out: out})
	d.seq++
}

// deliverNow delivers the pooled copy bp, twice if dup, and returns it
// to the pool.
func (d *direction) deliverNow(bp *[]byte, addr net.Addr, out sink, dup bool) {
	d.deliver(*bp, addr, out)
	if dup {
		d.deliver(*bp, addr, out)
	}
	bufPool.Put(bp)
}

func (d *direction) deliver(b []byte, addr net.Addr, out sink) {
	if _, err := out.WriteTo(b, addr); err != nil {
		d.writeErrors.Add(1)
		return
	}
	d.delivered.Add(1)
	d.deliveredBytes.Add(uint64(len(b)))
}

// loop is the direction's one delivery goroutine: it sleeps on one timer
// until shortly before the earliest packet is due, finishes the wait
// precisely, then hands the packet to its socket.
func (d *direction) loop() {
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	for {
		d.mu.Lock()
		if len(d.q) == 0 {
			d.mu.Unlock()
			select {
			case <-d.wake:
				continue
			case <-d.done:
				return
			}
		}
		if wait := time.Until(d.q[0].at); wait > 0 {
			d.mu.Unlock()
			if !d.wait(wait, timer) {
				return
			}
			continue
		}
		p := heap.Pop(&d.q).(packet)
		d.recordLate(time.Since(p.at))
		d.mu.Unlock()
		d.deliver(*p.buf, p.addr, p.out)
		bufPool.Put(p.buf)
	}
}

// wait waits towards a packet due in wait, returning early if an earlier
// packet may have come; it reports false once the link is closing.
func (d *direction) wait(wait time.Duration, timer *time.Timer) bool {
	coarse, onTimer := coarseWait(wait, d.precise)
	if !onTimer {
		select {
		case <-d.done:
			return false
		default:
		}
		p := &d.state.Load().params[d.id]
		d.fine.step(wait, p.Order == NetemOrder && p.Jitter > 0)
		return true
	}
	timer.Reset(coarse)
	select {
	case <-timer.C:
	case <-d.wake:
		timer.Stop()
	case <-d.done:
		timer.Stop()
		return false
	}
	return true
}

// recordLate notes, with d.mu held, how late a packet left.
func (d *direction) recordLate(late time.Duration) {
	late = min(max(late, 0), time.Hour) // the histogram's range; past an hour the figure hardly matters
	d.late.record(late)
	d.lateIv.record(late)
}

// intervalLateness returns the lateness since the last call and starts
// a new interval.
func (d *direction) intervalLateness() Lateness {
	d.mu.Lock()
	defer d.mu.Unlock()
	l := d.lateIv.summary()
	d.lateIv.reset()
	return l
}

// lateRecord is a distribution of lateness: a histogram in nanoseconds,
// and the exact max, where the histogram rounds.
type lateRecord struct {
	h   *hdrhistogram.Histogram
	max time.Duration
}

func newLateRecord() lateRecord { return lateRecord{h: hdrhistogram.New(1, int64(time.Hour), 2)} }

func (r *lateRecord) record(late time.Duration) {
	_ = r.h.RecordValue(int64(late))
	r.max = max(r.max, late)
}

func (r *lateRecord) reset() {
	r.h.Reset()
	r.max = 0
}

// summary is the record's figures, zero when nothing was timed.
func (r *lateRecord) summary() Lateness {
	n := r.h.TotalCount()
	if n == 0 {
		return Lateness{}
	}
	return Lateness{
		Count: uint64(n),
		P50:   min(time.Duration(r.h.ValueAtQuantile(50)), r.max),
		P99:   min(time.Duration(r.h.ValueAtQuantile(99)), r.max),
		Max:   r.max,
	}
}

// stats returns a snapshot of the direction's counters.
func (d *direction) stats() Stats {
	d.mu.Lock()
	s := d.st
	s.Bursts = make(map[uint64]uint64, len(d.st.Bursts)+1)
	for k, v := range d.st.Bursts {
		s.Bursts[k] = v
	}
	if d.burstRun > 0 {
		s.Bursts[d.burstRun]++ // the run under way counts as it stands
	}
	s.Queued = len(d.q)
	s.Lateness = d.late.summary()
	d.mu.Unlock()
	s.Delivered = d.delivered.Load()
	s.DeliveredBytes = d.deliveredBytes.Load()
	s.WriteErrors = d.writeErrors.Load()
	return s
}
