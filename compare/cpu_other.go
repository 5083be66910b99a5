//go:build !unix

package compare

import "time"

// cpuTime is not measured on this system: reports show zero.
func cpuTime() time.Duration { return 0 }
