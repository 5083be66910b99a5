// Command udplab shows, with measured numbers, what reliability costs on top
// of UDP. It serves the classic UDP greeting over bare datagrams and over KCP
// with forward error correction, side by side, and talks to either.
//
// Usage:
//
//	udplab <command> [flags]
//
// Run "udplab help" for the commands and "udplab help <command>" for flags.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
)

// Exit codes.
const (
	exitOK    = 0
	exitError = 1 // the command ran and failed
	exitUsage = 2 // the command line was wrong
)

// A command is one udplab subcommand.
type command struct {
	name      string
	usageLine string // arguments after the name
	short     string // one line for the command list
	long      string // the help text above the flags
	// setFlags registers the command's flags and returns the function that
	// runs it once they are parsed. The run function's error is reported and
	// ends the process with exit status 1, or 2 for a usageError.
	setFlags func(fs *flag.FlagSet) func(ctx context.Context, st *stdio) error
}

// stdio is a command's standard streams, so tests can run commands in
// process.
type stdio struct {
	in       io.Reader
	out, err io.Writer
}

// usageError is a command-line mistake found after flag parsing, such as two
// flags that do not go together. It exits 2 with the command's usage.
type usageError struct{ msg string }

func (e usageError) Error() string { return e.msg }

func usagef(format string, args ...any) error { return usageError{fmt.Sprintf(format, args...)} }

var commands = []*command{compareCmd, serveCmd, clientCmd, chatCmd, linkCmd}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], &stdio{os.Stdin, os.Stdout, os.Stderr})
	stop()
	os.Exit(code)
}

// run runs the command line args and returns the exit status.
func run(ctx context.Context, args []string, st *stdio) int {
	if len(args) == 0 {
		mainUsage(st.err)
		return exitUsage
	}
	name, args := args[0], args[1:]
	switch name {
	case "help", "-h", "-help", "--help":
		if len(args) == 0 {
			mainUsage(st.out)
			return exitOK
		}
		cmd := lookup(args[0])
		if cmd == nil {
			fmt.Fprintf(st.err, "udplab help: unknown command %q; commands: %s\n", args[0], commandNames())
			return exitUsage
		}
		fs, _ := newFlagSet(cmd, st.out)
		fs.Usage()
		return exitOK
	}
	cmd := lookup(name)
	if cmd == nil {
		fmt.Fprintf(st.err, "udplab: unknown command %q; commands: %s\nRun 'udplab help' for usage.\n", name, commandNames())
		return exitUsage
	}
	fs, runFn := newFlagSet(cmd, st.err)
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return exitOK
		}
		return exitUsage // the flag package has printed the error and usage
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(st.err, "udplab %s: unexpected argument %q\n", cmd.name, fs.Arg(0))
		fs.Usage()
		return exitUsage
	}
	if err := runFn(ctx, st); err != nil {
		var ue usageError
		if errors.As(err, &ue) {
			fmt.Fprintf(st.err, "udplab %s: %s\n", cmd.name, ue.msg)
			fs.Usage()
			return exitUsage
		}
		fmt.Fprintf(st.err, "udplab %s: %v\n", cmd.name, err)
		return exitError
	}
	return exitOK
}

func newFlagSet(cmd *command, w io.Writer) (*flag.FlagSet, func(context.Context, *stdio) error) {
	fs := flag.NewFlagSet("udplab "+cmd.name, flag.ContinueOnError)
	fs.SetOutput(w)
	runFn := cmd.setFlags(fs)
	fs.Usage = func() {
		fmt.Fprintf(w, "usage: udplab %s %s\n\n%s\n\nFlags (-flag and --flag both work):\n", cmd.name, cmd.usageLine, strings.TrimSpace(cmd.long))
		fs.PrintDefaults()
	}
	return fs, runFn
}

func lookup(name string) *command {
	for _, c := range commands {
		if c.name == name {
			return c
		}
	}
	return nil
}

func commandNames() string {
	names := make([]string, len(commands))
	for i, c := range commands {
		names[i] = c.name
	}
	return strings.Join(names, ", ")
}

func mainUsage(w io.Writer) {
	fmt.Fprint(w, `udplab shows, with measured numbers, what reliability costs on top of UDP.

usage: udplab <command> [flags]

Commands:
`)
	for _, c := range commands {
		fmt.Fprintf(w, "  %-8s %s\n", c.name, c.short)
	}
	fmt.Fprint(w, `
Run 'udplab help <command>' for a command's flags.
`)
}
