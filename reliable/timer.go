package reliable

import (
	"container/heap"
	"sync"
	"time"
)

// ticker is what the timer ticks: a session. tick does the work due at now
// and returns when it next has work, or the zero time when it has none
// until something (a packet, a Send) schedules it again.
type ticker interface {
	tick(now time.Time) time.Time
}

// timerEntry is a ticker's place in the timer; the timer owns its fields.
type timerEntry struct {
	owner ticker
	due   time.Time
	index int  // in the heap; -1 when not scheduled
	gone  bool // removed for good: a tick under way when it was must not put it back
}

// timer is the one goroutine that ticks every session of a listener, in
// order of when each next has work: a heap keyed by due time, and one
// time.Timer for the earliest. A session is in the heap only while it has
// something to do (segments unacknowledged, acknowledgements to send, FEC
// state to let go of, its idle deadline), so an idle one costs nothing but
// the deadline at which it is reaped. kcp-go instead ticks every session
// every interval for as long as it lives.
type timer struct {
	mu    sync.Mutex
	h     timerHeap
	wake  chan struct{} // the earliest due time changed
	stop  chan struct{}
	done  chan struct{}
	ticks uint64 // ticks made, for tests
}

func newTimer() *timer {
	t := &timer{wake: make(chan struct{}, 1), stop: make(chan struct{}), done: make(chan struct{})}
	go t.run()
	return t
}

// schedule makes e due at due, or keeps it due earlier if it already is.
func (t *timer) schedule(e *timerEntry, due time.Time) {
	t.mu.Lock()
	defer t.mu.Unlock()
	switch {
	case e.gone:
		return
	case e.index >= 0 && !due.Before(e.due):
		return
	case e.index >= 0:
		e.due = due
		heap.Fix(&t.h, e.index)
	default:
		e.due = due
		heap.Push(&t.h, e)
	}
	if e.index == 0 {
		select {
		case t.wake <- struct{}{}:
		default:
		}
	}
}

// remove takes e out of the timer for good: schedule ignores it from now
// on.
func (t *timer) remove(e *timerEntry) {
	t.mu.Lock()
	e.gone = true
	if e.index >= 0 {
		heap.Remove(&t.h, e.index)
	}
	t.mu.Unlock()
}

// close stops the timer's goroutine and returns once it has.
func (t *timer) close() {
	select {
	case <-t.stop:
	default:
		close(t.stop)
	}
	<-t.done
}

// scheduled is how many entries are in the timer.
func (t *timer) scheduled() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.h)
}

func (t *timer) run() {
	defer close(t.done)
	clock := time.NewTimer(time.Hour)
	defer clock.Stop()
	var due []*timerEntry
	var next time.Duration
	for {
		now := time.Now()
		due, next = t.pop(now, due[:0])
		for _, e := range due {
			if at := e.owner.tick(now); !at.IsZero() {
				t.schedule(e, at)
			}
		}
		clear(due)
		if len(due) > 0 {
			continue // ticking took time: look again
		}
		if next > 0 {
			clock.Reset(next)
		}
		select {
		case <-clock.C:
		case <-t.wake:
			clock.Stop()
		case <-t.stop:
			return
		}
	}
}

// pop takes every entry due by now, and returns how long until the next,
// or 0 when there is none.
func (t *timer) pop(now time.Time, due []*timerEntry) ([]*timerEntry, time.Duration) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for len(t.h) > 0 && !t.h[0].due.After(now) {
		due = append(due, heap.Pop(&t.h).(*timerEntry))
	}
	t.ticks += uint64(len(due))
	if len(t.h) == 0 {
		return due, 0
	}
	return due, t.h[0].due.Sub(now)
}

// timerHeap orders entries by due time; it is container/heap's.
type timerHeap []*timerEntry

func (h timerHeap) Len() int           { return len(h) }
func (h timerHeap) Less(i, j int) bool { return h[i].due.Before(h[j].due) }
func (h timerHeap) Swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].index, h[j].index = i, j
}

func (h *timerHeap) Push(x any) {
	e := x.(*timerEntry)
	e.index = len(*h)
	*h = append(*h, e)
}

func (h *timerHeap) Pop() any {
	old := *h
	e := old[len(old)-1]
	old[len(old)-1] = nil
	*h = old[:len(old)-1]
	e.index = -1
	if len(*h) == 0 && cap(*h) > 1024 {
		*h = nil // give back a burst's array
	}
	return e
}
