package link

import (
	"errors"
	"fmt"
	"math"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/udplab/udplab/internal/cliflag"
)

// Params are one direction's impairments. The zero value is a perfect link:
// every packet delivered at once, once, intact.
type Params struct {
	Loss    float64       // probability of a Bernoulli loss, 0 to 1
	Burst   GE            // Gilbert-Elliott burst loss; zero P means off
	Delay   time.Duration // one-way delay added to every packet
	Jitter  time.Duration // spread around Delay (see Dist)
	Dist    Dist          // jitter distribution; zero means Uniform; Table draws from DistTable
	Order   Order         // whether jitter may reorder; zero means KeepOrder
	Reorder float64       // probability a packet skips Delay, overtaking the queue
	Dup     float64       // probability a packet is sent twice
	Corrupt float64       // probability one random bit is flipped
	Rate    int64         // bits per second, counting each packet's wireBytes; 0 means unlimited
	Queue   int           // packets waiting for the rate limit before tail drop; 0 means DefaultQueue
	MTU     int           // largest datagram passed; larger ones are dropped; 0 means no limit
	// Limit and LimitBytes bound what the direction holds at once, the
	// delay line and the rate queue together, as netem's limit does:
	// a packet that would pass either is dropped (LimitDrops). Zero means
	// DefaultLimit packets and DefaultLimitBytes bytes of payload.
	Limit      int
	LimitBytes int64
	// LossCorr, DupCorr, CorruptCorr and ReorderCorr are the lag-1
	// correlations of the Bernoulli loss, dup, corrupt and reorder fates,
	// 0 to below 1, keeping their means (see corrThreshold); zero means
	// independent fates.
	LossCorr, DupCorr, CorruptCorr, ReorderCorr float64
	// JitterCorr is the lag-1 correlation of successive packets' jitter,
	// 0 to below 1, keeping its mean and standard deviation (see
	// corrJitter); zero means independent draws.
	JitterCorr float64
	// DistTable is the table Dist Table draws from, nil for every other
	// Dist.
	DistTable *DistTable
	// Overhead, CellSize and CellOverhead shape what the rate counts, as
	// netem's "rate RATE overhead cellsize celloverhead": Overhead bytes
	// are added to each packet (negative takes away), and with a CellSize
	// the packet takes whole cells of CellSize+CellOverhead bytes (ATM's
	// 48-byte cells with 5 bytes of header, say). See wireBytes. They need
	// a Rate.
	Overhead, CellSize, CellOverhead int
	// Slot releases the direction's packets in bursts, as netem's slot;
	// the zero value is off.
	Slot Slot
	// State is netem's 4-state Markov loss model, on top of Loss and
	// Burst: a packet any of them loses is lost. The zero value is off.
	State FourState
}

// GE is netem's Gilbert-Elliott loss model ("loss gemodel p r 1-h 1-k"):
// a two-state chain moving good→bad with probability P and bad→good with
// R, losing a packet with probability LossBad (1-h) in the bad state and
// LossGood (1-k) in the good one. With LossBad 1, bursts last 1/R packets
// on average.
type GE struct {
	P, R, LossBad, LossGood float64
}

// Dist is a jitter distribution.
type Dist uint8

// Jitter distributions. Each adds Jitter·X to Delay, with X of mean 0;
// a negative total is clipped to no delay.
const (
	Uniform Dist = iota // X uniform on [-1, 1): Delay ± Jitter, standard deviation Jitter/√3
	Normal              // X standard normal: standard deviation Jitter
	// Pareto: X Pareto with α = 3, shifted and scaled to mean 0 and
	// standard deviation 1 as netem's pareto table is; standard deviation
	// Jitter, never below Delay - 0.577·Jitter, and a heavy tail above.
	Pareto
	// ParetoNormal: X as netem's paretonormal table, (N + 3·P)/4 with N
	// the standard normal's and P netem's pareto's quantiles at one
	// uniform draw (see paretoNormal): mean 0, standard deviation 1.05
	// Jitter, a heavy tail above.
	ParetoNormal
	// Table: X one of Params.DistTable's values, with equal chance, as
	// netem draws from a .dist file.
	Table
)

var distNames = []string{"uniform", "normal", "pareto", "paretonormal"}

func (d Dist) String() string {
	if int(d) < len(distNames) {
		return distNames[d]
	}
	if d == Table {
		return "table"
	}
	return fmt.Sprintf("Dist(%d)", d)
}

// Order says whether jitter may reorder a direction's packets.
type Order uint8

// Orders.
const (
	// KeepOrder releases each packet at the later of its own time and the
	// previous packet's release, so jitter never reorders. When packets
	// come closer together than the jitter's spread, many wait for the one
	// before: the mean delay rises above Delay and the delay varies less
	// from packet to packet than the distribution says.
	KeepOrder Order = iota
	// NetemOrder releases each packet at its own time, as Linux netem does:
	// the delay has exactly the distribution asked for, and a packet whose
	// draw is smaller than an earlier one's by more than their spacing
	// overtakes it.
	NetemOrder
)

var orderNames = []string{"keep", "netem"}

func (o Order) String() string {
	if int(o) < len(orderNames) {
		return orderNames[o]
	}
	return fmt.Sprintf("Order(%d)", o)
}

// DefaultQueue is the rate limiter's queue when Params.Queue is zero:
// netem's default limit of 1000 packets.
const DefaultQueue = 1000

// DefaultLimit is the packets a direction may hold when Params.Limit is
// zero. netem's default limit is 1000 packets, but compare pushes bulk
// transfers as fast as a mode sends through a 20ms delay with no rate:
// a raw 4 MB transfer is 3,300 datagrams in the delay line at once, and a
// larger one more. So the count is set high enough for those, and
// DefaultLimitBytes is the cap that matters; the count bounds what small
// datagrams cost beyond their payload: about 300 bytes each (the queue
// entry, the smallest buffer, the garbage collector's headroom), so
// 100,000 30-byte datagrams held through a 10s delay took 30 MiB.
const DefaultLimit = 100_000

// DefaultLimitBytes is the payload a direction may hold when
// Params.LimitBytes is zero. 64 MiB holds a full second at 500 Mbit/s, far
// more than any preset or compare link keeps in flight (satellite's down
// way, 25 Mbit/s for 300ms, is under 1 MiB), while a flood through a long
// delay or a huge queue costs at most that much memory per direction,
// whatever the user set.
const DefaultLimitBytes = 64 << 20

// HeaderBytes is what each packet adds to the wire beyond its UDP payload
// when a rate is applied: an IPv4 header (20) and a UDP header (8).
const HeaderBytes = 28

// HeaderBytesIPv6 is HeaderBytes for a packet to an IPv6 address: an IPv6
// header (40) and a UDP header (8).
const HeaderBytesIPv6 = 48

// Spec is a whole link: both directions and the seed that fixes every
// random fate. Up is client to server, down is server to client.
type Spec struct {
	Up, Down Params
	Seed     uint64
}

// DefaultSeed is the seed when a spec names none.
const DefaultSeed = 1

// impaired reports whether p changes anything at all.
func (p *Params) impaired() bool { return *p != Params{} }

// Parse reads the link grammar: a comma list of items, each a preset name
// or KEY=VALUE, where an "up:" or "down:" prefix sets one direction only.
// Later items override earlier ones, so "lte,loss=5%" is LTE with 5% loss.
//
//	loss=10%[/RHO]  burst=P[/R[/1-H[/1-K]]]  loss-state=P13[/P31[/P32[/P23[/P14]]]]  delay=20ms  jitter=5ms[/RHO]  dist=uniform|normal|pareto|paretonormal|FILE.dist
//	order=keep|netem  reorder=1%[/RHO]  dup=0.1%[/RHO]  corrupt=0.1%[/RHO]  rate=10mbit  overhead=14
//	cellsize=48[/5]  slot=1ms[/10ms]  slot-packets=32  slot-bytes=64KiB  queue=100  mtu=1400
//	limit=1000  limit-bytes=4MiB  seed=7
//
// The empty string is a perfect link. A value that cannot be read gives a
// *ParseError.
func Parse(s string) (Spec, error) {
	spec := Spec{Seed: DefaultSeed}
	if err := spec.Apply(s); err != nil {
		return Spec{}, err
	}
	return spec, nil
}

// ParseError is a value in the link grammar that could not be read.
type ParseError struct {
	Item string // the item at fault, such as `loss="120%"`
	Want string // what is accepted there, such as "a percentage from 0% to 100%, such as 10% or 0.5%"
}

func (e *ParseError) Error() string { return "link: " + e.Item + ": want " + e.Want }

// nested carries an error of this package inside another of its errors,
// so that the message names the package once ("link: schedule step …:
// loss=…", not "…: link: loss=…"). errors.Is and errors.As see through it.
type nested struct{ err error }

func (e nested) Error() string { return strings.TrimPrefix(e.err.Error(), "link: ") }
func (e nested) Unwrap() error { return e.err }

// valueError is a ParseError for KEY=VALUE.
func valueError(key, val, want string) error {
	return &ParseError{Item: key + "=" + strconv.Quote(val), Want: want}
}

// Apply parses s as Parse does and applies it on top of spec.
func (spec *Spec) Apply(s string) error {
	s = strings.TrimSpace(s)
	if s == "" {
		return nil
	}
	for _, item := range strings.Split(s, ",") {
		if err := spec.applyItem(strings.TrimSpace(item)); err != nil {
			return err
		}
	}
	return spec.Validate()
}

// CheckItem reports whether one grammar item (such as "loss=10%") is well
// formed on its own, leaving checks across items to Validate.
func CheckItem(item string) error {
	var s Spec
	return s.applyItem(strings.TrimSpace(item))
}

func (spec *Spec) applyItem(item string) error {
	if item == "" {
		return errors.New("link: empty item (two commas in a row?)")
	}
	dirs := []*Params{&spec.Up, &spec.Down}
	if rest, ok := strings.CutPrefix(item, "up:"); ok {
		item, dirs = rest, dirs[:1]
	} else if rest, ok := strings.CutPrefix(item, "down:"); ok {
		item, dirs = rest, dirs[1:]
	}
	key, val, ok := strings.Cut(item, "=")
	if !ok {
		return spec.applyPreset(item, dirs)
	}
	if key == "seed" {
		if len(dirs) != 2 {
			return errors.New("link: seed is for the whole link; it takes no up: or down: prefix")
		}
		n, err := strconv.ParseUint(val, 10, 64)
		if err != nil {
			return valueError(key, val, "a whole number such as 7")
		}
		spec.Seed = n
		return nil
	}
	for _, d := range dirs {
		if err := setKey(d, key, val); err != nil {
			return err
		}
	}
	return nil
}

// applyPreset sets dirs to the preset name's parameters.
func (spec *Spec) applyPreset(name string, dirs []*Params) error {
	p, found := Presets[name]
	if !found {
		return fmt.Errorf("link: %q is neither KEY=VALUE nor a preset; presets: %s", name, strings.Join(PresetNames(), ", "))
	}
	ps := Spec{}
	for _, it := range strings.Split(p.Link, ",") {
		if err := ps.applyItem(it); err != nil {
			return fmt.Errorf("link: preset %s: %w", name, nested{err})
		}
	}
	for _, d := range dirs {
		if d == &spec.Down {
			*d = ps.Down
		} else {
			*d = ps.Up
		}
	}
	return nil
}

// Keys lists the grammar's keys, for help and error messages.
var Keys = []string{"loss", "burst", "loss-state", "delay", "jitter", "dist", "order", "reorder", "dup", "corrupt", "rate", "overhead", "cellsize", "slot", "slot-packets", "slot-bytes", "queue", "mtu", "limit", "limit-bytes", "seed"}

func setKey(p *Params, key, val string) error {
	var err error
	switch key {
	case "loss":
		p.Loss, p.LossCorr, err = parseCorrProb(key, val)
	case "reorder":
		p.Reorder, p.ReorderCorr, err = parseCorrProb(key, val)
	case "dup":
		p.Dup, p.DupCorr, err = parseCorrProb(key, val)
	case "corrupt":
		p.Corrupt, p.CorruptCorr, err = parseCorrProb(key, val)
	case "burst":
		p.Burst, err = parseGE(val)
	case "loss-state":
		p.State, err = parseFourState(val)
	case "delay":
		p.Delay, err = parseDuration(key, val)
	case "jitter":
		p.Jitter, p.JitterCorr, err = parseJitter(val)
	case "dist":
		p.Dist, p.DistTable, err = parseDist(val)
	case "order":
		p.Order, err = parseName[Order](key, val, orderNames)
	case "rate":
		p.Rate, err = ParseRate(val)
		if err != nil {
			err = valueError(key, val, rateWant)
		}
	case "overhead":
		p.Overhead, err = parseOverhead(key, val, val)
	case "cellsize":
		p.CellSize, p.CellOverhead, err = parseCell(val)
	case "slot":
		p.Slot.Min, p.Slot.Max, err = parseSlot(val)
	case "slot-packets":
		p.Slot.Packets, err = parseCount(key, val, 1)
	case "slot-bytes":
		p.Slot.Bytes, err = parseSize(key, val)
	case "queue":
		p.Queue, err = parseCount(key, val, 1)
	case "mtu":
		p.MTU, err = parseCount(key, val, 1)
	case "limit":
		p.Limit, err = parseCount(key, val, 1)
	case "limit-bytes":
		p.LimitBytes, err = parseSize(key, val)
	default:
		return fmt.Errorf("link: unknown key %q; keys: %s", key, strings.Join(Keys, ", "))
	}
	return err
}

// parseName reads one of names, giving its index.
func parseName[T ~uint8](key, val string, names []string) (T, error) {
	for i, n := range names {
		if n == val {
			return T(i), nil
		}
	}
	return 0, valueError(key, val, "one of "+strings.Join(names, ", "))
}

// parseDist reads a built-in distribution's name or the path of a table in
// netem's format.
func parseDist(val string) (Dist, *DistTable, error) {
	if !isDistPath(val) {
		d, err := parseName[Dist]("dist", val, distNames)
		if err != nil {
			err = valueError("dist", val, "one of "+strings.Join(distNames, ", ")+", or the path of a table in netem's format, such as /usr/lib/x86_64-linux-gnu/tc/normal.dist")
		}
		return d, nil, err
	}
	t, err := LoadDistTable(val)
	if err != nil {
		return 0, nil, &ParseError{Item: "dist=" + strconv.Quote(val), Want: "a table in netem's format (" + err.Error() + ")"}
	}
	return Table, t, nil
}

func parseProb(key, val string) (float64, error) {
	num, ok := strings.CutSuffix(val, "%")
	f, isNum := parseDecimal(num, -2) // percent: the point moves two places left
	if !ok || !isNum || f > 1 {
		return 0, valueError(key, val, "a percentage from 0% to 100%, such as 10% or 0.5%")
	}
	return f, nil
}

// parseCorrProb reads a probability with an optional lag-1 correlation
// after a slash, such as 10% or 10%/25% (netem's "loss 10% 25%").
func parseCorrProb(key, val string) (p, rho float64, err error) {
	num, corr, hasCorr := strings.Cut(val, "/")
	if p, err = parseProb(key, num); err != nil {
		return 0, 0, valueError(key, val, "a percentage from 0% to 100%, such as 10% or 0.5%, optionally with a correlation from 0% to below 100% after a slash, such as 10%/25%")
	}
	if hasCorr {
		rho, err = parseProb(key, corr)
		if err != nil || rho == 1 {
			return 0, 0, valueError(key, val, "a correlation from 0% to below 100% after the slash, such as 10%/25%")
		}
	}
	if p == 0 || p == 1 {
		rho = 0 // a fate that never or always happens has no correlation to keep
	}
	return p, rho, nil
}

func parseGE(val string) (GE, error) {
	parts := strings.Split(val, "/")
	bad := valueError("burst", val, "P[/R[/1-H[/1-K]]] as percentages, such as 1%/30% (netem's gemodel p r 1-h 1-k; R defaults to 1-P)")
	if len(parts) > 4 {
		return GE{}, bad
	}
	ge := GE{LossBad: 1}
	fields := []*float64{&ge.P, &ge.R, &ge.LossBad, &ge.LossGood}
	for i, part := range parts {
		f, err := parseProb("burst", part)
		if err != nil {
			return GE{}, bad
		}
		*fields[i] = f
	}
	if len(parts) == 1 {
		ge.R = 1 - ge.P // netem's gemodel p alone
	}
	if ge.P == 0 {
		return GE{}, nil // never entering the bad state: the model is off
	}
	if ge.R == 0 {
		return GE{}, valueError("burst", val, "an R above 0%: at 0% the bad state would never end")
	}
	return ge, nil
}

// parseFourState reads netem's "loss state p13 [p31 [p32 [p23 [p14]]]]"
// as P13[/P31[/P32[/P23[/P14]]]], with iproute2's defaults: P31 = 1-P13,
// P32 = 0, P23 = 100%, P14 = 0.
func parseFourState(val string) (FourState, error) {
	parts := strings.Split(val, "/")
	const key = "loss-state"
	want := "P13[/P31[/P32[/P23[/P14]]]] as percentages, such as 5%/30%/10%/40%/1% (netem's loss state p13 p31 p32 p23 p14)"
	if len(parts) > 5 {
		return FourState{}, valueError(key, val, want)
	}
	m := FourState{P32: 0, P23: 1}
	fields := []*float64{&m.P13, &m.P31, &m.P32, &m.P23, &m.P14}
	for i, part := range parts {
		f, err := parseProb(key, part)
		if err != nil {
			return FourState{}, valueError(key, val, want)
		}
		*fields[i] = f
	}
	if len(parts) == 1 {
		m.P31 = 1 - m.P13
	}
	switch {
	case !m.on():
		return FourState{}, nil // never leaving state 1: the model is off
	case m.P13+m.P14 > 1:
		return FourState{}, valueError(key, val, "P13 + P14 at most 100%: they share state 1's way out")
	case m.P31+m.P32 > 1:
		return FourState{}, valueError(key, val, "P31 + P32 at most 100%: they share state 3's way out")
	case m.P13 > 0 && m.P31 == 0:
		return FourState{}, valueError(key, val, "a P31 above 0% when P13 is: without it the bursts would never end")
	case m.P13 > 0 && m.P32 > 0 && m.P23 == 0:
		return FourState{}, valueError(key, val, "a P23 above 0% when P32 is: at 0% state 2 would never end")
	}
	return m, nil
}

// parseJitter reads a jitter with an optional correlation after a slash,
// such as 5ms or 5ms/25% (netem's "delay 20ms 5ms 25%").
func parseJitter(val string) (time.Duration, float64, error) {
	dur, corr, hasCorr := strings.Cut(val, "/")
	j, err := parseDuration("jitter", dur)
	if err != nil {
		return 0, 0, valueError("jitter", val, "a duration of zero or more, such as 5ms, optionally with a correlation from 0% to below 100% after a slash, such as 5ms/25%")
	}
	var rho float64
	if hasCorr {
		rho, err = parseProb("jitter", corr)
		if err != nil || rho == 1 {
			return 0, 0, valueError("jitter", val, "a correlation from 0% to below 100% after the slash, such as 5ms/25%")
		}
	}
	if j == 0 {
		rho = 0 // no jitter, nothing to correlate
	}
	return j, rho, nil
}

func parseDuration(key, val string) (time.Duration, error) {
	d, err := time.ParseDuration(val)
	if err != nil || d < 0 {
		return 0, valueError(key, val, "a duration of zero or more, such as 20ms")
	}
	return d, nil
}

// maxOverhead bounds overhead and celloverhead: far more than any link
// layer adds, and small enough that no sum of them overflows.
const maxOverhead = 65535

// parseOverhead reads a byte count that may be negative, as netem's
// packet and cell overheads (s32), within ±maxOverhead; item is the whole
// value, for the error.
func parseOverhead(key, num, item string) (int, error) {
	n, err := strconv.Atoi(num)
	if err != nil || n < -maxOverhead || n > maxOverhead {
		return 0, valueError(key, item, fmt.Sprintf("a whole number of bytes from %d to %d, such as 14", -maxOverhead, maxOverhead))
	}
	return n, nil
}

// parseSlot reads slot=MIN[/MAX], netem's "slot MIN_DELAY [MAX_DELAY]":
// MAX defaults to MIN and may not be below it.
func parseSlot(val string) (lo, hi time.Duration, err error) {
	a, b, hasMax := strings.Cut(val, "/")
	want := "a slot length or a range MIN/MAX, such as 5ms or 1ms/10ms, with MAX at least MIN and above zero"
	lo, err = time.ParseDuration(a)
	hi = lo
	if err == nil && hasMax {
		hi, err = time.ParseDuration(b)
	}
	if err != nil || lo < 0 || hi < lo || hi == 0 {
		return 0, 0, valueError("slot", val, want)
	}
	return lo, hi, nil
}

// parseCell reads cellsize=N[/CELLOVERHEAD].
func parseCell(val string) (size, overhead int, err error) {
	num, over, hasOver := strings.Cut(val, "/")
	size, err = parseCount("cellsize", num, 1)
	if err != nil || size > maxOverhead {
		return 0, 0, valueError("cellsize", val, fmt.Sprintf("a cell size from 1 to %d bytes, optionally with a cell overhead after a slash, such as 48/5", maxOverhead))
	}
	if hasOver {
		if overhead, err = parseOverhead("cellsize", over, val); err != nil {
			return 0, 0, err
		}
	}
	return size, overhead, nil
}

func parseCount(key, val string, least int) (int, error) {
	n, err := strconv.Atoi(val)
	if err != nil || n < least {
		return 0, valueError(key, val, fmt.Sprintf("a whole number of at least %d", least))
	}
	return n, nil
}

// rateUnits are the rate suffixes, largest first, with their powers of ten.
var rateUnits = []struct {
	suffix string
	exp    int
}{{"gbit", 9}, {"mbit", 6}, {"kbit", 3}}

const rateWant = "a positive rate with kbit, mbit or gbit, such as 10mbit, in whole bits per second"

// ParseRate reads a rate such as 10mbit: a positive number with kbit, mbit
// or gbit in any case (bits per second, powers of 1000), which must come
// to a whole number of bits per second.
func ParseRate(val string) (int64, error) {
	lower := strings.ToLower(val)
	for _, u := range rateUnits {
		if num, ok := strings.CutSuffix(lower, u.suffix); ok {
			f, isNum := parseDecimal(num, u.exp)
			if isNum && f >= 1 && f < math.MaxInt64 && f == math.Trunc(f) {
				return int64(f), nil
			}
			break
		}
	}
	return 0, errors.New("want " + rateWant)
}

// Validate reports impairments that cannot work together.
func (spec *Spec) Validate() error {
	for _, d := range []struct {
		name string
		p    *Params
	}{{"up", &spec.Up}, {"down", &spec.Down}} {
		if d.p.Reorder > 0 && d.p.Delay == 0 {
			return fmt.Errorf("link: %s: reorder=%s needs a delay for reordered packets to overtake (as netem's reorder does)", d.name, pct(d.p.Reorder))
		}
		if d.p.Limit < 0 || d.p.LimitBytes < 0 {
			return fmt.Errorf("link: %s: limit and limit-bytes cannot be negative", d.name)
		}
		if (d.p.Dist == Table) != (d.p.DistTable != nil) || d.p.Dist > Table {
			return fmt.Errorf("link: %s: Dist %v with DistTable %v: a table is Dist Table's alone", d.name, d.p.Dist, d.p.DistTable)
		}
		if (d.p.Overhead != 0 || d.p.CellSize != 0) && d.p.Rate == 0 {
			return fmt.Errorf("link: %s: overhead and cellsize shape the rate; without one they change nothing", d.name)
		}
		if !d.p.Slot.on() && (d.p.Slot.Packets != 0 || d.p.Slot.Bytes != 0) {
			return fmt.Errorf("link: %s: slot-packets and slot-bytes bound a slot; they need slot=MIN[/MAX]", d.name)
		}
		if d.p.CellSize == 0 && d.p.CellOverhead != 0 {
			return fmt.Errorf("link: %s: a cell overhead needs a cell size", d.name)
		}
		if d.p.Dist != Uniform && d.p.Jitter == 0 {
			return fmt.Errorf("link: %s: dist=%s needs a jitter to shape; without one every packet has the same delay", d.name, d.p.Dist)
		}
		if err := d.p.validateModels(); err != nil {
			return fmt.Errorf("link: %s: %w", d.name, err)
		}
	}
	return nil
}

// validateModels checks the newer models' numbers, as the grammar checks
// them, for a Spec built in Go: a correlation of 1 would make a jitter
// draw NaN, a slot shorter than none or longer than its maximum has no
// meaning.
func (p *Params) validateModels() error {
	for _, rho := range []float64{p.LossCorr, p.DupCorr, p.CorruptCorr, p.ReorderCorr, p.JitterCorr} {
		if !(rho >= 0 && rho < 1) {
			return fmt.Errorf("a correlation of %v: want 0 to below 1", rho)
		}
	}
	m := p.State
	for _, q := range []float64{m.P13, m.P31, m.P32, m.P23, m.P14} {
		if !(q >= 0 && q <= 1) {
			return fmt.Errorf("loss-state probability %v: want 0 to 1", q)
		}
	}
	if m.P13+m.P14 > 1 || m.P31+m.P32 > 1 {
		return fmt.Errorf("loss-state: p13+p14 and p31+p32 may not pass 1")
	}
	if s := p.Slot; s.Min < 0 || s.Max < s.Min || s.Packets < 0 || s.Bytes < 0 {
		return fmt.Errorf("slot %v/%v, %d packets, %d bytes: want 0 <= MIN <= MAX and no negative bound", s.Min, s.Max, s.Packets, s.Bytes)
	}
	if p.CellSize < 0 {
		return fmt.Errorf("cellsize %d: want 0 (none) or more", p.CellSize)
	}
	return nil
}

// String renders spec in the grammar, so that Parse(spec.String()) gives
// spec back, with numbers as a person writes them: the shortest decimal
// that reads back to the same value, and rates in the largest unit that
// keeps them whole. Equal directions are written once, without a prefix.
func (spec Spec) String() string {
	var items []string
	if spec.Up == spec.Down {
		items = spec.Up.items("")
	} else {
		items = append(spec.Up.items("up:"), spec.Down.items("down:")...)
	}
	items = append(items, "seed="+strconv.FormatUint(spec.Seed, 10))
	return strings.Join(items, ",")
}

func (p Params) items(prefix string) []string {
	var out []string
	add := func(k, v string) { out = append(out, prefix+k+"="+v) }
	if p.Loss > 0 {
		add("loss", corrPct(p.Loss, p.LossCorr))
	}
	if p.Burst.P > 0 {
		add("burst", pct(p.Burst.P)+"/"+pct(p.Burst.R)+"/"+pct(p.Burst.LossBad)+"/"+pct(p.Burst.LossGood))
	}
	if m := p.State; m.on() {
		add("loss-state", pct(m.P13)+"/"+pct(m.P31)+"/"+pct(m.P32)+"/"+pct(m.P23)+"/"+pct(m.P14))
	}
	if p.Delay > 0 {
		add("delay", p.Delay.String())
	}
	if p.Jitter > 0 {
		if p.JitterCorr > 0 {
			add("jitter", p.Jitter.String()+"/"+pct(p.JitterCorr))
		} else {
			add("jitter", p.Jitter.String())
		}
	}
	if p.Dist == Table {
		add("dist", p.DistTable.Path())
	} else if p.Dist != Uniform {
		add("dist", p.Dist.String())
	}
	if p.Order != KeepOrder {
		add("order", p.Order.String())
	}
	if p.Reorder > 0 {
		add("reorder", corrPct(p.Reorder, p.ReorderCorr))
	}
	if p.Dup > 0 {
		add("dup", corrPct(p.Dup, p.DupCorr))
	}
	if p.Corrupt > 0 {
		add("corrupt", corrPct(p.Corrupt, p.CorruptCorr))
	}
	if p.Rate > 0 {
		add("rate", formatRate(p.Rate))
	}
	if p.Overhead != 0 {
		add("overhead", strconv.Itoa(p.Overhead))
	}
	if p.CellSize > 0 {
		if p.CellOverhead != 0 {
			add("cellsize", strconv.Itoa(p.CellSize)+"/"+strconv.Itoa(p.CellOverhead))
		} else {
			add("cellsize", strconv.Itoa(p.CellSize))
		}
	}
	if s := p.Slot; s.on() {
		if s.Min == s.Max {
			add("slot", s.Min.String())
		} else {
			add("slot", s.Min.String()+"/"+s.Max.String())
		}
	}
	if p.Slot.Packets > 0 {
		add("slot-packets", strconv.Itoa(p.Slot.Packets))
	}
	if p.Slot.Bytes > 0 {
		add("slot-bytes", formatSize(p.Slot.Bytes))
	}
	if p.Queue > 0 {
		add("queue", strconv.Itoa(p.Queue))
	}
	if p.MTU > 0 {
		add("mtu", strconv.Itoa(p.MTU))
	}
	if p.Limit > 0 {
		add("limit", strconv.Itoa(p.Limit))
	}
	if p.LimitBytes > 0 {
		add("limit-bytes", formatSize(p.LimitBytes))
	}
	return out
}

func pct(f float64) string { return formatDecimal(f, 2) + "%" }

// corrPct writes a probability with its correlation, if any.
func corrPct(p, rho float64) string {
	if rho > 0 {
		return pct(p) + "/" + pct(rho)
	}
	return pct(p)
}

// formatRate writes bits per second in the largest unit that keeps them
// whole, or in kbit with decimals below 1kbit or between whole kbits.
func formatRate(bps int64) string {
	for _, u := range rateUnits {
		if div := int64(math.Pow10(u.exp)); bps%div == 0 {
			return strconv.FormatInt(bps/div, 10) + u.suffix
		}
	}
	digits := strconv.FormatInt(bps, 10)
	return placePoint(digits, len(digits)-3) + "kbit"
}

// parseSize reads a positive byte count as every udplab flag does (see
// cliflag.ParseBytes): bare, or with kB, MB, GB or KiB, MiB, GiB.
func parseSize(key, val string) (int64, error) {
	n, err := cliflag.ParseBytes(val)
	if err != nil || n < 1 {
		return 0, valueError(key, val, "a positive byte count such as 64MiB, 4MB or 65536 (kB, MB, GB are powers of 1000; KiB, MiB, GiB of 1024)")
	}
	return n, nil
}

// formatSize writes bytes in the largest power-of-1024 unit that keeps
// them whole, as a buffer size is usually written, or else as cliflag
// writes byte counts.
func formatSize(n int64) string {
	for _, u := range []struct {
		suffix string
		shift  uint
	}{{"GiB", 30}, {"MiB", 20}, {"KiB", 10}} {
		if n%(1<<u.shift) == 0 {
			return strconv.FormatInt(n>>u.shift, 10) + u.suffix
		}
	}
	return cliflag.FormatBytes(n)
}

// PresetNames lists the presets, sorted.
func PresetNames() []string {
	names := make([]string, 0, len(Presets))
	for n := range Presets {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}
