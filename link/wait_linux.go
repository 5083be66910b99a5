package link

import (
	"syscall"
	"time"
)

// fineSleep sleeps for about d, blocking its thread in nanosleep, whose
// wake-up is tens of microseconds late rather than a Go timer's
// millisecond.
func fineSleep(d time.Duration) {
	ts := syscall.NsecToTimespec(int64(d))
	_ = syscall.Nanosleep(&ts, nil) // an early wake (EINTR) only means one more step
}
