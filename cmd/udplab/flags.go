package main

import (
	"flag"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"time"

	"github.com/udplab/udplab/message"
	"github.com/udplab/udplab/reliable"
)

// Transport modes.
const (
	modeRaw      = "raw"
	modeReliable = "reliable"
)

// Default addresses: the tutorials' port for raw, the next one for reliable.
const (
	defaultRawAddr      = "127.0.0.1:6000"
	defaultReliableAddr = "127.0.0.1:6001"
)

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
		return fmt.Errorf("want DATA,PARITY shards such as 10,3, or 0,0 for none")
	}
	return nil
}

// reliableFlags registers the reliable transport's flags on fs, filling cfg.
// Servers also get the session-table flags.
func reliableFlags(fs *flag.FlagSet, cfg *reliable.Config, server bool) {
	fs.Var(fecValue{cfg}, "fec", "reliable: Reed-Solomon FEC as `D,P` (data, parity shards); 0,0 turns FEC off")
	choiceVar(fs, &cfg.Profile, "profile", reliable.DefaultProfile, reliable.ProfileNames,
		"reliable: KCP profile as kcptun names it")
	fs.StringVar(&cfg.Key, "key", "", "reliable: pre-shared `KEY`; empty means no encryption (client and server must agree)")
	fs.Var(choiceValue{&cfg.Crypt, reliable.CryptNames()}, "crypt",
		"reliable: `CIPHER` as kcptun names it, used with --key (default "+reliable.DefaultCrypt+" when --key is set): "+
			strings.Join(reliable.CryptNames(), ", "))
	fs.IntVar(&cfg.MTU, "mtu", reliable.DefaultMTU, "reliable: largest UDP payload KCP sends, 256 to 1500 bytes")
	fs.IntVar(&cfg.SendWindow, "sndwnd", reliable.DefaultSendWindow, "reliable: KCP send window, in segments")
	fs.IntVar(&cfg.ReceiveWindow, "rcvwnd", reliable.DefaultReceiveWindow, "reliable: KCP receive window, in segments")
	if server {
		fs.DurationVar(&cfg.Idle, "idle", reliable.DefaultIdle, "reliable: forget a session silent this long (KCP has no FIN)")
		fs.IntVar(&cfg.MaxSessions, "max-sessions", reliable.DefaultMaxSessions, "reliable: most sessions at once; new clients beyond it are refused")
	}
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
	fs.DurationVar(p, "timeout", time.Second, "how long to wait for each reply")
}
