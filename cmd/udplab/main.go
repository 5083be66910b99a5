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

	"github.com/udplab/udplab/compare"
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
// flags that do not go together. It exits 2, like a bad flag.
type usageError struct{ msg string }

func (e usageError) Error() string { return e.msg }

func usagef(format string, args ...any) error { return usageError{fmt.Sprintf(format, args...)} }

var commands = []*command{compareCmd, serveCmd, clientCmd, chatCmd, linkCmd, versionCmd}

var versionCmd = &command{
	name:  "version",
	short: "print udplab's commit and its transport libraries' and Go's versions",
	long: `Version prints one line: the commit udplab was built from ("-dirty" when the
tree had changes, "commit unknown" when the binary carries no VCS stamp, as
under go run), then the versions of kcp-go, quic-go and reedsolomon, and of
Go. compare records the same in
its JSON as versions.`,
	setFlags: func(*flag.FlagSet) func(context.Context, *stdio) error {
		return func(_ context.Context, st *stdio) error {
			_, err := fmt.Fprintln(st.out, compare.BuildVersions().String())
			return err
		}
	},
}

func main() {
	compare.ServeSessionsChild()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], &stdio{os.Stdin, os.Stdout, os.Stderr})
	stop()
	os.Exit(code)
}

// run runs the command line args and returns the exit status. Help goes to
// stdout and exits 0. A usage error prints the error on one line and a
// pointer to the help on the next, to stderr, and exits 2.
func run(ctx context.Context, args []string, st *stdio) int {
	if len(args) == 0 {
		mainUsage(st.err)
		return exitUsage
	}
	name, args := args[0], args[1:]
	switch name {
	case "help", "-h", "-help", "--help":
		return help(args, st)
	case "-version", "--version":
		name = versionCmd.name
	}
	cmd := lookup(name)
	if cmd == nil {
		return usageFailed(st, "", fmt.Errorf("unknown command %q; commands: %s", name, commandNames()))
	}
	fs, runFn := newFlagSet(cmd)
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			printUsage(st.out, cmd, fs)
			return exitOK
		}
		return usageFailed(st, cmd.name, err)
	}
	if fs.NArg() > 0 {
		return usageFailed(st, cmd.name, fmt.Errorf("unexpected argument %q", fs.Arg(0)))
	}
	if err := runFn(ctx, st); err != nil {
		if ue := (usageError{}); errors.As(err, &ue) {
			return usageFailed(st, cmd.name, ue)
		}
		fmt.Fprintf(st.err, "udplab %s: %v\n", cmd.name, err)
		return exitError
	}
	return exitOK
}

// help is "udplab help [COMMAND]": the command list, or one command's usage.
func help(args []string, st *stdio) int {
	switch len(args) {
	case 0:
		mainUsage(st.out)
		return exitOK
	case 1:
		cmd := lookup(args[0])
		if cmd == nil {
			return usageFailed(st, "help", fmt.Errorf("unknown command %q; commands: %s", args[0], commandNames()))
		}
		fs, _ := newFlagSet(cmd)
		printUsage(st.out, cmd, fs)
		return exitOK
	}
	return usageFailed(st, "help", fmt.Errorf("want one command, got %q", strings.Join(args, " ")))
}

// usageFailed reports a usage error of command cmd ("" for udplab itself)
// and returns exitUsage: the error on one line, then where the usage is.
func usageFailed(st *stdio, cmd string, err error) int {
	prog, helpCmd := "udplab", "udplab --help"
	switch cmd {
	case "":
	case "help":
		prog = "udplab help"
	default:
		prog, helpCmd = "udplab "+cmd, "udplab "+cmd+" --help"
	}
	msg := strings.Join(strings.Fields(strings.ReplaceAll(err.Error(), "\n", " ")), " ")
	fmt.Fprintf(st.err, "%s: %s\nrun '%s' for usage\n", prog, msg, helpCmd)
	return exitUsage
}

// newFlagSet returns cmd's flags and its run function. The flag package
// prints nothing: run reports its errors, and printUsage the help.
func newFlagSet(cmd *command) (*flag.FlagSet, func(context.Context, *stdio) error) {
	fs := flag.NewFlagSet("udplab "+cmd.name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.Usage = func() {}
	return fs, cmd.setFlags(fs)
}

// printUsage writes cmd's whole usage, flags and defaults included, to w.
func printUsage(w io.Writer, cmd *command, fs *flag.FlagSet) {
	fmt.Fprintf(w, "usage: %s\n\n%s\n", strings.TrimSpace("udplab "+cmd.name+" "+cmd.usageLine), strings.TrimSpace(cmd.long))
	n := 0
	fs.VisitAll(func(*flag.Flag) { n++ })
	if n > 0 {
		fmt.Fprint(w, "\nFlags (-flag and --flag both work):\n")
		fs.SetOutput(w)
		fs.PrintDefaults()
		fs.SetOutput(io.Discard)
	}
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
Run 'udplab help <command>' or 'udplab <command> --help' for a command's
flags, and 'udplab --version' for the version.
`)
}
