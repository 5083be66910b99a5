package compare

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"runtime"
	"runtime/debug"
	"strings"
	"sync"
	"time"

	"github.com/udplab/udplab/internal/procstat"
	"github.com/udplab/udplab/message"
	"github.com/udplab/udplab/modes"
)

// The sessions workload's server runs in a child process: this program
// again, started with sessionsEnv holding its sessionSpec. It prints a
// sessionReady line, answers each "stats" line on its stdin with a
// SessionReading line, and closes its server and exits when its stdin ends.
const (
	sessionsEnv   = "UDPLAB_SESSIONS_SERVER"
	statsCommand  = "stats"
	childExitWait = 30 * time.Second // for the child to close its server and exit once its stdin ends
	childWaitIO   = time.Second      // for the child's output to drain once it has exited or been killed
	stderrTail    = 2 << 10          // how much of the child's stderr an error quotes
)

// sessionSpec is what the child serves.
type sessionSpec struct {
	Mode string `json:"mode"`
	// Settings leave out the loggers: a *slog.Logger does not survive
	// JSON, and the child's server logs nothing.
	Settings modes.Settings `json:"settings"`
}

// sessionReady is the child's first line: where it serves, or why it
// cannot.
type sessionReady struct {
	Addr string `json:"addr,omitempty"`
	// Pin is a quic server's certificate fingerprint, which the clients
	// must pin.
	Pin        string  `json:"pin,omitempty"`
	Network    string  `json:"network,omitempty"`
	GOMAXPROCS int     `json:"gomaxprocs,omitempty"`
	OpenFiles  *uint64 `json:"open_files,omitempty"` // its ulimit -n, where known
	Error      string  `json:"error,omitempty"`
}

// ServeSessionsChild makes this process the server of the sessions
// workload when it was started as one: it serves, then exits the process.
// Otherwise it returns at once. Call it first in main, and first in
// TestMain of a test binary whose tests run the workload: the workload
// starts the running executable again as its server, so that the server's
// memory and CPU are measured apart from its clients'.
func ServeSessionsChild() {
	spec, ok := os.LookupEnv(sessionsEnv)
	if !ok {
		return
	}
	// A ^C at the terminal reaches the whole process group: leave it to
	// the parent, which stops the child when it stops measuring.
	signal.Ignore(os.Interrupt)
	os.Exit(serveSessions(spec, os.Stdin, os.Stdout))
}

// serveSessions is the child's life: it serves spec's mode on loopback,
// answers each stats command read from in on out, and returns its exit
// status once in ends.
func serveSessions(spec string, in io.Reader, out io.Writer) int {
	enc := json.NewEncoder(out)
	srv, ready, err := listenSessions(spec)
	if err != nil {
		enc.Encode(sessionReady{Error: err.Error()})
		return 1
	}
	defer srv.Close()
	if enc.Encode(ready) != nil {
		return 1
	}
	sc := bufio.NewScanner(in)
	for sc.Scan() {
		if sc.Text() != statsCommand {
			fmt.Fprintf(os.Stderr, "sessions server: unknown command %q\n", sc.Text())
			return 2
		}
		if enc.Encode(readServer(srv, ready.Network)) != nil {
			return 1
		}
	}
	return 0
}

// listenSessions starts spec's server with the greeting handler on a
// loopback port.
func listenSessions(spec string) (modes.Server, sessionReady, error) {
	var sp sessionSpec
	if err := json.Unmarshal([]byte(spec), &sp); err != nil {
		return nil, sessionReady{}, fmt.Errorf("sessions server: %s: %w", sessionsEnv, err)
	}
	m, err := modes.Lookup(sp.Mode)
	if err != nil {
		return nil, sessionReady{}, err
	}
	tr, err := m.New(&sp.Settings)
	if err != nil {
		return nil, sessionReady{}, err
	}
	srv, err := tr.Listen("127.0.0.1:0", message.Greet)
	if err != nil {
		return nil, sessionReady{}, err
	}
	ready := sessionReady{Addr: srv.Addr().String(), Network: tr.Traits().Network, GOMAXPROCS: runtime.GOMAXPROCS(0)}
	if fp, ok := srv.(interface{ Fingerprint() string }); ok {
		ready.Pin = fp.Fingerprint()
	}
	if n, ok := procstat.OpenFiles(); ok {
		ready.OpenFiles = &n
	}
	return srv, ready, nil
}

// readServer reads this process after a full GC, which also returns what
// it can to the system, so that the resident memory counts what is in use.
// Two GCs: the first moves sync.Pools' contents aside, the second frees
// them.
func readServer(srv modes.Server, network string) SessionReading {
	var r SessionReading
	r.CPUS = cpuSeconds()
	runtime.GC()
	debug.FreeOSMemory()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	r.HeapBytes, r.StackBytes = ms.HeapInuse, ms.StackInuse
	r.Goroutines = runtime.NumGoroutine()
	if n, ok := procstat.RSS(); ok {
		r.RSSBytes = &n
	}
	if n, ok := procstat.SocketMemory(network); ok {
		r.KernelSocketBytes = &n
	}
	r.ServerErrors = srv.Stats().Errors
	r.ReadCPUS = cpuSeconds()
	return r
}

// cpuSeconds is this process's CPU time in seconds, or nil where it is not
// measured: a process that is running has always used some.
func cpuSeconds() *float64 {
	t := cpuTime()
	if t <= 0 {
		return nil
	}
	s := t.Seconds()
	return &s
}

// sessionServer is the parent's handle on the child: its pipes, its
// first line and its stderr's tail.
type sessionServer struct {
	mode   string
	cmd    *exec.Cmd
	in     io.WriteCloser
	out    *json.Decoder
	stderr tailBuffer
	ready  sessionReady

	waitOnce sync.Once
	waitErr  error
}

// startSessionServer starts the child serving mode with s and reads its
// first line. ctx's end kills it. The caller must stop it.
func startSessionServer(ctx context.Context, mode string, s modes.Settings) (*sessionServer, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, fmt.Errorf("sessions: the server runs this program again: %w", err)
	}
	spec, err := specOf(mode, s)
	if err != nil {
		return nil, err
	}
	p := &sessionServer{mode: mode, cmd: exec.CommandContext(ctx, exe)}
	p.cmd.Env = append(os.Environ(), sessionsEnv+"="+spec)
	p.cmd.Stderr = &p.stderr
	p.cmd.WaitDelay = childWaitIO
	if p.in, err = p.cmd.StdinPipe(); err != nil {
		return nil, err
	}
	out, err := p.cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	p.out = json.NewDecoder(out)
	if err := p.cmd.Start(); err != nil {
		return nil, fmt.Errorf("sessions: start %s server: %w", mode, err)
	}
	if err := p.out.Decode(&p.ready); err != nil {
		return nil, p.fail(ctx, err)
	}
	if p.ready.Error != "" {
		return nil, p.fail(ctx, errors.New(p.ready.Error))
	}
	return p, nil
}

// specOf is the child's sessionSpec for mode with s, as sessionsEnv
// carries it.
func specOf(mode string, s modes.Settings) (string, error) {
	s.Logger, s.KCP.Logger = nil, nil
	spec, err := json.Marshal(sessionSpec{Mode: mode, Settings: s})
	if err != nil {
		return "", fmt.Errorf("sessions: %s settings: %w", mode, err)
	}
	return string(spec), nil
}

// read asks the child for a reading.
func (p *sessionServer) read(ctx context.Context) (SessionReading, error) {
	var r SessionReading
	if _, err := io.WriteString(p.in, statsCommand+"\n"); err != nil {
		return r, p.fail(ctx, err)
	}
	if err := p.out.Decode(&r); err != nil {
		return r, p.fail(ctx, err)
	}
	return r, nil
}

// stop ends the child's stdin, so that it closes its server and exits, and
// waits for it: at most childExitWait, then it is killed. It returns why
// the child did not exit cleanly, or ctx's cause when ctx ended first. It
// is safe to call more than once.
func (p *sessionServer) stop(ctx context.Context) error {
	p.in.Close()
	exited := make(chan error, 1)
	go func() { exited <- p.wait() }()
	timer := time.NewTimer(childExitWait)
	defer timer.Stop()
	var err error
	select {
	case err = <-exited:
	case <-timer.C:
		p.cmd.Process.Kill()
		err = <-exited
	}
	if ctx.Err() != nil {
		return context.Cause(ctx)
	}
	if err != nil {
		return fmt.Errorf("sessions: %s server: %w%s", p.mode, err, p.stderr.quote())
	}
	return nil
}

// fail stops the child after err broke the conversation with it, and
// returns err with what the child said, or ctx's cause.
func (p *sessionServer) fail(ctx context.Context, err error) error {
	p.stop(ctx)
	if ctx.Err() != nil {
		return context.Cause(ctx)
	}
	if errors.Is(err, io.EOF) {
		err = errors.New("exited early")
	}
	if state := p.cmd.ProcessState; state != nil && !state.Success() {
		err = fmt.Errorf("%w (%s)", err, state)
	}
	return fmt.Errorf("sessions: %s server: %w%s", p.mode, err, p.stderr.quote())
}

// wait waits for the child once; later calls return the first's error.
func (p *sessionServer) wait() error {
	p.waitOnce.Do(func() { p.waitErr = p.cmd.Wait() })
	return p.waitErr
}

// tailBuffer keeps the last stderrTail bytes written to it. It may be
// written and read from different goroutines.
type tailBuffer struct {
	mu  sync.Mutex
	buf []byte
}

func (b *tailBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.buf = append(b.buf, p...)
	if over := len(b.buf) - stderrTail; over > 0 {
		b.buf = append(b.buf[:0], b.buf[over:]...)
	}
	return len(p), nil
}

// quote is what was written, as the end of an error message: "" when
// nothing was.
func (b *tailBuffer) quote() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	s := strings.TrimSpace(string(b.buf))
	if s == "" {
		return ""
	}
	return ": " + s
}
