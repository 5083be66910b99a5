package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/udplab/udplab/message"
	"github.com/udplab/udplab/raw"
	"github.com/udplab/udplab/reliable"
)

var clientCmd = &command{
	name:      "client",
	usageLine: "[--mode raw|reliable] [--addr ADDR] [--timeout D] [reliable flags]",
	short:     "the tutorial client: send names, print greetings",
	long: `Client prompts "Please input your name: ", sends each line as one message and
prints the reply. Empty lines are skipped. "exit" prints the reply and ends
the session; so does the end of input, so piped input works.

In raw mode a reply that does not come within --timeout is reported as lost
and the prompt goes on: raw UDP does not retransmit. In reliable mode KCP
retransmits, so a missing reply means the server is unreachable or does not
share the --fec, --crypt and --key settings.`,
	setFlags: func(fs *flag.FlagSet) func(context.Context, *stdio) error {
		var (
			mode, addr string
			timeout    time.Duration
			cfg        reliable.Config
		)
		choiceVar(fs, &mode, "mode", modeRaw, []string{modeRaw, modeReliable}, "transport")
		addrVar(fs, &addr, "addr", "", false, "server `ADDR` (default "+defaultRawAddr+" for raw, "+defaultReliableAddr+" for reliable)")
		timeoutVar(fs, &timeout)
		reliableFlags(fs, &cfg, false)
		return func(ctx context.Context, st *stdio) error {
			if err := checkReliable(&cfg); err != nil {
				return err
			}
			if addr == "" {
				addr = defaultAddr(mode)
			}
			c, err := dialMode(mode, addr, &cfg)
			if err != nil {
				return err
			}
			defer c.Close()
			return greetLoop(ctx, c, mode, timeout, st)
		}
	},
}

const prompt = "Please input your name: "

func greetLoop(ctx context.Context, c message.Conn, mode string, timeout time.Duration, st *stdio) error {
	lines := bufio.NewScanner(st.in)
	lines.Buffer(make([]byte, 0, 4096), reliable.MaxMessage)
	for {
		fmt.Fprint(st.out, prompt)
		if !lines.Scan() {
			fmt.Fprintln(st.out)
			if err := lines.Err(); err != nil {
				return fmt.Errorf("reading input: %w", err)
			}
			return nil
		}
		name := strings.TrimSuffix(lines.Text(), "\r")
		if name == "" {
			continue
		}
		reply, err := request(ctx, c, name, timeout)
		switch {
		case errors.Is(err, os.ErrDeadlineExceeded):
			if mode == modeRaw {
				fmt.Fprintf(st.out, "No reply within %v: the request or its reply was lost, and raw UDP does not retransmit.\n", timeout)
			} else {
				fmt.Fprintf(st.out, "No reply within %v: is a reliable server running at %s with the same --fec, --crypt and --key?\n", timeout, c.RemoteAddr())
			}
		case err != nil:
			return err
		default:
			io.WriteString(st.out, string(reply))
			if !strings.HasSuffix(string(reply), "\n") {
				fmt.Fprintln(st.out)
			}
		}
		if name == message.ExitRequest {
			fmt.Fprintf(st.out, "Session is over from the server %s\n", c.RemoteAddr())
			return nil
		}
	}
}

func request(ctx context.Context, c message.Conn, msg string, timeout time.Duration) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	return message.RoundTrip(ctx, c, []byte(msg))
}

// defaultAddr is the serve default for a mode.
func defaultAddr(mode string) string {
	if mode == modeReliable {
		return defaultReliableAddr
	}
	return defaultRawAddr
}

// dialMode opens a client Conn of the given mode.
func dialMode(mode, addr string, cfg *reliable.Config) (message.Conn, error) {
	switch mode {
	case modeRaw:
		return raw.Dial(addr)
	case modeReliable:
		return reliable.Dial(addr, cfg)
	}
	return nil, fmt.Errorf("unknown mode %q", mode)
}
