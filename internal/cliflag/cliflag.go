// Package cliflag holds the flag values udplab's commands and modes share:
// each accepts only what it says, and its error names what it accepts, so
// that a bad value is one clear usage line.
package cliflag

import (
	"errors"
	"flag"
	"fmt"
	"math"
	"net"
	"strconv"
	"strings"
	"time"
)

// ChoiceValue is a string flag that accepts only the listed values.
type ChoiceValue struct {
	V       *string
	Choices []string
}

// String returns the value.
func (c ChoiceValue) String() string {
	if c.V == nil {
		return ""
	}
	return *c.V
}

// Set takes s if it is one of the choices.
func (c ChoiceValue) Set(s string) error {
	for _, ch := range c.Choices {
		if s == ch {
			*c.V = s
			return nil
		}
	}
	return fmt.Errorf("want one of %s", strings.Join(c.Choices, ", "))
}

// Choice defines a string flag that accepts only choices, listed in its usage.
func Choice(fs *flag.FlagSet, p *string, name, def string, choices []string, usage string) {
	*p = def
	fs.Var(ChoiceValue{p, choices}, name, fmt.Sprintf("%s: `%s`", usage, strings.Join(choices, "|")))
}

// intValue is an int flag that accepts whole numbers from least to most.
type intValue struct {
	p           *int
	least, most int
}

func (v intValue) String() string {
	if v.p == nil {
		return "0" // the zero value's default, which PrintDefaults leaves out
	}
	return strconv.Itoa(*v.p)
}

func (v intValue) Set(s string) error {
	n, err := strconv.ParseInt(s, 10, 0)
	if err != nil || int(n) < v.least || int(n) > v.most {
		if v.most == math.MaxInt {
			return fmt.Errorf("want a whole number of at least %d", v.least)
		}
		return fmt.Errorf("want a whole number from %d to %d", v.least, v.most)
	}
	*v.p = int(n)
	return nil
}

// Int defines an int flag that accepts whole numbers from least to most
// (math.MaxInt for no upper bound), and refuses anything else naming the
// range. Put the argument's name in backquotes in usage (`N`), or the
// usage shows "value".
func Int(fs *flag.FlagSet, p *int, name string, def, least, most int, usage string) {
	*p = def
	fs.Var(intValue{p, least, most}, name, usage)
}

// uint64Value is a uint64 flag that says what it accepts.
type uint64Value struct{ p *uint64 }

func (v uint64Value) String() string {
	if v.p == nil {
		return "0"
	}
	return strconv.FormatUint(*v.p, 10)
}

func (v uint64Value) Set(s string) error {
	n, err := strconv.ParseUint(s, 10, 64)
	if err != nil {
		return fmt.Errorf("want a whole number from 0 to %d", uint64(math.MaxUint64))
	}
	*v.p = n
	return nil
}

// Uint64 defines a uint64 flag that accepts whole numbers from 0 to
// 18446744073709551615, and refuses anything else naming that range.
// Name the argument in backquotes in usage, as for Int.
func Uint64(fs *flag.FlagSet, p *uint64, name string, def uint64, usage string) {
	*p = def
	fs.Var(uint64Value{p}, name, usage)
}

// durationValue is a duration flag that accepts durations of at least least.
type durationValue struct {
	p     *time.Duration
	least time.Duration
}

func (v durationValue) String() string {
	if v.p == nil {
		return "0s"
	}
	return v.p.String()
}

func (v durationValue) Set(s string) error {
	d, err := time.ParseDuration(s)
	if err != nil || d < v.least {
		switch v.least {
		case 0:
			return errors.New("want a duration of zero or more, such as 500ms or 2s")
		case 1:
			return errors.New("want a positive duration, such as 500ms or 2s")
		}
		return fmt.Errorf("want a duration of at least %v", v.least)
	}
	*v.p = d
	return nil
}

// Duration defines a duration flag that accepts Go durations of at
// least least (0 for zero or more, 1 for positive), and refuses anything
// else saying so. Name the argument in backquotes in usage, as for Int.
func Duration(fs *flag.FlagSet, p *time.Duration, name string, def, least time.Duration, usage string) {
	*p = def
	fs.Var(durationValue{p, least}, name, usage)
}

// boolValue is a boolean flag that says what it accepts.
type boolValue struct{ p *bool }

func (v boolValue) String() string {
	if v.p == nil {
		return "false"
	}
	return strconv.FormatBool(*v.p)
}

func (v boolValue) Set(s string) error {
	b, err := strconv.ParseBool(s)
	if err != nil {
		return errors.New("want true or false, or the flag alone for true")
	}
	*v.p = b
	return nil
}

// IsBoolFlag lets the flag stand alone: --quiet means --quiet=true.
func (v boolValue) IsBoolFlag() bool { return true }

// Bool defines a boolean flag whose bad values (--quiet=maybe) are
// refused saying what it accepts.
func Bool(fs *flag.FlagSet, p *bool, name string, def bool, usage string) {
	*p = def
	fs.Var(boolValue{p}, name, usage)
}

// addrValue is a host:port flag, checked when parsed. IPv6 hosts go in
// brackets: [::1]:6000. With allowOff, "off" disables what it addresses.
type addrValue struct {
	v        *string
	allowOff bool
}

func (a addrValue) String() string {
	if a.v == nil {
		return ""
	}
	return *a.v
}

func (a addrValue) Set(s string) error {
	if a.allowOff && s == "off" {
		*a.v = s
		return nil
	}
	if err := CheckAddr(s); err != nil {
		if a.allowOff {
			return fmt.Errorf("%w, or off", err)
		}
		return err
	}
	*a.v = s
	return nil
}

// CheckAddr reports whether s is HOST:PORT, saying what is wanted if not.
func CheckAddr(s string) error {
	_, port, err := net.SplitHostPort(s)
	if err == nil {
		_, err = strconv.ParseUint(port, 10, 16)
	}
	if err != nil {
		return fmt.Errorf("want HOST:PORT such as 127.0.0.1:6000 or [::1]:6000")
	}
	return nil
}

// Addr defines a HOST:PORT flag, checked when parsed; with allowOff it
// also takes "off".
func Addr(fs *flag.FlagSet, p *string, name, def string, allowOff bool, usage string) {
	*p = def
	fs.Var(addrValue{p, allowOff}, name, usage)
}

// bytesValue is a byte count flag with an optional unit.
type bytesValue struct {
	p     *int64
	least int64
}

func (v bytesValue) String() string {
	if v.p == nil {
		return "0"
	}
	return FormatBytes(*v.p)
}

func (v bytesValue) Set(s string) error {
	n, err := ParseBytes(s)
	if err != nil || n < v.least {
		return fmt.Errorf("want a byte count of at least %d, such as 4MB, 512KiB or 1000000 (kB, MB, GB are powers of 1000; KiB, MiB, GiB of 1024)", v.least)
	}
	*v.p = n
	return nil
}

// byteUnits are the units ParseBytes takes, in lower case.
var byteUnits = []struct {
	suffix string
	n      int64
}{
	{"kib", 1 << 10}, {"mib", 1 << 20}, {"gib", 1 << 30},
	{"kb", 1e3}, {"mb", 1e6}, {"gb", 1e9},
	{"k", 1e3}, {"m", 1e6}, {"g", 1e9}, {"b", 1},
}

// ParseBytes reads a byte count: a whole number with an optional unit, B,
// kB, MB, GB (powers of 1000, as iperf3's -n reads its units, hence k, M,
// G alone too) or KiB, MiB, GiB (powers of 1024), in any case.
func ParseBytes(s string) (int64, error) {
	num, mult := strings.ToLower(strings.TrimSpace(s)), int64(1)
	for _, u := range byteUnits {
		if rest, ok := strings.CutSuffix(num, u.suffix); ok {
			num, mult = strings.TrimSpace(rest), u.n
			break
		}
	}
	n, err := strconv.ParseInt(num, 10, 64)
	if err != nil || n < 0 || n > math.MaxInt64/mult {
		return 0, fmt.Errorf("byte count %q: want a whole number with an optional unit (B, kB, MB, GB, KiB, MiB, GiB)", s)
	}
	return n * mult, nil
}

// FormatBytes writes n with the largest power-of-1000 unit that keeps it
// whole, as ParseBytes reads it back.
func FormatBytes(n int64) string {
	for _, u := range []struct {
		suffix string
		n      int64
	}{{"GB", 1e9}, {"MB", 1e6}, {"kB", 1e3}} {
		if n >= u.n && n%u.n == 0 {
			return strconv.FormatInt(n/u.n, 10) + u.suffix
		}
	}
	return strconv.FormatInt(n, 10) + "B"
}

// Bytes defines a byte count flag (see ParseBytes) of at least least.
func Bytes(fs *flag.FlagSet, p *int64, name string, def, least int64, usage string) {
	*p = def
	fs.Var(bytesValue{p, least}, name, usage)
}
