package main

import (
	"flag"
	"fmt"
	"math"
	"os"
	"runtime/debug"
	"strconv"

	"github.com/udplab/udplab/internal/cliflag"
)

const (
	// defaultMemoryLimit is serve's soft limit on the Go runtime's memory
	// when neither --memory-limit nor GOMEMLIMIT sets one. Every listener's
	// tables full at the default --max-sessions (1024 each) take some 0.6
	// GB of heap, mostly the two KCP listeners' (278 kB a session, as
	// compare --workload sessions measures it), so the limit leaves the
	// defaults room and makes the GC work harder only past them, instead
	// of letting the heap double until the kernel's OOM killer ends the
	// process.
	defaultMemoryLimit = 1 << 30
	// minMemoryLimit is the smallest limit taken: below it the GC would
	// run almost without pause for the runtime and six idle servers alone.
	minMemoryLimit = 16 << 20
	// noMemoryLimit is the runtime's "no limit", which "off" sets.
	noMemoryLimit = math.MaxInt64
)

// memoryLimitValue is --memory-limit: a byte count of at least
// minMemoryLimit, or off.
type memoryLimitValue struct{ p *int64 }

func (v memoryLimitValue) String() string {
	if v.p == nil {
		return "0"
	}
	return formatLimit(*v.p)
}

func (v memoryLimitValue) Set(s string) error {
	if s == "off" {
		*v.p = noMemoryLimit
		return nil
	}
	n, err := cliflag.ParseBytes(s)
	if err != nil || n < minMemoryLimit {
		return fmt.Errorf("want a size of at least %s such as 512MiB or 2GB (KiB, MiB, GiB are powers of 1024; kB, MB, GB of 1000), or off", formatLimit(minMemoryLimit))
	}
	*v.p = n
	return nil
}

// memoryLimitVar registers --memory-limit.
func memoryLimitVar(fs *flag.FlagSet, p *int64) {
	*p = defaultMemoryLimit
	fs.Var(memoryLimitValue{p}, "memory-limit",
		"soft limit `SIZE` on the Go runtime's memory, or off: past it the GC works harder, up to half the CPU, rather than letting the heap grow; "+
			"the default leaves room for every listener's --max-sessions clients; GOMEMLIMIT, when set, wins over the default but not over this flag")
}

// setMemoryLimit sets the runtime's soft memory limit to n, unless n is
// only the default and GOMEMLIMIT has set one. It returns the limit in
// force, where it came from, and restore, which puts back the limit found:
// the tests run serve inside their own process.
func setMemoryLimit(n int64, explicit bool) (limit int64, from string, restore func()) {
	if !explicit && os.Getenv("GOMEMLIMIT") != "" {
		return debug.SetMemoryLimit(-1), "GOMEMLIMIT", func() {}
	}
	from = "default"
	if explicit {
		from = "--memory-limit"
	}
	prev := debug.SetMemoryLimit(n)
	return n, from, func() { debug.SetMemoryLimit(prev) }
}

// formatLimit writes a memory limit as GOMEMLIMIT would take it: in the
// largest power-of-1024 unit that keeps it whole, or off.
func formatLimit(n int64) string {
	if n == noMemoryLimit {
		return "off"
	}
	for _, u := range []struct {
		suffix string
		n      int64
	}{{"GiB", 1 << 30}, {"MiB", 1 << 20}, {"KiB", 1 << 10}} {
		if n >= u.n && n%u.n == 0 {
			return strconv.FormatInt(n/u.n, 10) + u.suffix
		}
	}
	return strconv.FormatInt(n, 10) + "B"
}
