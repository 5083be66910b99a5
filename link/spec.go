package link

import (
	"errors"
	"fmt"
	"math"
	"sort"
	"strconv"
	"strings"
	"time"
)

// Params are one direction's impairments. The zero value is a perfect link:
// every packet delivered at once, once, intact.
type Params struct {
	Loss    float64       // probability of a Bernoulli loss, 0 to 1
	Burst   GE            // Gilbert-Elliott burst loss; zero P means off
	Delay   time.Duration // one-way delay added to every packet (kept to ±0.5ms, see timerSlack)
	Jitter  time.Duration // spread around Delay (see Dist)
	Dist    Dist          // jitter distribution; zero means Uniform
	Reorder float64       // probability a packet skips Delay, overtaking the queue
	Dup     float64       // probability a packet is sent twice
	Corrupt float64       // probability one random bit is flipped
	Rate    int64         // bits per second, 28 header bytes counted per packet; 0 means unlimited
	Queue   int           // packets waiting for the rate limit before tail drop; 0 means DefaultQueue
	MTU     int           // largest datagram passed; larger ones are dropped; 0 means no limit
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

// Jitter distributions.
const (
	Uniform Dist = iota // Delay ± Jitter, uniform
	Normal              // Delay + N(0, Jitter²)
	Pareto              // Delay + Jitter·X, X Pareto with α = 3 and mean 1: a heavy tail
)

var distNames = []string{"uniform", "normal", "pareto"}

func (d Dist) String() string {
	if int(d) < len(distNames) {
		return distNames[d]
	}
	return fmt.Sprintf("Dist(%d)", d)
}

// DefaultQueue is the rate limiter's queue when Params.Queue is zero:
// netem's default limit of 1000 packets.
const DefaultQueue = 1000

// HeaderBytes is what each packet adds to the wire beyond its UDP payload
// when a rate is applied: an IPv4 header (20) and a UDP header (8).
const HeaderBytes = 28

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
//	loss=10%  burst=P/R[/1-H[/1-K]]  delay=20ms  jitter=5ms  dist=uniform|normal|pareto
//	reorder=1%  dup=0.1%  corrupt=0.1%  rate=10mbit  queue=100  mtu=1400  seed=7
//
// The empty string is a perfect link.
func Parse(s string) (Spec, error) {
	spec := Spec{Seed: DefaultSeed}
	if err := spec.Apply(s); err != nil {
		return Spec{}, err
	}
	return spec, nil
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
		p, found := Presets[item]
		if !found {
			return fmt.Errorf("link: %q is neither KEY=VALUE nor a preset; presets: %s", item, strings.Join(PresetNames(), ", "))
		}
		ps := Spec{}
		for _, it := range strings.Split(p.Link, ",") {
			if err := ps.applyItem(it); err != nil {
				return fmt.Errorf("link: preset %s: %w", item, err)
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
	if key == "seed" {
		if len(dirs) != 2 {
			return errors.New("link: seed is for the whole link; it takes no up: or down: prefix")
		}
		n, err := strconv.ParseUint(val, 10, 64)
		if err != nil {
			return fmt.Errorf("link: seed=%q: want a whole number such as 7", val)
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

// Keys lists the grammar's keys, for help and error messages.
var Keys = []string{"loss", "burst", "delay", "jitter", "dist", "reorder", "dup", "corrupt", "rate", "queue", "mtu", "seed"}

func setKey(p *Params, key, val string) error {
	var err error
	switch key {
	case "loss":
		p.Loss, err = parseProb(key, val)
	case "reorder":
		p.Reorder, err = parseProb(key, val)
	case "dup":
		p.Dup, err = parseProb(key, val)
	case "corrupt":
		p.Corrupt, err = parseProb(key, val)
	case "burst":
		p.Burst, err = parseGE(val)
	case "delay":
		p.Delay, err = parseDuration(key, val)
	case "jitter":
		p.Jitter, err = parseDuration(key, val)
	case "dist":
		i := indexOf(distNames, val)
		if i < 0 {
			return fmt.Errorf("link: dist=%q: want one of %s", val, strings.Join(distNames, ", "))
		}
		p.Dist = Dist(i)
	case "rate":
		p.Rate, err = ParseRate(val)
		if err != nil {
			err = fmt.Errorf("link: rate=%q: %w", val, err)
		}
	case "queue":
		p.Queue, err = parseCount(key, val, 1)
	case "mtu":
		p.MTU, err = parseCount(key, val, 1)
	default:
		return fmt.Errorf("link: unknown key %q; keys: %s", key, strings.Join(Keys, ", "))
	}
	return err
}

func parseProb(key, val string) (float64, error) {
	num, ok := strings.CutSuffix(val, "%")
	f, err := strconv.ParseFloat(num, 64)
	if !ok || err != nil || math.IsNaN(f) || f < 0 || f > 100 {
		return 0, fmt.Errorf("link: %s=%q: want a percentage from 0%% to 100%%, such as 10%% or 0.5%%", key, val)
	}
	return f / 100, nil
}

func parseGE(val string) (GE, error) {
	parts := strings.Split(val, "/")
	bad := fmt.Errorf("link: burst=%q: want P/R[/1-H[/1-K]] as percentages, such as 1%%/30%% (netem's gemodel p r 1-h 1-k)", val)
	if len(parts) < 2 || len(parts) > 4 {
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
	if ge.P == 0 {
		return GE{}, nil // never entering the bad state: the model is off
	}
	if ge.R == 0 {
		return GE{}, fmt.Errorf("link: burst=%q: R is 0%%, so the bad state would never end", val)
	}
	return ge, nil
}

func parseDuration(key, val string) (time.Duration, error) {
	d, err := time.ParseDuration(val)
	if err != nil || d < 0 {
		return 0, fmt.Errorf("link: %s=%q: want a duration of zero or more, such as 20ms", key, val)
	}
	return d, nil
}

func parseCount(key, val string, least int) (int, error) {
	n, err := strconv.Atoi(val)
	if err != nil || n < least {
		return 0, fmt.Errorf("link: %s=%q: want a whole number of at least %d", key, val, least)
	}
	return n, nil
}

// ParseRate reads a rate such as 10mbit: a positive number with kbit, mbit
// or gbit (bits per second, powers of 1000).
func ParseRate(val string) (int64, error) {
	for _, u := range []struct {
		suffix string
		mult   float64
	}{{"kbit", 1e3}, {"mbit", 1e6}, {"gbit", 1e9}} {
		if num, ok := strings.CutSuffix(val, u.suffix); ok {
			f, err := strconv.ParseFloat(num, 64)
			if err == nil && f > 0 && f*u.mult >= 1 && f*u.mult < math.MaxInt64 {
				return int64(f * u.mult), nil
			}
			break
		}
	}
	return 0, errors.New("want a positive rate with kbit, mbit or gbit, such as 10mbit")
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
	}
	return nil
}

// String renders spec in the grammar, so that Parse(spec.String()) gives
// spec back. Equal directions are written once, without a prefix.
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
		add("loss", pct(p.Loss))
	}
	if p.Burst.P > 0 {
		add("burst", pct(p.Burst.P)+"/"+pct(p.Burst.R)+"/"+pct(p.Burst.LossBad)+"/"+pct(p.Burst.LossGood))
	}
	if p.Delay > 0 {
		add("delay", p.Delay.String())
	}
	if p.Jitter > 0 {
		add("jitter", p.Jitter.String())
	}
	if p.Dist != Uniform {
		add("dist", p.Dist.String())
	}
	if p.Reorder > 0 {
		add("reorder", pct(p.Reorder))
	}
	if p.Dup > 0 {
		add("dup", pct(p.Dup))
	}
	if p.Corrupt > 0 {
		add("corrupt", pct(p.Corrupt))
	}
	if p.Rate > 0 {
		add("rate", strconv.FormatFloat(float64(p.Rate)/1e3, 'g', -1, 64)+"kbit")
	}
	if p.Queue > 0 {
		add("queue", strconv.Itoa(p.Queue))
	}
	if p.MTU > 0 {
		add("mtu", strconv.Itoa(p.MTU))
	}
	return out
}

func pct(f float64) string { return strconv.FormatFloat(f*100, 'g', -1, 64) + "%" }

func indexOf(list []string, s string) int {
	for i, x := range list {
		if x == s {
			return i
		}
	}
	return -1
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
