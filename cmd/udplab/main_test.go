package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net"
	"os"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	quicgo "github.com/quic-go/quic-go"
	"github.com/rogpeppe/go-internal/testscript"
	"go.uber.org/goleak"

	"github.com/udplab/udplab/compare"
	"github.com/udplab/udplab/internal/cliflag"
	"github.com/udplab/udplab/internal/conntest"
	"github.com/udplab/udplab/internal/leakcheck"
	"github.com/udplab/udplab/message"
	"github.com/udplab/udplab/modes"
	"github.com/udplab/udplab/raw"
	"github.com/udplab/udplab/reliable"
)

// leakM runs the tests, then fails the run if any goroutine they started is
// still alive. testscript.Main wants the TestingM it wraps.
type leakM struct{ m *testing.M }

func (l leakM) Run() int {
	code := l.m.Run()
	if code == 0 {
		if err := goleak.Find(leakcheck.Options()...); err != nil {
			fmt.Fprintln(os.Stderr, "goleak:", err)
			return 1
		}
	}
	return code
}

func TestMain(m *testing.M) {
	compare.ServeSessionsChild()
	testscript.Main(leakM{m}, map[string]func(){"udplab": main})
}

// TestScripts runs the txtar scripts in testdata/script against the real
// binary. Every address is on loopback and every wait is bounded.
func TestScripts(t *testing.T) {
	testscript.Run(t, testscript.Params{
		Dir: "testdata/script",
		Cmds: map[string]func(*testscript.TestScript, bool, []string){
			"status":    cmdStatus,
			"freeport":  cmdFreeport,
			"waitready": cmdWaitReady,
			"quicgreet": cmdQUICGreet,
		},
		Condition: func(cond string) (bool, error) {
			if cond == "ipv6" {
				pc, err := net.ListenPacket("udp6", "[::1]:0")
				if err == nil {
					pc.Close()
				}
				return err == nil, nil
			}
			return false, fmt.Errorf("unknown condition %q", cond)
		},
	})
}

// cmdStatus runs udplab in process with the given arguments and no input,
// and checks its exit status: status N ARGS...
func cmdStatus(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) < 1 {
		ts.Fatalf("usage: status CODE [udplab args...]")
	}
	want, err := strconv.Atoi(args[0])
	if err != nil {
		ts.Fatalf("status: bad code %q", args[0])
	}
	got := run(context.Background(), args[1:], &stdio{strings.NewReader(""), ts.Stdout(), ts.Stderr()})
	if got != want {
		ts.Fatalf("udplab %s: exit status %d, want %d", strings.Join(args[1:], " "), got, want)
	}
}

// cmdFreeport sets each named variable to a loopback address whose port
// was free for both UDP and TCP a moment ago: freeport [-6] NAME...
func cmdFreeport(ts *testscript.TestScript, neg bool, args []string) {
	network, addr := "4", "127.0.0.1:0"
	if len(args) > 0 && args[0] == "-6" {
		network, addr, args = "6", "[::1]:0", args[1:]
	}
	for _, name := range args {
		for {
			pc, err := net.ListenPacket("udp"+network, addr)
			ts.Check(err)
			l, err := net.Listen("tcp"+network, pc.LocalAddr().String())
			pc.Close()
			if err != nil {
				continue // taken for TCP: try another
			}
			ts.Setenv(name, l.Addr().String())
			l.Close()
			break
		}
	}
}

// cmdWaitReady sends one "ready?" to ADDR over MODE, with the reliable
// flags given, and waits for the reply, for at most 10s: a server started
// in the background is ready when it answers. Only a refused datagram (raw,
// before the server is bound) is sent again, so the server counts exactly
// one request and one session: waitready MODE ADDR [reliable flags]
func cmdWaitReady(ts *testscript.TestScript, neg bool, args []string) {
	if len(args) < 2 {
		ts.Fatalf("usage: waitready MODE ADDR [mode flags]")
	}
	var settings modes.Settings
	fs := flag.NewFlagSet("waitready", flag.ContinueOnError)
	modes.Flags(fs, &settings, modes.All(), false)
	ts.Check(fs.Parse(args[2:]))
	m, err := modes.Lookup(args[0])
	ts.Check(err)
	tr, err := m.New(&settings)
	ts.Check(err)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := untilListening(ctx, func() (message.Conn, error) { return tr.DialAddr(ctx, args[1]) }, nil)
	ts.Check(err)
	defer c.Close()
	for {
		_, err := message.RoundTrip(ctx, c, []byte("ready?"))
		if !errors.Is(err, syscall.ECONNREFUSED) {
			ts.Check(err)
			return
		}
		time.Sleep(10 * time.Millisecond) // not bound yet; pace the retries
	}
}

// cmdQUICGreet greets a QUIC server with plain quic-go, following only the
// README's protocol: ALPN udplab, one bidirectional stream per request, FIN
// after it, the reply read to the stream's end. It accepts only a server
// certificate with the given SHA-256, and prints each reply quoted:
// quicgreet ADDR SHA256 NAME...
func cmdQUICGreet(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) < 3 {
		ts.Fatalf("usage: quicgreet ADDR SHA256 NAME...")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	tlsConf := &tls.Config{
		NextProtos:         []string{"udplab"},
		InsecureSkipVerify: true, // the pin below is the verification
		VerifyPeerCertificate: func(raw [][]byte, _ [][]*x509.Certificate) error {
			sum := sha256.Sum256(raw[0])
			if got := hex.EncodeToString(sum[:]); got != args[1] {
				return fmt.Errorf("certificate sha256 %s, want %s", got, args[1])
			}
			return nil
		},
	}
	conn, err := quicgo.DialAddr(ctx, args[0], tlsConf, nil)
	ts.Check(err)
	defer conn.CloseWithError(0, "")
	for _, name := range args[2:] {
		s, err := conn.OpenStreamSync(ctx)
		ts.Check(err)
		_, err = s.Write([]byte(name))
		ts.Check(err)
		ts.Check(s.Close()) // FIN: the request is complete
		reply, err := io.ReadAll(s)
		ts.Check(err)
		fmt.Fprintf(ts.Stdout(), "%q\n", reply)
	}
}

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

// newTestTransport returns m's transport with default settings.
func newTestTransport(t testing.TB, m *modes.Mode) modes.Transport {
	t.Helper()
	tr, err := m.New(&modes.Settings{Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	return tr
}

// dialTest opens a client of m to addr.
func dialTest(t testing.TB, m *modes.Mode, addr string) message.Conn {
	t.Helper()
	c, err := newTestTransport(t, m).DialAddr(context.Background(), addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// TestClientSession drives the tutorial client in every mode against real
// servers on loopback.
func TestClientSession(t *testing.T) {
	for _, m := range modes.All() {
		t.Run(m.Name, func(t *testing.T) {
			addr := startServer(t, m, message.Greet)
			c := dialTest(t, m, addr)
			var out bytes.Buffer
			in := "Alice\n\n\r\nBob\r\nexit\nnever sent\n"
			if err := greetLoop(context.Background(), c, m, newTestTransport(t, m).Traits(), 5*time.Second, escaped, &stdio{strings.NewReader(in), &out, io.Discard}); err != nil {
				t.Fatal(err)
			}
			want := prompt + "Hello Alice!\n" + prompt + prompt + prompt + "Hello Bob!\n" + prompt +
				"Good bye!\nSession is over from the server " + addr + "\n"
			if out.String() != want {
				t.Errorf("session output:\n%s\nwant:\n%s", out.String(), want)
			}
		})
	}
}

func TestClientEndOfInput(t *testing.T) {
	rawMode := modes.Raw
	addr := startServer(t, rawMode, message.Greet)
	c := dialTest(t, rawMode, addr)
	var out bytes.Buffer
	if err := greetLoop(context.Background(), c, rawMode, newTestTransport(t, rawMode).Traits(), 5*time.Second, escaped, &stdio{strings.NewReader("Carol"), &out, io.Discard}); err != nil {
		t.Fatal(err)
	}
	if want := prompt + "Hello Carol!\n" + prompt + "\n"; out.String() != want {
		t.Errorf("output = %q, want %q", out.String(), want)
	}
}

// TestClientReportsLoss points the raw client at a socket that never
// answers: the client must say the datagram was lost and keep prompting.
func TestClientReportsLoss(t *testing.T) {
	silent, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer silent.Close()
	rawMode := modes.Raw
	c := dialTest(t, rawMode, silent.LocalAddr().String())
	var out bytes.Buffer
	if err := greetLoop(context.Background(), c, rawMode, newTestTransport(t, rawMode).Traits(), 50*time.Millisecond, escaped, &stdio{strings.NewReader("Dave\n"), &out, io.Discard}); err != nil {
		t.Fatal(err)
	}
	want := prompt + "No reply within 50ms: the request or its reply was lost, and raw does not retransmit.\n" + prompt + "\n"
	if out.String() != want {
		t.Errorf("output = %q, want %q", out.String(), want)
	}
}

// TestChatRefusesLongLines: a line longer than the mode carries is refused
// with a note, and the chat goes on with the next line.
func TestChatRefusesLongLines(t *testing.T) {
	m := modes.Raw
	tr := newTestTransport(t, m).Traits()
	a, b := chatPair(t, m)
	var outA, outB syncBuffer
	inA, feedA := io.Pipe()
	doneA := make(chan error, 1)
	go func() { doneA <- chat(context.Background(), a, m, tr, 0, escaped, &stdio{inA, &outA, io.Discard}) }()
	long := strings.Repeat("x", tr.MaxMessage+1)
	in := strings.NewReader(long + "\nafter\n")
	if err := chat(context.Background(), b, m, tr, 0, escaped, &stdio{in, &outB, io.Discard}); err != nil {
		t.Fatal(err)
	}
	conntest.WaitFor(t, func() bool { return strings.Contains(outA.String(), "after") })
	feedA.Close()
	if err := <-doneA; err != nil {
		t.Error(err)
	}
	if want := fmt.Sprintf(">>>%s: after\n", a.RemoteAddr()); outA.String() != want {
		t.Errorf("A printed %q, want only %q", outA.String(), want)
	}
	if want := tooLong(m, tr, len(long)) + "\n"; outB.String() != want {
		t.Errorf("B printed %q, want %q", outB.String(), want)
	}
}

// TestChat has two chat peers talk in every mode.
func TestChat(t *testing.T) {
	for _, m := range modes.All() {
		t.Run(m.Name, func(t *testing.T) {
			tr := newTestTransport(t, m).Traits()
			a, b := chatPair(t, m)
			var outA, outB syncBuffer
			doneA := make(chan error, 1)
			inA, feedA := io.Pipe()
			go func() { doneA <- chat(context.Background(), a, m, tr, 0, escaped, &stdio{inA, &outA, io.Discard}) }()
			// B says two lines and ends its input; A answers once B's
			// lines have arrived, then ends too.
			doneB := make(chan error, 1)
			inB, feedB := io.Pipe()
			go func() {
				doneB <- chat(context.Background(), b, m, tr, 100*time.Millisecond, escaped, &stdio{inB, &outB, io.Discard})
			}()
			io.WriteString(feedB, "hello\n\nhow are you?\n")
			conntest.WaitFor(t, func() bool { return strings.Count(outA.String(), "\n") == 2 })
			io.WriteString(feedA, "fine\n")
			conntest.WaitFor(t, func() bool { return strings.Contains(outB.String(), "fine") })
			feedA.Close()
			feedB.Close()
			if err := <-doneA; err != nil {
				t.Error(err)
			}
			if err := <-doneB; err != nil {
				t.Error(err)
			}
			if want := fmt.Sprintf(">>>%s: hello\n>>>%s: how are you?\n", a.RemoteAddr(), a.RemoteAddr()); outA.String() != want {
				t.Errorf("A printed %q, want %q", outA.String(), want)
			}
			if want := fmt.Sprintf(">>>%s: fine\n", b.RemoteAddr()); outB.String() != want {
				t.Errorf("B printed %q, want %q", outB.String(), want)
			}
		})
	}
}

// chatPair opens both ends of a chat in mode m on loopback: for a
// connected mode, a listening end that accepts the other's dial.
func chatPair(t *testing.T, m *modes.Mode) (a, b message.Conn) {
	t.Helper()
	tr := newTestTransport(t, m)
	network := tr.Traits().Network
	la, lb := freeAddr(t, network), freeAddr(t, network)
	if !tr.Traits().Connected {
		var err error
		if a, err = tr.Chat(context.Background(), la, lb); err == nil {
			b, err = tr.Chat(context.Background(), lb, la)
		}
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { a.Close(); b.Close() })
		return a, b
	}
	accepted := make(chan message.Conn, 1)
	go func() {
		c, err := tr.Chat(context.Background(), la, "")
		if err != nil {
			t.Error(err)
		}
		accepted <- c
	}()
	ctx, cancel := context.WithTimeout(context.Background(), conntest.Timeout)
	defer cancel()
	var err error
	b, err = openChat(ctx, tr, "", la, &stdio{strings.NewReader(""), io.Discard, io.Discard})
	if err != nil {
		t.Fatal(err)
	}
	// KCP has no handshake: the listener sees the dialer at its first message.
	if err := b.Send(context.Background(), []byte("(joined)")); err != nil {
		t.Fatal(err)
	}
	a = <-accepted
	if a == nil {
		t.FailNow()
	}
	t.Cleanup(func() { a.Close(); b.Close() })
	if got, err := a.Receive(context.Background()); err != nil || string(got) != "(joined)" {
		t.Fatalf("first message = %q, %v", got, err)
	}
	return a, b
}

// freeAddr returns a loopback address free on network ("udp" or "tcp")
// a moment ago.
func freeAddr(t *testing.T, network string) string {
	t.Helper()
	if network == "udp" {
		pc, err := net.ListenPacket("udp4", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer pc.Close()
		return pc.LocalAddr().String()
	}
	l, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// startServer serves h in mode m on a loopback port, and returns its
// address.
func startServer(t *testing.T, m *modes.Mode, h message.Handler) string {
	t.Helper()
	s, err := newTestTransport(t, m).Listen("127.0.0.1:0", h)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s.Addr().String()
}

// runCmd runs udplab in process with args and input, and returns its exit
// status, stdout and stderr.
func runCmd(t *testing.T, input string, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errOut bytes.Buffer
	code = run(context.Background(), args, &stdio{strings.NewReader(input), &out, &errOut})
	return code, out.String(), errOut.String()
}

// TestUsageConventions holds every command to the same conventions: a usage
// error is one line of error and one line pointing to --help, on stderr,
// exit 2; --help, -h and "help CMD" print the whole usage to stdout, exit 0.
func TestUsageConventions(t *testing.T) {
	for _, cmd := range commands {
		t.Run(cmd.name, func(t *testing.T) {
			hint := "run 'udplab " + cmd.name + " --help' for usage\n"
			for _, bad := range [][]string{{"--no-such-flag"}, {"stray"}} {
				code, out, errOut := runCmd(t, "", append([]string{cmd.name}, bad...)...)
				lines := strings.SplitAfter(errOut, "\n")
				if code != exitUsage || out != "" || len(lines) != 3 || lines[2] != "" ||
					!strings.HasPrefix(lines[0], "udplab "+cmd.name+": ") || lines[1] != hint {
					t.Errorf("udplab %s %s: exit %d, stdout %q, stderr %q; want 2, nothing, the error and %q",
						cmd.name, bad[0], code, out, errOut, hint)
				}
			}
			var usage string
			for i, args := range [][]string{{cmd.name, "--help"}, {cmd.name, "-h"}, {"help", cmd.name}} {
				code, out, errOut := runCmd(t, "", args...)
				if code != exitOK || errOut != "" || !strings.HasPrefix(out, "usage: udplab "+cmd.name) {
					t.Errorf("udplab %s: exit %d, stdout %q, stderr %q; want 0 and the usage on stdout",
						strings.Join(args, " "), code, out, errOut)
				}
				if i == 0 {
					usage = out
				} else if out != usage {
					t.Errorf("udplab %s printed another usage than udplab %s --help", strings.Join(args, " "), cmd.name)
				}
			}
		})
	}
}

// TestVersion: --version, -version and the version command print the one
// line compare records, and exit 0.
func TestVersion(t *testing.T) {
	want := compare.BuildVersions().String() + "\n"
	for _, arg := range []string{"--version", "-version", "version"} {
		code, out, errOut := runCmd(t, "", arg)
		if code != exitOK || out != want || errOut != "" {
			t.Errorf("udplab %s: exit %d, stdout %q, stderr %q; want 0 and %q", arg, code, out, errOut, want)
		}
	}
	if code, out, _ := runCmd(t, "", "--help"); code != exitOK || !strings.Contains(out, "udplab --version") {
		t.Errorf("udplab --help: exit %d, stdout %q; want the usage to mention udplab --version", code, out)
	}
}

// TestNumericFlags checks each numeric flag helper's range and the error
// naming it.
func TestNumericFlags(t *testing.T) {
	var (
		n, window int
		seed      uint64
		d, nonNeg time.Duration
		quiet     bool
	)
	fs := flag.NewFlagSet("t", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	cliflag.Int(fs, &n, "n", 5, 1, math.MaxInt, "`N`")
	cliflag.Int(fs, &window, "window", 128, 1, 32768, "`N`")
	cliflag.Uint64(fs, &seed, "seed", 1, "`SEED`")
	var zero int
	cliflag.Int(fs, &zero, "zero", 0, 0, 9, "`N`")
	cliflag.Duration(fs, &d, "d", time.Second, 1, "`D`")
	cliflag.Duration(fs, &nonNeg, "nonneg", time.Second, 0, "`D`")
	cliflag.Bool(fs, &quiet, "quiet", false, "")
	if n != 5 || window != 128 || seed != 1 || d != time.Second || quiet {
		t.Errorf("defaults = %d, %d, %d, %v, %v; want 5, 128, 1, 1s, false", n, window, seed, d, quiet)
	}
	tests := []struct {
		flag, value, err string // err "" means accepted
	}{
		{"n", "1", ""},
		{"n", "0", "want a whole number of at least 1"},
		{"n", "-1", "want a whole number of at least 1"},
		{"n", "abc", "want a whole number of at least 1"},
		{"n", "1.5", "want a whole number of at least 1"},
		{"n", "0x10", "want a whole number of at least 1"},
		{"window", "32768", ""},
		{"window", "0", "want a whole number from 1 to 32768"},
		{"window", "32769", "want a whole number from 1 to 32768"},
		{"seed", "0", ""},
		{"seed", "18446744073709551615", ""},
		{"seed", "-1", "want a whole number from 0 to 18446744073709551615"},
		{"seed", "18446744073709551616", "want a whole number from 0 to 18446744073709551615"},
		{"seed", "abc", "want a whole number from 0 to 18446744073709551615"},
		{"d", "1ns", ""},
		{"d", "0s", "want a positive duration, such as 500ms or 2s"},
		{"d", "soon", "want a positive duration, such as 500ms or 2s"},
		{"nonneg", "0", ""},
		{"nonneg", "-1s", "want a duration of zero or more, such as 500ms or 2s"},
		{"quiet", "maybe", "want true or false, or the flag alone for true"},
	}
	for _, tt := range tests {
		err := fs.Set(tt.flag, tt.value)
		if got := fmt.Sprint(err); (tt.err == "" && err != nil) || (tt.err != "" && got != tt.err) {
			t.Errorf("--%s %s: error %v, want %q", tt.flag, tt.value, err, tt.err)
		}
	}
	if err := fs.Parse([]string{"--quiet"}); err != nil || !quiet {
		t.Errorf("--quiet alone: %v, quiet = %v; want true", err, quiet)
	}
	// PrintDefaults leaves out a zero default, as for the flag package's own.
	var buf bytes.Buffer
	fs.SetOutput(&buf)
	fs.PrintDefaults()
	if strings.Contains(buf.String(), "(default 0)") || !strings.Contains(buf.String(), "(default 128)") {
		t.Errorf("PrintDefaults:\n%s\nwant (default 128) and no (default 0)", buf.String())
	}
}

// TestClientClosedPort points the raw client at a port nothing listens on:
// it must say so and exit 1, not report a lost datagram.
func TestClientClosedPort(t *testing.T) {
	pc, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := pc.LocalAddr().String()
	pc.Close()
	code, out, errOut := runCmd(t, "Dave\nEve\n", "client", "--addr", addr, "--timeout", "10s")
	want := "udplab client: nothing listens at " + addr + " (port closed): connection refused\n"
	if code != exitError || out != prompt || errOut != want {
		t.Errorf("client to closed %s: exit %d, stdout %q, stderr %q; want 1, %q, %q", addr, code, out, errOut, prompt, want)
	}
}

// TestClientRefusesLongLines sends a line one byte over each mode's
// largest message: the client refuses it, naming both sizes, and goes on.
func TestClientRefusesLongLines(t *testing.T) {
	for _, tt := range []struct {
		mode string
		size int
	}{
		{"raw", raw.MaxMessage + 1},
		{"kcp", 2 << 20},
		{"kcp-fec", reliable.MaxMessage + 1},
	} {
		t.Run(tt.mode, func(t *testing.T) {
			m := lookupMode(tt.mode)
			addr := startServer(t, m, message.Greet)
			in := strings.Repeat("a", tt.size) + "\r\nAlice\n"
			code, out, errOut := runCmd(t, in, "client", "--mode", m.Name, "--addr", addr, "--timeout", "10s")
			want := fmt.Sprintf("%sNot sent: that line is %d bytes, and %s carries at most %d bytes in one message.\n%sHello Alice!\n%s\n",
				prompt, tt.size, m.Name, newTestTransport(t, m).Traits().MaxMessage, prompt, prompt)
			if code != exitOK || out != want || errOut != "" {
				t.Errorf("exit %d, stdout %q, stderr %q; want 0 and %q", code, out, errOut, want)
			}
		})
	}
}

// TestLineReader reads lines around the limit, with and without "\r", and
// a long line, of which it must keep no more than the limit and one byte.
func TestLineReader(t *testing.T) {
	const limit = 5
	lr := newLineReader(strings.NewReader("abcde\nabcdef\nabcde\r\nabcdef\r\n\r\n\n"+strings.Repeat("x", 1<<20)+"\nend"), limit)
	for _, want := range []struct {
		line string
		size int
	}{
		{"abcde", 5}, {"", 6}, {"abcde", 5}, {"", 6}, {"", 0}, {"", 0}, {"", 1 << 20}, {"end", 3},
	} {
		line, size, err := lr.next()
		if err != nil || string(line) != want.line || size != want.size {
			t.Errorf("next() = %q, %d, %v; want %q, %d", line, size, err, want.line, want.size)
		}
		if cap(lr.buf) > limit+1 {
			t.Errorf("after a line of %d bytes the reader holds %d, want at most %d", want.size, cap(lr.buf), limit+1)
		}
	}
	if _, _, err := lr.next(); err != io.EOF {
		t.Errorf("next() at the end = %v, want io.EOF", err)
	}
}

// TestModeFlags: the reliable flags go with the modes that use them, and
// reliable-fec always has FEC.
func TestModeFlags(t *testing.T) {
	for _, tt := range []struct {
		args []string
		err  string
	}{
		{[]string{"client", "--fec", "4,2"}, "udplab client: --fec applies to fec and kcp-fec, and --mode is raw\n"},
		{[]string{"client", "--key", "k"}, "udplab client: --key applies to kcp and kcp-fec, and --mode is raw\n"},
		{[]string{"client", "--mode", "reliable", "--fec", "4,2"}, "udplab client: --fec applies to fec and kcp-fec, and --mode is kcp\n"},
		{[]string{"client", "--mode", "tcp", "--profile", "fast"}, "udplab client: --profile applies to kcp and kcp-fec, and --mode is tcp\n"},
		{[]string{"client", "--mode", "reliable-fec", "--fec", "0,0"}, "udplab client: kcp-fec: fec 0,0 leaves kcp-fec without FEC: give shards such as 10,3, or use kcp (KCP without FEC)\n"},
		{[]string{"chat", "--mode", "kcp", "--peer", "127.0.0.1:7000", "--fec", "4,2"}, "udplab chat: --fec applies to fec and kcp-fec, and --mode is kcp\n"},
		{[]string{"chat", "--mode", "kcp-fec", "--listen", "127.0.0.1:7000", "--peer", "127.0.0.1:7001"}, "udplab chat: kcp-fec chat takes --listen (to accept a peer) or --peer (to dial one), not both\n"},
		{[]string{"chat", "--mode", "tcp", "--listen", "127.0.0.1:7000", "--peer", "127.0.0.1:7001"}, "udplab chat: tcp chat takes --listen (to accept a peer) or --peer (to dial one), not both\n"},
		{[]string{"serve", "--raw", "off", "--fec-addr", "off", "--reliable", "off", "--reliable-fec", "off", "--kcp-rt", "off", "--tcp", "off", "--quic", "off"}, "udplab serve: every listener is off (--raw, --fec-addr, --kcp, --kcp-fec, --kcp-rt, --tcp, --quic): nothing to serve\n"},
		{[]string{"serve", "--reliable", "off", "--kcp-fec", "off", "--mtu", "1400"}, "udplab serve: --mtu applies to kcp and kcp-fec, and those listeners are off\n"},
		{[]string{"serve", "--kcp-fec", "off", "--fec-addr", "off", "--fec", "4,2"}, "udplab serve: --fec applies to fec and kcp-fec, and those listeners are off\n"},
		{[]string{"serve", "--fec-addr", "off", "--fec", "0,0"}, "udplab serve: kcp-fec: fec 0,0 leaves kcp-fec without FEC: give shards such as 10,3, or use kcp (KCP without FEC)\n"},
		{[]string{"serve", "--fec", "0,0"}, "udplab serve: fec: fec 0,0 leaves fec without parity: give shards such as 10,3, or use raw\n"},
		{[]string{"chat", "--mode", "quic", "--listen", "127.0.0.1:7000", "--peer", "127.0.0.1:7001"}, "udplab chat: quic chat takes --listen (to accept a peer) or --peer (to dial one), not both\n"},
		{[]string{"chat", "--mode", "fec", "--listen", "127.0.0.1:7000"}, "udplab chat: fec chat needs both --listen and --peer\n"},
	} {
		code, out, errOut := runCmd(t, "", tt.args...)
		want := tt.err + "run 'udplab " + tt.args[0] + " --help' for usage\n"
		if code != exitUsage || out != "" || errOut != want {
			t.Errorf("udplab %s: exit %d, stdout %q, stderr %q; want 2 and %q", strings.Join(tt.args, " "), code, out, errOut, want)
		}
	}
}

// dropServer is a server whose socket drop count is given.
type dropServer struct {
	modes.Server
	drops uint64
	known bool
}

func (d dropServer) SocketDrops() (uint64, bool) { return d.drops, d.known }
func (d dropServer) Stats() message.ServerStats  { return message.ServerStats{Requests: 3} }
func (d dropServer) Summary() []any              { return []any{"sessions", 1} }

// TestSummarySocketDrops: serve's summary gives the socket's drop count,
// and "unknown", never 0, where the kernel does not say.
func TestSummarySocketDrops(t *testing.T) {
	for _, tt := range []struct {
		srv  dropServer
		want any
	}{
		{dropServer{drops: 7, known: true}, uint64(7)},
		{dropServer{drops: 0, known: true}, uint64(0)},
		{dropServer{known: false}, "unknown"},
	} {
		got := listener{"raw", tt.srv}.summary()
		want := []any{"mode", "raw", "requests", uint64(3), "replies", uint64(0), "bad_requests", uint64(0),
			"oversized", uint64(0), "errors", uint64(0), "sessions", 1, "socket_drops", tt.want}
		if !slices.Equal(got, want) {
			t.Errorf("summary with SocketDrops %d, %v = %v; want %v", tt.srv.drops, tt.srv.known, got, want)
		}
	}
}
