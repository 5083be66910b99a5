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
	CauseLimit  = "limit"  // the direction already held Limit packets or LimitBytes bytes
)

// sink is where a direction delivers: a socket's WriteTo.
type sink interface {
	WriteTo(b []byte, addr net.Addr) (int, error)
}

type packet struct {
	at   time.Time // release time
	seq  uint64    // arrival order, breaks ties in at
	buf  *[]byte   // pooled copy of the datagram (see bufs.go)
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

// models is the state of a direction's models that move in index order
// or, for slots, in the order packets leave; guarded by direction.mu.
type models struct {
	fourState uint8 // the 4-state loss model's state (see FourState)
	// The correlated fates' previous outcomes (see corrFate), and the
	// previous jitter draw in units of Jitter (see corrJitter).
	lossPrev, dupPrev, corruptPrev, reorderPrev bool
	jitterPrev                                  float64
	// The slots (see Slot): when the open one opened, what it may still
	// send, and how many have opened.
	slotNext    time.Time
	slotPackets int
	slotBytes   int64
	slotN       uint64
}

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
	held        int // payload bytes in q
	st          Stats
	burstRun    uint64
	late        lateRecord // since the start
	lateIv      lateRecord // since the last IntervalLateness
	models      models
	// writing is how many packets the loop took from q and has not yet
	// written: until it has, a packet that would go on at once waits
	// behind them in q, as it would behind q's own.
	writing int

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

// send applies the link to one datagram written to out for addr, which
// arrived at the link at arrived (zero: now), from when its delay counts.
// With ob nil, it copies b, so the caller may reuse it at once. With an
// outbox, what goes on at once waits in ob for the caller's flush, b
// itself on the fast path: the caller keeps b until then.
func (d *direction) send(b []byte, addr net.Addr, out sink, ob *outbox, arrived time.Time) {
	state := d.state.Load()
	p := &state.params[d.id]
	d.mu.Lock()
	if ob != nil && len(ob.pending) > 0 && d.mayHold(p) {
		// The loop delivers what this packet's fates may hold, maybe at
		// once (it arrived long ago, say), and must not overtake what
		// went on at once before it and still waits in ob.
		d.mu.Unlock()
		ob.flush()
		d.mu.Lock()
	}
	n := d.n
	d.n++
	d.st.Offered++
	d.st.OfferedBytes += uint64(len(b))
	if !p.impaired() && !state.outage && !d.behind() {
		// Nothing to do but count: write through, in the caller's
		// goroutine, with no copy and no queue.
		d.endBurst()
		d.mu.Unlock()
		d.trace.record(d.name, n, len(b), fateDelivered, "", 0, false)
		if ob != nil {
			ob.add(d, b, nil, addr, out)
			return
		}
		d.deliver(b, addr, out)
		return
	}
	now := arrived // the fast path above has no use for it
	if now.IsZero() {
		now = time.Now()
	}
	r := packetRNG(d.seed, d.id, n)
	m := modelRNG(d.seed, d.id, n)
	if cause := d.dropCause(p, state.outage, &r, &m, len(b)); cause != "" {
		if cause == CauseLoss {
			d.burstRun++
		}
		d.drop(n, len(b), cause)
		return
	}
	if p.Loss > 0 || p.Burst.P > 0 || p.State.on() {
		d.endBurst()
	}
	f := d.drawFates(p, &r, &m)
	release, dupRelease, held, cause := d.schedule(p, now, len(b), addr, f)
	if cause != "" {
		d.drop(n, len(b), cause)
		return
	}
	d.pass(n, b, addr, out, f, release, dupRelease, held, now, ob)
}

// fates are the random draws that shape a packet that goes on. They are
// drawn whatever the packet meets later, so the stream stays aligned.
type fates struct {
	dup, corrupt, reorder bool
	bit                   uint64
	jitter                float64
	dupJitter             float64 // the duplicate's own jitter, as netem's clone draws its own delay
}

// drawFates draws, with d.mu held, the fates of a packet that goes on,
// moving the correlated fates' chains. The duplicate's jitter comes from
// the second stream m (its draws after the 4-state model's), so that
// drawing it moves no older fate.
func (d *direction) drawFates(p *Params, r, m *rng) fates {
	var f fates
	f.dup = corrFate(r.float(), p.Dup, p.DupCorr, &d.models.dupPrev)
	f.corrupt = corrFate(r.float(), p.Corrupt, p.CorruptCorr, &d.models.corruptPrev)
	f.bit = r.next()
	f.reorder = corrFate(r.float(), p.Reorder, p.ReorderCorr, &d.models.reorderPrev)
	if p.JitterCorr > 0 {
		d.models.jitterPrev = corrJitter(r.jitterFrom(1, p), p.JitterCorr, d.models.jitterPrev)
		f.jitter = float64(p.Jitter) * d.models.jitterPrev
	} else {
		f.jitter = r.jitterFrom(float64(p.Jitter), p) // as before correlations, to the last bit
		d.models.jitterPrev = 0
	}
	x := m.jitterFrom(1, p) // always drawn: the stream stays aligned
	if f.dup && p.Jitter > 0 {
		// A copy of a correlated jitter is correlated with its original
		// as the next packet would be, without moving the chain.
		f.dupJitter = float64(p.Jitter) * corrJitter(x, p.JitterCorr, f.jitter/float64(p.Jitter))
	}
	return f
}

// copies is how many datagrams the packet becomes.
func (f fates) copies() int {
	if f.dup {
		return 2
	}
	return 1
}

// drop ends a send, with d.mu held, for a packet dropped for cause.
func (d *direction) drop(n uint64, size int, cause string) {
	d.mu.Unlock()
	d.trace.record(d.name, n, size, fateDropped, cause, 0, false)
}

// schedule sets, with d.mu held, when a packet of size bytes leaves and
// whether the link must hold it until then, or says why it is dropped:
// the rate queue or the hold limit is full. Only a packet that goes on
// moves the rate limiter and the order.
func (d *direction) schedule(p *Params, now time.Time, size int, addr net.Addr, f fates) (release, dupRelease time.Time, held bool, cause string) {
	base := now
	if p.Rate > 0 {
		if !d.rateRoom(p, now) {
			d.st.QueueDrops++
			return time.Time{}, time.Time{}, false, CauseQueue
		}
		start := now
		if d.txFree.After(now) {
			start = d.txFree
		}
		base = start.Add(time.Duration(float64(wireBytes(p, size, addr)*8) / float64(p.Rate) * float64(time.Second)))
	}
	release = base
	if !f.reorder {
		release = base.Add(max(0, p.Delay+time.Duration(f.jitter)))
		if p.Order == KeepOrder && release.Before(d.lastRelease) {
			release = d.lastRelease // jitter never reorders
		}
	}
	// A duplicate leaves at its own draw, after its original under
	// KeepOrder; a reordered packet's copy skips the delay with it.
	dupRelease = release
	if f.dup && !f.reorder && p.Jitter > 0 {
		dupRelease = base.Add(max(0, p.Delay+time.Duration(f.dupJitter)))
		if p.Order == KeepOrder && dupRelease.Before(release) {
			dupRelease = release
		}
	}
	// Due already, and overtaking nothing it should not, a packet is
	// delivered from the caller's goroutine and never held.
	held = release.After(now) || dupRelease.After(now) || !f.reorder && d.behind() || p.Slot.on()
	if held && !d.holdRoom(p, f.copies(), f.copies()*size) {
		d.st.LimitDrops++
		return time.Time{}, time.Time{}, false, CauseLimit
	}
	if p.Rate > 0 {
		d.txFree = base
		d.txEnds = append(d.txEnds, base)
		d.st.QueueHigh = max(d.st.QueueHigh, len(d.txEnds))
	}
	if !f.reorder && p.Order == KeepOrder {
		d.lastRelease = dupRelease // the later of the two
	}
	return release, dupRelease, held, ""
}

// behind reports, with d.mu held, whether a packet that does not
// overtake must wait for others: queued, or taken by the loop and not yet
// written.
func (d *direction) behind() bool { return len(d.q) > 0 || d.writing > 0 }

// mayHold reports, with d.mu held, whether a packet meeting p may be held
// (see schedule) rather than go on at once.
func (d *direction) mayHold(p *Params) bool {
	return p.Delay > 0 || p.Jitter > 0 || p.Rate > 0 || p.Slot.on() || d.behind()
}

// rateRoom reports, with d.mu held, whether the rate limiter's queue has
// room at now, forgetting the packets it has finished sending.
func (d *direction) rateRoom(p *Params, now time.Time) bool {
	limit := p.Queue
	if limit == 0 {
		limit = DefaultQueue
	}
	i := 0
	for i < len(d.txEnds) && !d.txEnds[i].After(now) {
		i++
	}
	d.txEnds = d.txEnds[i:]
	if len(d.txEnds) == 0 && cap(d.txEnds) > shrinkCap {
		d.txEnds = nil // a flood's backing array goes once the queue empties
	}
	return len(d.txEnds) < limit
}

// holdRoom reports, with d.mu held, whether the direction may hold
// packets more datagrams of size bytes in all.
func (d *direction) holdRoom(p *Params, packets, size int) bool {
	limit, limitBytes := p.Limit, p.LimitBytes
	if limit == 0 {
		limit = DefaultLimit
	}
	if limitBytes == 0 {
		limitBytes = DefaultLimitBytes
	}
	return len(d.q)+packets <= limit && int64(d.held+size) <= limitBytes
}

// pass sends on, with d.mu held, a packet that was not dropped: at once
// (through ob, if any), or into the queue until release.
func (d *direction) pass(n uint64, b []byte, addr net.Addr, out sink, f fates, release, dupRelease time.Time, held bool, now time.Time, ob *outbox) {
	if f.reorder {
		d.st.Reordered++
	}
	fate := fateDelivered
	if f.dup {
		fate = fateDuplicated
		d.st.Duplicated++
	}
	if f.corrupt {
		fate = fateCorrupted
		d.st.Corrupted++
	}
	bp := getBuf(b)
	if f.corrupt && len(b) > 0 {
		i := f.bit % uint64(len(b)*8)
		(*bp)[i/8] ^= 1 << (i % 8)
	}
	if !held {
		// Deliver from the caller's goroutine, as the fast path does,
		// rather than wake the loop, which may be in a precise sleep for
		// a later packet.
		d.mu.Unlock()
		d.trace.record(d.name, n, len(b), fate, "", 0, f.reorder)
		d.deliverNow(bp, addr, out, f.dup, ob)
		return
	}
	first := len(d.q) == 0 || release.Before(d.q[0].at) || f.dup && dupRelease.Before(d.q[0].at)
	d.push(release, bp, addr, out)
	if f.dup {
		d.push(dupRelease, getBuf(*bp), addr, out)
	}
	d.mu.Unlock()
	d.trace.record(d.name, n, len(b), fate, "", release.Sub(now), f.reorder)
	if first {
		select {
		case d.wake <- struct{}{}:
		default:
		}
	}
}

// dropCause decides, with d.mu held, whether packet n is dropped and why.
// It always makes the same draws from r, so the stream stays aligned; the
// 4-state model draws from a stream of its own (see modelRNG), so that
// adding it changes no other fate.
func (d *direction) dropCause(p *Params, outage bool, r, m *rng, size int) string {
	uGE, uGELoss, uLoss := r.float(), r.float(), r.float()
	uState := m.float()
	if outage {
		d.st.OutageDrops++
		return CauseOutage
	}
	if p.MTU > 0 && size > p.MTU {
		d.st.MTUDrops++
		return CauseMTU
	}
	lost := corrFate(uLoss, p.Loss, p.LossCorr, &d.models.lossPrev)
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
	if p.State.on() {
		var lostHere bool
		d.models.fourState, lostHere = p.State.step(d.models.fourState, uState)
		lost = lost || lostHere
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
	d.held += len(*bp)
	d.st.HeldBytesHigh = max(d.st.HeldBytesHigh, d.held)
}

// pop takes, with d.mu held, the earliest packet from the queue.
func (d *direction) pop() packet {
	p := heap.Pop(&d.q).(packet)
	d.held -= len(*p.buf)
	if len(d.q) == 0 && cap(d.q) > shrinkCap {
		d.q = nil // a flood's backing array goes once the queue empties
	}
	return p
}

// shrinkCap is the capacity past which an empty queue's backing array
// (the delay line's or the rate queue's) is let go: small ones are kept,
// so a steady flow reallocates nothing.
const shrinkCap = 1024

// deliverNow delivers the pooled copy bp, twice if dup, and returns it
// to the pool; through ob, if any, which returns it once written.
func (d *direction) deliverNow(bp *[]byte, addr net.Addr, out sink, dup bool, ob *outbox) {
	if ob != nil {
		if dup {
			ob.add(d, *bp, nil, addr, out)
		}
		ob.add(d, *bp, bp, addr, out)
		return
	}
	d.deliver(*bp, addr, out)
	if dup {
		d.deliver(*bp, addr, out)
	}
	putBuf(bp)
}

func (d *direction) deliver(b []byte, addr net.Addr, out sink) {
	_, err := out.WriteTo(b, addr)
	d.count(len(b), err)
}

// count counts a delivery of size bytes that failed with err or, when
// err is nil, went.
func (d *direction) count(size int, err error) {
	if err != nil {
		d.writeErrors.Add(1)
		return
	}
	d.delivered.Add(1)
	d.deliveredBytes.Add(uint64(size))
}

// loop is the direction's one delivery goroutine: it sleeps on one timer
// until shortly before the earliest packet is due, finishes the wait
// precisely, then hands the packets due by then to their sockets, a batch
// per socket.
func (d *direction) loop() {
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	ob := newOutbox()
	for {
		d.mu.Lock()
		d.writing = 0 // what the last round took is written
		if len(d.q) == 0 {
			d.mu.Unlock()
			select {
			case <-d.wake:
				continue
			case <-d.done:
				return
			}
		}
		wait := d.popDue(ob)
		d.mu.Unlock()
		if len(ob.pending) > 0 {
			ob.flush()
			continue
		}
		if !d.wait(wait, timer) {
			return
		}
	}
}

// popDue moves, with d.mu held, the packets due now into ob, writeBatch
// at most, and returns how long until the next one is due when none is.
func (d *direction) popDue(ob *outbox) time.Duration {
	now := time.Now()
	for len(d.q) > 0 && len(ob.pending) < writeBatch {
		at := d.q[0].at
		slot := &d.state.Load().params[d.id].Slot
		if slot.on() {
			at = d.slotGate(slot, at)
		}
		if wait := at.Sub(now); wait > 0 {
			return wait
		}
		p := d.pop()
		d.recordLate(now.Sub(at))
		if slot.on() {
			// From the slot's own time, not the clock's: a late wakeup on
			// a busy host must not shift every later slot (netem opens
			// the next from the packet's time to send).
			d.slotSpend(slot, at, len(*p.buf)+headerBytes(p.addr))
		}
		ob.add(d, *p.buf, p.buf, p.addr, p.out)
		d.writing++
	}
	return 0
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
	s.HeldBytes = d.held
	s.Lateness = d.late.summary()
	d.mu.Unlock()
	s.Delivered = d.delivered.Load()
	s.DeliveredBytes = d.deliveredBytes.Load()
	s.WriteErrors = d.writeErrors.Load()
	return s
}
