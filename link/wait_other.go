//go:build !linux

package link

import "time"

// fineSleep sleeps for about d. Outside Linux the runtime's timers are
// the finest sleep at hand; the spin that follows absorbs their error.
func fineSleep(d time.Duration) { time.Sleep(d) }
