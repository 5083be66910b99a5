package main

import (
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"math"
	"net"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/udplab/udplab/compare"
	"github.com/udplab/udplab/message"
	"github.com/udplab/udplab/raw"
	"github.com/udplab/udplab/reliable"
)

// Transport modes. The names are compare's, so what serve, client, chat,
// compare --modes and compare --target call a mode is one configuration.
const (
	modeRaw         = string(compare.Raw)
	modeReliable    = string(compare.Reliable)
	modeReliableFEC = string(compare.ReliableFEC)
)

// cliMode is how the command line reaches a mode over a real address.
type cliMode struct {
	name        string
	what        string // what the mode is, for help texts
	defaultAddr string // where serve listens, and client and chat look, by default
	maxMessage  int    // the largest message its transport carries
	kcp         bool   // the reliable transport, which takes the reliable flags
	fec         bool   // with Reed-Solomon FEC, as --fec sets it
}

// cliModes lists the modes in compare's order. Raw has the tutorials' port.
var cliModes = []cliMode{
	{modeRaw, "bare UDP", "127.0.0.1:6000", raw.MaxMessage, false, false},
	{modeReliable, "KCP without FEC", "127.0.0.1:6001", reliable.MaxMessage, true, false},
	{modeReliableFEC, "KCP with Reed-Solomon FEC from --fec", "127.0.0.1:6004", reliable.MaxMessage, true, true},
}

// lookupMode returns the mode named name; modeVar has checked it.
func lookupMode(name string) cliMode {
	for _, m := range cliModes {
		if m.name == name {
			return m
		}
	}
	panic("udplab: unknown mode " + name)
}

// modeVar registers --mode, which takes any mode's name.
func modeVar(fs *flag.FlagSet, p *string) {
	names := make([]string, len(cliModes))
	whats := make([]string, len(cliModes))
	for i, m := range cliModes {
		names[i] = m.name
		whats[i] = fmt.Sprintf("%s (%s)", m.name, m.what)
	}
	choiceVar(fs, p, "mode", modeRaw, names, "transport: "+strings.Join(whats, ", "))
}

// defaultAddrs describes each mode's default address, for help texts.
func defaultAddrs() string {
	var b strings.Builder
	for i, m := range cliModes {
		if i > 0 {
			b.WriteString(", ")
		}
		fmt.Fprintf(&b, "%s for %s", m.defaultAddr, m.name)
	}
	return b.String()
}

// reliableConfig returns the reliable transport's configuration for m:
// cfg from the reliable flags, with FEC off unless m has it.
func (m cliMode) reliableConfig(cfg *reliable.Config) *reliable.Config {
	var c reliable.Config
	if cfg != nil {
		c = *cfg
	}
	c.NoFEC = !m.fec
	if !m.fec {
		c.DataShards, c.ParityShards = 0, 0
	}
	return &c
}

// dial opens a client Conn of mode m to addr.
func (m cliMode) dial(addr string, cfg *reliable.Config) (message.Conn, error) {
	if !m.kcp {
		return raw.Dial(addr)
	}
	return reliable.Dial(addr, m.reliableConfig(cfg))
}

// choiceValue is a string flag that accepts only the listed values.
type choiceValue struct {
	v       *string
	choices []string
}

func (c choiceValue) String() string {
	if c.v == nil {
		return ""
	}
	return *c.v
}

func (c choiceValue) Set(s string) error {
	for _, ch := range c.choices {
		if s == ch {
			*c.v = s
			return nil
		}
	}
	return fmt.Errorf("want one of %s", strings.Join(c.choices, ", "))
}

func choiceVar(fs *flag.FlagSet, p *string, name, def string, choices []string, usage string) {
	*p = def
	fs.Var(choiceValue{p, choices}, name, fmt.Sprintf("%s: `%s`", usage, strings.Join(choices, "|")))
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

// intVar defines an int flag that accepts whole numbers from least to most
// (math.MaxInt for no upper bound), and refuses anything else naming the
// range. Put the argument's name in backquotes in usage (`N`), or the
// usage shows "value".
func intVar(fs *flag.FlagSet, p *int, name string, def, least, most int, usage string) {
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

// uint64Var defines a uint64 flag that accepts whole numbers from 0 to
// 18446744073709551615, and refuses anything else naming that range.
// Name the argument in backquotes in usage, as for intVar.
func uint64Var(fs *flag.FlagSet, p *uint64, name string, def uint64, usage string) {
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

// durationVar defines a duration flag that accepts Go durations of at
// least least (0 for zero or more, 1 for positive), and refuses anything
// else saying so. Name the argument in backquotes in usage, as for intVar.
func durationVar(fs *flag.FlagSet, p *time.Duration, name string, def, least time.Duration, usage string) {
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

// boolVar defines a boolean flag whose bad values (--quiet=maybe) are
// refused saying what it accepts.
func boolVar(fs *flag.FlagSet, p *bool, name string, def bool, usage string) {
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
	if err := checkAddr(s); err != nil {
		if a.allowOff {
			return fmt.Errorf("%w, or off", err)
		}
		return err
	}
	*a.v = s
	return nil
}

func checkAddr(s string) error {
	_, port, err := net.SplitHostPort(s)
	if err == nil {
		_, err = strconv.ParseUint(port, 10, 16)
	}
	if err != nil {
		return fmt.Errorf("want HOST:PORT such as 127.0.0.1:6000 or [::1]:6000")
	}
	return nil
}

func addrVar(fs *flag.FlagSet, p *string, name, def string, allowOff bool, usage string) {
	*p = def
	fs.Var(addrValue{p, allowOff}, name, usage)
}

// fecValue sets a reliable.Config's FEC from "D,P".
type fecValue struct{ cfg *reliable.Config }

func (f fecValue) String() string {
	if f.cfg == nil {
		return ""
	}
	return f.cfg.FECString()
}

func (f fecValue) Set(s string) error {
	if err := f.cfg.ParseFEC(s); err != nil {
		return fmt.Errorf("want DATA,PARITY shards such as 10,3: at least 1 each, at most 256 together")
	}
	return nil
}

// The reliable transport's ranges, as reliable.Config's Validate checks
// them; TestReliableRanges holds the two together. On the command line a
// value outside them is a usage error: the CLI never passes a typed 0
// through as the library's "default".
const (
	minMTU, maxMTU = 256, 1500
	maxWindow      = 32768
)

// reliableFlags registers the reliable transport's flags on fs, filling cfg.
// Servers also get the session-table flags.
func reliableFlags(fs *flag.FlagSet, cfg *reliable.Config, server bool) {
	fs.Var(fecValue{cfg}, "fec", "reliable-fec: Reed-Solomon FEC as `D,P`, data and parity shards")
	choiceVar(fs, &cfg.Profile, "profile", reliable.DefaultProfile, reliable.ProfileNames,
		"KCP: profile as kcptun names it")
	fs.StringVar(&cfg.Key, "key", "", "KCP: pre-shared `KEY`; empty means no encryption (client and server must agree)")
	fs.Var(choiceValue{&cfg.Crypt, reliable.CryptNames()}, "crypt",
		"KCP: `CIPHER` as kcptun names it, used with --key (default "+reliable.DefaultCrypt+" when --key is set): "+
			strings.Join(reliable.CryptNames(), ", "))
	intVar(fs, &cfg.MTU, "mtu", reliable.DefaultMTU, minMTU, maxMTU,
		fmt.Sprintf("KCP: largest UDP payload KCP sends, %d to %d `BYTES`", minMTU, maxMTU))
	intVar(fs, &cfg.SendWindow, "sndwnd", reliable.DefaultSendWindow, 1, maxWindow,
		fmt.Sprintf("KCP: send window, 1 to %d `SEGMENTS`", maxWindow))
	intVar(fs, &cfg.ReceiveWindow, "rcvwnd", reliable.DefaultReceiveWindow, 1, maxWindow,
		fmt.Sprintf("KCP: receive window, 1 to %d `SEGMENTS`", maxWindow))
	if server {
		durationVar(fs, &cfg.Idle, "idle", reliable.DefaultIdle, 1,
			"KCP: forget a session silent for `D` (KCP has no FIN)")
		intVar(fs, &cfg.MaxSessions, "max-sessions", reliable.DefaultMaxSessions, 1, math.MaxInt,
			"KCP: at most `N` sessions at once; new clients beyond them are refused")
	}
}

// reliableFlagNames returns the names of the flags reliableFlags registers.
func reliableFlagNames() []string {
	fs := flag.NewFlagSet("", flag.ContinueOnError)
	reliableFlags(fs, &reliable.Config{}, true)
	var names []string
	fs.VisitAll(func(f *flag.Flag) { names = append(names, f.Name) })
	return names
}

// given returns the first of names that the command line set, or "".
func given(fs *flag.FlagSet, names ...string) string {
	first := ""
	fs.Visit(func(f *flag.Flag) {
		if first == "" && slices.Contains(names, f.Name) {
			first = f.Name
		}
	})
	return first
}

// checkModeFlags checks the reliable flags against --mode m: raw takes
// none, --fec belongs to reliable-fec, and reliable-fec needs FEC.
func checkModeFlags(fs *flag.FlagSet, m cliMode, cfg *reliable.Config) error {
	if f := given(fs, reliableFlagNames()...); f != "" && !m.kcp {
		return usagef("--%s is a reliable flag: --mode %s takes none (use --mode %s or %s)", f, m.name, modeReliable, modeReliableFEC)
	}
	if given(fs, "fec") != "" && !m.fec {
		return usagef("--fec sets %s's shards: --mode %s is KCP without FEC (use --mode %s for FEC)", modeReliableFEC, m.name, modeReliableFEC)
	}
	if m.fec && cfg.NoFEC {
		return usagef("--fec 0,0 turns FEC off: use --mode %s for KCP without FEC", modeReliable)
	}
	return checkReliable(cfg)
}

// checkReliable turns a reliable.Config error into a usage error: every
// setting in it came from a flag.
func checkReliable(cfg *reliable.Config) error {
	if err := cfg.Validate(); err != nil {
		return usagef("%s", strings.TrimPrefix(err.Error(), "reliable: "))
	}
	return nil
}

// logLevelVar registers --log-level.
func logLevelVar(fs *flag.FlagSet, p *string) {
	choiceVar(fs, p, "log-level", "info", []string{"debug", "info", "warn", "error"},
		"log detail; debug logs every request, which costs throughput")
}

func newLogger(st *stdio, level string) *slog.Logger {
	var l slog.Level
	_ = l.UnmarshalText([]byte(level)) // choiceValue already checked it
	return slog.New(slog.NewTextHandler(st.err, &slog.HandlerOptions{Level: l}))
}

// replyVar registers --reply.
func replyVar(fs *flag.FlagSet, p *string) {
	choiceVar(fs, p, "reply", message.HandlerNames[0], message.HandlerNames,
		"what the server answers: greet (Hello NAME!), time ([ctime] MSG) or echo")
}

// timeoutVar registers --timeout.
func timeoutVar(fs *flag.FlagSet, p *time.Duration) {
	durationVar(fs, p, "timeout", time.Second, 1, "wait `D` for each reply")
}
