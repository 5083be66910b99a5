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
	"syscall"
	"time"

	"github.com/udplab/udplab/internal/cliflag"
	"github.com/udplab/udplab/message"
	"github.com/udplab/udplab/modes"
)

var clientCmd = &command{
	name:      "client",
	usageLine: "[--mode MODE] [--addr ADDR] [--timeout D] [mode flags]",
	short:     "the tutorial client: send names, print greetings",
	long: `Client prompts "Please input your name: ", sends each line as one message and
prints the reply. Empty lines are skipped, and a line longer than the mode's
largest message is refused. "exit" prints the reply and ends the session;
so does the end of input, so piped input works.

The modes are serve's and compare's: ` + modeList() + `.
In raw mode a reply that does not come within --timeout is reported as lost
and the prompt goes on: raw UDP does not retransmit; but a port nothing
listens on (the kernel reports the port closed) ends the client with exit
status 1. fec does not retransmit either: parity rebuilds some losses, and
the server must share --fec. KCP retransmits, so in the KCP modes a
missing reply means the server is unreachable or does not share the
--fec, --crypt and --key settings. tcp connects first, and fails at once
if nothing listens. quic connects first too (TLS 1.3): it verifies the
server's certificate by --pin, or, on a loopback address without --pin,
accepts it with a warning; it gives up after 5s when nothing answers.

Replies are shown escaped as Go's %q escapes them (ESC as \x1b, a newline
inside a reply as \n), so a server cannot drive the terminal;
--raw-output prints them as they came.`,
	setFlags: func(fs *flag.FlagSet) func(context.Context, *stdio) error {
		var (
			mode, addr string
			timeout    time.Duration
			rawOutput  bool
			settings   modes.Settings
		)
		modeVar(fs, &mode)
		cliflag.Addr(fs, &addr, "addr", "", false, "server `ADDR` (default "+defaultAddrs()+")")
		timeoutVar(fs, &timeout)
		rawOutputVar(fs, &rawOutput)
		modes.Flags(fs, &settings, modes.All(), false)
		return func(ctx context.Context, st *stdio) error {
			m := lookupMode(mode)
			if err := checkModeFlags(fs, []*modes.Mode{m}, false, "--mode is "+m.Name); err != nil {
				return err
			}
			settings.Logger = newLogger(st, "warn") // such as an unverified certificate
			tr, err := newTransport(m, &settings)
			if err != nil {
				return err
			}
			if addr == "" {
				addr = m.DefaultAddr
			}
			tm := textMode(rawOutput)
			c, err := tr.DialAddr(ctx, addr)
			if err != nil {
				return tm.err(err)
			}
			defer c.Close()
			return tm.err(greetLoop(ctx, c, m, tr.Traits(), timeout, tm, st))
		}
	},
}

const prompt = "Please input your name: "

func greetLoop(ctx context.Context, c message.Conn, m *modes.Mode, t modes.Traits, timeout time.Duration, tm textMode, st *stdio) error {
	lines := newLineReader(st.in, t.MaxMessage)
	for {
		fmt.Fprint(st.out, prompt)
		line, size, err := lines.next()
		switch {
		case err != nil:
			fmt.Fprintln(st.out)
			if errors.Is(err, io.EOF) {
				return nil
			}
			return fmt.Errorf("reading input: %w", err)
		case size > t.MaxMessage:
			fmt.Fprintln(st.out, tooLong(m, t, size))
			continue
		case size == 0:
			continue
		}
		if err := greet(ctx, c, m, t, line, timeout, tm, st.out); err != nil {
			return err
		}
		if string(line) == message.ExitRequest {
			fmt.Fprintf(st.out, "Session is over from the server %s\n", c.RemoteAddr())
			return nil
		}
	}
}

// tooLong says why a line of size bytes was not sent.
func tooLong(m *modes.Mode, t modes.Traits, size int) string {
	return fmt.Sprintf("Not sent: that line is %d bytes, and %s carries at most %d bytes in one message.", size, m.Name, t.MaxMessage)
}

// greet sends line and prints the reply, or why none came. A closed port
// is an error: no later line would be answered either.
func greet(ctx context.Context, c message.Conn, m *modes.Mode, t modes.Traits, line []byte, timeout time.Duration, tm textMode, out io.Writer) error {
	reply, err := request(ctx, c, line, timeout)
	switch {
	case errors.Is(err, syscall.ECONNREFUSED):
		return fmt.Errorf("nothing listens at %s (port closed): %w", c.RemoteAddr(), syscall.ECONNREFUSED)
	case errors.Is(err, os.ErrDeadlineExceeded):
		fmt.Fprintln(out, noReply(m, t, timeout, c.RemoteAddr()))
	case err != nil:
		return err
	default:
		io.WriteString(out, tm.line(reply))
	}
	return nil
}

// lineReader reads lines of any length and keeps at most max+1 bytes of
// one: a longer line is read to its end and reported by its size only.
type lineReader struct {
	r    *bufio.Reader
	max  int
	buf  []byte
	size int  // bytes in the line so far, without its "\n"
	last byte // the line's last byte so far
}

func newLineReader(r io.Reader, limit int) *lineReader {
	return &lineReader{r: bufio.NewReader(r), max: limit}
}

// next returns the next line without its "\n" or "\r\n", and its size in
// bytes. When size > max the line is not returned. The line is valid until
// the next call. At the end of input, a last line without a newline is
// returned; then the error is io.EOF.
func (lr *lineReader) next() (line []byte, size int, err error) {
	lr.buf, lr.size, lr.last = lr.buf[:0], 0, 0
	for {
		chunk, err := lr.r.ReadSlice('\n')
		switch {
		case err == nil:
			lr.add(chunk[:len(chunk)-1])
			return lr.line()
		case errors.Is(err, bufio.ErrBufferFull):
			lr.add(chunk)
		case errors.Is(err, io.EOF) && lr.size+len(chunk) > 0:
			lr.add(chunk)
			return lr.line()
		default:
			return nil, 0, err
		}
	}
}

// add counts chunk into the line, keeping no more than max+1 bytes.
func (lr *lineReader) add(chunk []byte) {
	if len(chunk) == 0 {
		return
	}
	lr.size += len(chunk)
	lr.last = chunk[len(chunk)-1]
	if keep := min(len(chunk), lr.max+1-len(lr.buf)); keep > 0 {
		lr.buf = appendCapped(lr.buf, chunk[:keep], lr.max+1)
	}
}

// line ends the line: without a trailing "\r", and nil if it is too long.
func (lr *lineReader) line() ([]byte, int, error) {
	size := lr.size
	if lr.last == '\r' {
		size--
	}
	if size > lr.max {
		return nil, size, nil
	}
	return lr.buf[:size], size, nil
}

// appendCapped appends b to buf, growing it to at most capacity bytes.
func appendCapped(buf, b []byte, capacity int) []byte {
	if len(buf)+len(b) > cap(buf) {
		grown := make([]byte, len(buf), min(max(2*cap(buf), len(buf)+len(b), 4096), capacity))
		copy(grown, buf)
		buf = grown
	}
	return append(buf, b...)
}

// noReply says what a reply missing for timeout means in mode m.
func noReply(m *modes.Mode, t modes.Traits, timeout time.Duration, addr net.Addr) string {
	same := ""
	if len(m.Agree) > 0 {
		same = " with the same " + andList(m.Agree, "--")
	}
	if t.Delivery == modes.Unreliable {
		msg := fmt.Sprintf("No reply within %v: the request or its reply was lost, and %s does not retransmit.", timeout, m.Name)
		if same != "" {
			msg += fmt.Sprintf(" (Or the server at %s does not run%s.)", addr, same)
		}
		return msg
	}
	return fmt.Sprintf("No reply within %v: is a udplab serve --%s server running at %s%s?", timeout, m.ListenFlag(), addr, same)
}

func request(ctx context.Context, c message.Conn, msg []byte, timeout time.Duration) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	return message.RoundTrip(ctx, c, msg)
}
