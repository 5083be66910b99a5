// Package leakcheck holds the goroutine-leak check every test package runs
// after its tests. Only tests import it, so goleak never reaches the binary.
package leakcheck

import (
	"testing"

	"go.uber.org/goleak"
)

// Options ignores kcp-go's process-wide scheduler, whose goroutines start
// when kcp-go is loaded and live as long as the process by design.
func Options() []goleak.Option {
	return []goleak.Option{
		goleak.IgnoreTopFunction("github.com/xtaci/kcp-go/v5.(*TimedSched).sched"),
		goleak.IgnoreTopFunction("github.com/xtaci/kcp-go/v5.(*TimedSched).prepend"),
	}
}

// VerifyTestMain runs the package's tests and fails the run if any goroutine
// started by them is still alive afterwards.
func VerifyTestMain(m *testing.M) { goleak.VerifyTestMain(m, Options()...) }
