package link

import (
	"bufio"
	"fmt"
	"math"
	"os"
	"strconv"
	"strings"
	"sync"
)

// paretoNormal is the quantile function of netem's paretonormal
// distribution at q: iproute2's paretonormal.c builds its table as
// (N + 3·P)/4, where N is the standard normal's quantile at q and P the
// quantile of netem's pareto, (4/3)·((1-q)^(-1/3) - 1.5) (α = 3, mean 0),
// at the same q. Both have mean 0, so the mix does; its standard deviation
// is paretoNormalSD. netem's table stops at ±4 (its int16 limit) and
// so is slightly below zero on average; this one is not cut.
func paretoNormal(q float64) float64 {
	// Keep q inside (0, 1): at 0 the normal part is -Inf, which a
	// correlated jitter would carry into every later draw.
	q = min(max(q, 0x1p-53), 1-0x1p-53)
	n := math.Sqrt2 * math.Erfinv(2*q-1)
	p := 4.0 / 3 * (math.Pow(1-q, -1.0/3) - 1.5)
	return (n + 3*p) / 4
}

// paretoNormalSD is the standard deviation of paretoNormal, integrated
// numerically (TestParetoNormal checks it): Var = (1 + 9·Var(P) +
// 6·Cov(N, P))/16 with Var(P) = 4/3 and Cov(N, P) = 0.78, the two
// quantiles of one q moving together.
const paretoNormalSD = 1.0518

// NetemDistScale is the unit of a netem distribution table (the kernel's
// NETEM_DIST_SCALE): a value of 8192 is one Jitter.
const NetemDistScale = 8192

// maxDistValues is the most values a table may hold, as iproute2's
// MAX_DIST (16 × 1024).
const maxDistValues = 16 * 1024

// DistTable is a jitter distribution read from a file in netem's format
// (iproute2 ships normal.dist, pareto.dist, paretonormal.dist and
// experimental.dist). Like netem, a packet picks one of its values with
// equal chance and adds Jitter·value/8192 to Delay; the tables iproute2
// makes list the distribution's quantiles, zero-mean and scaled to a
// standard deviation of 8192. A DistTable never changes once read, so
// it may be shared.
type DistTable struct {
	path   string
	values []int16
}

// Path is the file the table was read from.
func (t *DistTable) Path() string { return t.path }

// Len is the number of values in the table.
func (t *DistTable) Len() int { return len(t.values) }

// draw maps the uniform u in [0, 1) to a value, in units of Jitter.
func (t *DistTable) draw(u float64) float64 {
	i := min(int(u*float64(len(t.values))), len(t.values)-1)
	return float64(t.values[i]) / NetemDistScale
}

// distTables holds every table read so far, by path, so that a path names
// one table: a spec that names it twice (in both directions, or in a
// preset and again) holds the same *DistTable, and specs compare equal.
// A file is read once per process, the first time a spec names it.
var distTables struct {
	sync.Mutex
	m map[string]*DistTable
}

// LoadDistTable reads a netem distribution table, as iproute2's
// get_distribution does: lines that are empty or start with # are
// skipped; every other line holds whitespace-separated integers (decimal,
// 0x hexadecimal or 0 octal, as strtol reads them) from -32768 to 32767,
// at most 16384 in all. A path already read returns the same table.
func LoadDistTable(path string) (*DistTable, error) {
	distTables.Lock()
	defer distTables.Unlock()
	if t, ok := distTables.m[path]; ok {
		return t, nil
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	t := &DistTable{path: path}
	sc := bufio.NewScanner(f)
	line := 0
	for sc.Scan() {
		line++
		text := sc.Text()
		if text == "" || text[0] == '#' {
			continue
		}
		for _, field := range strings.Fields(text) {
			v, err := strconv.ParseInt(field, 0, 16)
			if err != nil || strings.Contains(field, "_") {
				return nil, fmt.Errorf("%s:%d: %q is not an integer from -32768 to 32767", path, line, field)
			}
			if len(t.values) == maxDistValues {
				return nil, fmt.Errorf("%s: more than %d values", path, maxDistValues)
			}
			t.values = append(t.values, int16(v))
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if len(t.values) == 0 {
		return nil, fmt.Errorf("%s: no values", path)
	}
	if distTables.m == nil {
		distTables.m = map[string]*DistTable{}
	}
	distTables.m[path] = t
	return t, nil
}

// isDistPath reports whether a dist= value names a file rather than a
// built-in distribution: it has a slash or ends in .dist.
func isDistPath(val string) bool {
	return strings.Contains(val, "/") || strings.HasSuffix(val, ".dist")
}
