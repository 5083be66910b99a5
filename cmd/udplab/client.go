package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"time"

	"github.com/udplab/udplab/message"
	"github.com/udplab/udplab/reliable"
)

var clientCmd = &command{
	name:      "client",
	usageLine: "[--mode raw|reliable|reliable-fec] [--addr ADDR] [--timeout D] [reliable flags]",
	short:     "the tutorial client: send names, print greetings",
	long: `Client prompts "Please input your name: ", sends each line as one message and
prints the reply. Empty lines are skipped. "exit" prints the reply and ends
the session; so does the end of input, so piped input works.

The modes are serve's and compare's: raw (bare UDP), reliable (KCP without
FEC) and reliable-fec (KCP with --fec). In raw mode a reply that does not
come within --timeout is reported as lost and the prompt goes on: raw UDP
does not retransmit. KCP retransmits, so in the reliable modes a missing
reply means the server is unreachable, serves another mode, or does not
share the --fec, --crypt and --key settings.`,
	setFlags: func(fs *flag.FlagSet) func(context.Context, *stdio) error {
		var (
			mode, addr string
			timeout    time.Duration
			cfg        reliable.Config
		)
		modeVar(fs, &mode)
		addrVar(fs, &addr, "addr", "", false, "server `ADDR` (default "+defaultAddrs()+")")
		timeoutVar(fs, &timeout)
		reliableFlags(fs, &cfg, false)
		return func(ctx context.Context, st *stdio) error {
			m := lookupMode(mode)
			if err := checkModeFlags(fs, m, &cfg); err != nil {
				return err
			}
			if addr == "" {
				addr = m.defaultAddr
			}
			c, err := m.dial(addr, &cfg)
			if err != nil {
				return err
			}
			defer c.Close()
			return greetLoop(ctx, c, m, timeout, st)
		}
	},
}

const prompt = "Please input your name: "

func greetLoop(ctx context.Context, c message.Conn, m cliMode, timeout time.Duration, st *stdio) error {
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
		reply, err := request(ctx, c, []byte(name), timeout)
		switch {
		case errors.Is(err, os.ErrDeadlineExceeded):
			fmt.Fprintln(st.out, noReply(m, timeout, c.RemoteAddr()))
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

// noReply says what a reply missing for timeout means in mode m.
func noReply(m cliMode, timeout time.Duration, addr net.Addr) string {
	if !m.kcp {
		return fmt.Sprintf("No reply within %v: the request or its reply was lost, and raw UDP does not retransmit.", timeout)
	}
	same := "--crypt and --key"
	if m.fec {
		same = "--fec, " + same
	}
	return fmt.Sprintf("No reply within %v: is a udplab serve --%s server running at %s with the same %s?", timeout, m.name, addr, same)
}

func request(ctx context.Context, c message.Conn, msg []byte, timeout time.Duration) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	return message.RoundTrip(ctx, c, msg)
}
