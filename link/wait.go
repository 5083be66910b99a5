package link

import (
	"runtime"
	"sync/atomic"
	"time"
)

// A Go timer is not precise enough for a link: on Linux the runtime's
// poller sleeps in whole milliseconds, so a timer fires up to about 1.1ms
// late, and a 100µs delay would come out as anything from 0.1 to 1.2ms.
// So a direction waits in two steps: a timer until coarseMargin before the
// packet is due (any overshoot of the timer lands inside the margin), then
// short precise sleeps (fineSleep: nanosleep on Linux, some tens of
// microseconds late) and a spin that yields the processor for what is
// left. Each direction learns how late its precise sleeps wake and sleeps
// that much less, so the spin is short: it costs a few microseconds of CPU
// a packet, and packets leave within microseconds of their time on an idle
// machine.
const (
	coarseMargin = 1500 * time.Microsecond
	fineStep     = 500 * time.Microsecond // longest step between looks at the queue and at Close
	minSleep     = 5 * time.Microsecond   // below this, spin rather than sleep
)

// preciseWaits says whether new links finish their waits precisely. Tests
// under testing/synctest turn it off: virtual time advances only when
// every goroutine blocks, so a spin would never see its time come, and a
// plain timer is already exact there.
var preciseWaits atomic.Bool

func init() { preciseWaits.Store(true) }

// coarseWait is how long to wait on the timer for a packet due in wait,
// and whether to wait on it at all rather than finish precisely.
func coarseWait(wait time.Duration, precise bool) (time.Duration, bool) {
	if !precise {
		return wait, true
	}
	if wait > coarseMargin {
		return wait - coarseMargin, true
	}
	return 0, false
}

// fine is one direction's precise waiting: the running estimate of how
// late its precise sleeps wake. Only the direction's loop uses it.
type fine struct{ over time.Duration }

// initialOver is the estimate before any sleep: nanosleep's usual lateness
// on an idle Linux machine.
const initialOver = 80 * time.Microsecond

// step takes one step towards a release due in wait (≤ coarseMargin): a
// precise sleep that should wake just before it, or a yield when that is
// too close to sleep. Each sleep costs the process tens of microseconds of
// CPU (the runtime's bookkeeping around a blocking call), so it sleeps in
// one go unless a packet due earlier may arrive meanwhile (short, when
// jitter may reorder): then in fineStep steps, looking at the queue in
// between. Reordered packets that skip the delay never wait for this:
// their senders deliver them.
func (f *fine) step(wait time.Duration, short bool) {
	if f.over == 0 {
		f.over = initialOver
	}
	d := wait - f.over
	if short {
		d = min(d, fineStep)
	}
	if d < minSleep {
		runtime.Gosched()
		return
	}
	start := time.Now()
	fineSleep(d)
	// A late wake from preemption says nothing about the sleep itself:
	// clip it, so that one busy moment does not turn sleeps into spins.
	late := min(max(time.Since(start)-d, 0), 200*time.Microsecond)
	f.over += (late - f.over) / 8
}
