package main

import (
	"flag"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"time"

	"github.com/udplab/udplab/internal/cliflag"
	"github.com/udplab/udplab/message"
	"github.com/udplab/udplab/modes"
)

// modeValue is --mode: a mode's name or alias, kept as the mode's name.
type modeValue struct{ p *string }

func (v modeValue) String() string {
	if v.p == nil {
		return ""
	}
	return *v.p
}

func (v modeValue) Set(s string) error {
	m, err := modes.Lookup(s)
	if err != nil {
		return fmt.Errorf("want one of %s", strings.Join(modes.Names(), ", "))
	}
	*v.p = m.Name
	return nil
}

// modeVar registers --mode, which takes any mode's name (or alias).
func modeVar(fs *flag.FlagSet, p *string) {
	*p = modes.Raw.Name
	fs.Var(modeValue{p}, "mode", "transport `MODE`: "+modeList())
}

// modeList says what each mode is, and its older name if it has one.
func modeList() string {
	var parts []string
	for _, m := range modes.All() {
		part := fmt.Sprintf("%s (%s", m.Name, m.What)
		for _, a := range m.Aliases {
			part += "; also called " + a
		}
		parts = append(parts, part+")")
	}
	return strings.Join(parts, ", ")
}

// lookupMode returns the mode named name; modeValue has checked it.
func lookupMode(name string) *modes.Mode {
	m, err := modes.Lookup(name)
	if err != nil {
		panic("udplab: " + err.Error())
	}
	return m
}

// defaultAddrs describes each mode's default address, for help texts.
func defaultAddrs() string {
	var b strings.Builder
	for i, m := range modes.All() {
		if i > 0 {
			b.WriteString(", ")
		}
		fmt.Fprintf(&b, "%s for %s", m.DefaultAddr, m.Name)
	}
	return b.String()
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

// checkModeFlags refuses a mode flag that none of the chosen modes takes,
// saying which modes do.
func checkModeFlags(fs *flag.FlagSet, chosen []*modes.Mode, server bool, what string) error {
	var err error
	fs.Visit(func(f *flag.Flag) {
		owners := modes.Owners(f.Name, server)
		if err != nil || len(owners) == 0 {
			return
		}
		if !slices.ContainsFunc(chosen, func(m *modes.Mode) bool { return m.TakesFlag(f.Name, server) }) {
			err = usagef("--%s applies to %s, and %s", f.Name, andList(owners, ""), what)
		}
	})
	return err
}

// andList joins items as prose: "a", "a and b", "a, b and c", each
// item with prefix.
func andList(items []string, prefix string) string {
	var b strings.Builder
	for i, it := range items {
		switch {
		case i == 0:
		case i == len(items)-1:
			b.WriteString(" and ")
		default:
			b.WriteString(", ")
		}
		b.WriteString(prefix + it)
	}
	return b.String()
}

// newTransport makes m's transport from the settings the flags filled; a
// setting it refuses came from a flag, so the error is a usage error.
func newTransport(m *modes.Mode, s *modes.Settings) (modes.Transport, error) {
	t, err := m.New(s)
	if err != nil {
		return nil, usagef("%v", err)
	}
	return t, nil
}

// logLevelVar registers --log-level.
func logLevelVar(fs *flag.FlagSet, p *string) {
	cliflag.Choice(fs, p, "log-level", "info", []string{"debug", "info", "warn", "error"},
		"log detail; debug logs every request, which costs throughput")
}

func newLogger(st *stdio, level string) *slog.Logger {
	var l slog.Level
	_ = l.UnmarshalText([]byte(level)) // choiceValue already checked it
	return slog.New(slog.NewTextHandler(st.err, &slog.HandlerOptions{Level: l}))
}

// replyVar registers --reply.
func replyVar(fs *flag.FlagSet, p *string) {
	cliflag.Choice(fs, p, "reply", message.HandlerNames[0], message.HandlerNames,
		"what the server answers: greet (Hello NAME!), time ([ctime] MSG) or echo")
}

// timeoutVar registers --timeout.
func timeoutVar(fs *flag.FlagSet, p *time.Duration) {
	cliflag.Duration(fs, p, "timeout", time.Second, 1, "wait `D` for each reply")
}
