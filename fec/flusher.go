package fec

import (
	"sync"
	"time"
)

// flusher closes the groups that do not fill within the flush timeout, for
// every encoder of a Conn or Server, with one timer and one goroutine (run),
// whatever the number of encoders. Groups open in time order and all wait
// the same Flush, so the queue of deadlines is already sorted: no heap.
type flusher struct {
	after time.Duration
	kick  chan struct{} // wakes run when the queue stops being empty

	mu     sync.Mutex
	queue  []pending
	head   int       // queue[:head] is done
	firing []pending // run's scratch
}

// pending is one group's flush deadline.
type pending struct {
	e     *encoder
	group uint32
	at    time.Time
}

func newFlusher(after time.Duration) *flusher {
	return &flusher{after: after, kick: make(chan struct{}, 1)}
}

// schedule arranges for e to close group Flush from now unless it has
// filled by then.
func (f *flusher) schedule(e *encoder, group uint32) {
	f.mu.Lock()
	f.queue = append(f.queue, pending{e, group, time.Now().Add(f.after)})
	first := len(f.queue)-f.head == 1
	f.mu.Unlock()
	if first {
		select {
		case f.kick <- struct{}{}:
		default:
		}
	}
}

// run flushes groups as they come due until stop is closed. Each value
// from tick calls onTick, which lets a server reap idle peers from the same
// goroutine; a nil tick never fires.
func (f *flusher) run(stop <-chan struct{}, tick <-chan time.Time, onTick func(time.Time)) {
	timerLoop(stop, f.kick, tick, f.fire, onTick)
}

// timerLoop calls fire at each deadline fire returns, until stop is
// closed: at once, then at the next deadline, or when kick says a sooner
// one was added. Each value from tick calls onTick.
func timerLoop(stop, kick <-chan struct{}, tick <-chan time.Time, fire func(time.Time) (time.Time, bool), onTick func(time.Time)) {
	t := time.NewTimer(time.Hour)
	defer t.Stop()
	for {
		var wake <-chan time.Time
		if next, ok := fire(time.Now()); ok {
			t.Reset(time.Until(next))
			wake = t.C
		}
		select {
		case <-stop:
			return
		case <-kick:
		case <-wake:
		case now := <-tick:
			onTick(now)
		}
	}
}

// fire flushes every group due at now and returns the next deadline, if
// any. The encoders are called without f.mu held, as they call schedule.
func (f *flusher) fire(now time.Time) (next time.Time, ok bool) {
	f.mu.Lock()
	due := f.firing[:0]
	for f.head < len(f.queue) && !f.queue[f.head].at.After(now) {
		due = append(due, f.queue[f.head])
		f.queue[f.head] = pending{}
		f.head++
	}
	f.compact()
	f.mu.Unlock()
	for _, p := range due {
		p.e.flushGroup(p.group)
	}
	clear(due)
	f.firing = due
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.head == len(f.queue) {
		return time.Time{}, false
	}
	return f.queue[f.head].at, true
}

// compact reuses the queue's space once its done part dominates it.
// f.mu is held.
func (f *flusher) compact() {
	if f.head == len(f.queue) {
		f.queue, f.head = f.queue[:0], 0
	} else if f.head > 64 && f.head > len(f.queue)/2 {
		n := copy(f.queue, f.queue[f.head:])
		clear(f.queue[n:])
		f.queue, f.head = f.queue[:n], 0
	}
}
