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
// short precise sleeps (fineSleep: nanosleep on Linux, about 70µs late)
// and, for the last spinMargin, a spin that yields the processor. The
// cost is CPU in the last 1.5ms before each release, and the gain is
// releases within a few microseconds of their time on an idle machine.
const (
	coarseMargin = 1500 * time.Microsecond
	spinMargin   = 150 * time.Microsecond
	fineStep     = 200 * time.Microsecond // longest step between looks at the queue and at Close
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

// fineWait takes one short step towards a release due in wait (≤
// coarseMargin): a precise sleep while far enough away, otherwise a yield.
func fineWait(wait time.Duration) {
	if wait > spinMargin {
		fineSleep(min(wait-spinMargin, fineStep))
		return
	}
	runtime.Gosched()
}
