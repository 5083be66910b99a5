package compare

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/udplab/udplab/internal/procstat"
	"github.com/udplab/udplab/message"
	"github.com/udplab/udplab/modes"
)

// SessionStats is what holding N concurrent idle sessions cost one mode's
// server. The server runs in a child process, so that its figures leave out
// the clients, which run in this one; every figure but the kernel's socket
// memory is read inside that process. Per-session figures are the change
// from the reading before any session opened to the one after the hold,
// divided by Opened; they are zero when nothing opened (Failed says why).
// A figure the platform does not give is nil: null in JSON.
type SessionStats struct {
	Mode string `json:"mode"`
	// Sessions is how many concurrent sessions were asked for.
	Sessions int `json:"sessions"`
	// Opened is how many were opened and answered a greeting: the sessions
	// the server held during the hold.
	Opened int `json:"opened"`
	// Held is how many of them answered a second greeting after the hold,
	// so the server had kept them all along.
	Held int `json:"held"`
	// OpenS is how long opening and greeting them took, in seconds, with
	// Workers opening at a time.
	OpenS float64 `json:"open_s"`
	// Workers is how many sessions were opened at a time.
	Workers int `json:"workers"`
	// HoldS is how long they were held idle, between the readings after
	// opening and after the hold, in seconds.
	HoldS float64 `json:"hold_s"`

	// HeapBytesPerSession is the runtime heap in use after a full GC.
	HeapBytesPerSession float64 `json:"heap_bytes_per_session"`
	// StackBytesPerSession is the goroutine stacks in use: where a
	// goroutine per session costs, beyond the heap.
	StackBytesPerSession float64 `json:"stack_bytes_per_session"`
	// RSSBytesPerSession is the process's resident memory (VmRSS) after the
	// GC returned what it could to the system: the heap and stacks, the
	// runtime's own, and what the GC keeps.
	RSSBytesPerSession *float64 `json:"rss_bytes_per_session"`
	// GoroutinesPerSession is the server's goroutines.
	GoroutinesPerSession float64 `json:"goroutines_per_session"`
	// IdleCPUPerSession is the CPU time the server process used during the
	// hold, per second of it, less ServerBaselineCPU: a share of one core
	// per session.
	IdleCPUPerSession *float64 `json:"idle_cpu_per_session"`
	// ServerBaselineCPU is the server's CPU per second with no session,
	// watched for a second (or the hold, if shorter) before the sessions
	// opened: a share of one core; nil where unknown or without a hold.
	ServerBaselineCPU *float64 `json:"server_baseline_cpu"`
	// ClientIdleCPUPerSession is the same for this process, which holds
	// the clients' ends, for comparison: both share the machine's cores.
	ClientIdleCPUPerSession *float64 `json:"client_idle_cpu_per_session"`
	// MachineCPUBusy is the share of all the machine's CPU time that was
	// busy during the hold, from 0 to 1, whoever used it; nil where
	// unknown (outside Linux).
	MachineCPUBusy *float64 `json:"machine_cpu_busy"`
	// CPUSaturated is true when the CPU ran short during the hold: the
	// server used at least saturatedShare of its GOMAXPROCS cores, or the
	// machine's CPUs were that busy (where unknown: the server and the
	// clients used that share of them). The per-session CPU is then a
	// floor: with more CPU the sessions would have taken more.
	CPUSaturated bool `json:"cpu_saturated"`
	// KernelSocketTable names the line of /proc/net/sockstat that
	// KernelSocketBytesPerSession reads: "TCP" or "UDP", by the mode's
	// network.
	KernelSocketTable string `json:"kernel_socket_table"`
	// KernelSocketBytesPerSession is the kernel's memory for that
	// protocol's sockets (sockstat's mem, in pages, times the page size).
	// It is system-wide: both ends of each loopback conversation, and any
	// other program's sockets, are in it. A UDP mode's server has one
	// socket and its clients one each, so there it is mostly the clients';
	// TCP frees an idle socket's memory. Nil where unknown (outside Linux).
	KernelSocketBytesPerSession *float64 `json:"kernel_socket_bytes_per_session"`

	// ServerGOMAXPROCS is the server process's GOMAXPROCS.
	ServerGOMAXPROCS int `json:"server_gomaxprocs"`
	// Baseline, AfterOpen and AfterHold are the server's readings: with
	// the server listening and no session, after opening them, and after
	// the hold.
	Baseline  SessionReading `json:"baseline"`
	AfterOpen SessionReading `json:"after_open"`
	AfterHold SessionReading `json:"after_hold"`

	// Failed says why not every session asked for was opened and held,
	// and is empty when all were.
	Failed string `json:"failed,omitempty"`
}

// SessionReading is one reading of the sessions server's process.
type SessionReading struct {
	// HeapBytes is the runtime's heap in use (HeapInuse) after a full GC.
	HeapBytes uint64 `json:"heap_bytes"`
	// StackBytes is the goroutine stacks in use (StackInuse).
	StackBytes uint64 `json:"stack_bytes"`
	// RSSBytes is the process's resident memory, nil where unknown.
	RSSBytes *uint64 `json:"rss_bytes"`
	// KernelSocketBytes is the kernel's memory for every socket of the
	// mode's protocol, system-wide (see SessionStats), nil where unknown.
	KernelSocketBytes *uint64 `json:"kernel_socket_bytes"`
	Goroutines        int     `json:"goroutines"`
	// CPUS is the CPU time the process had used when the reading began,
	// and ReadCPUS when it ended, in seconds: the reading's GC lies between
	// them, so it is left out of the hold's. Nil where unknown.
	CPUS     *float64 `json:"cpu_s"`
	ReadCPUS *float64 `json:"read_cpu_s"`
	// ServerErrors counts the socket errors the server survived, such as
	// running out of file descriptors.
	ServerErrors uint64 `json:"server_errors"`
}

// The sessions workload's tuning, each with the reason for its value.
const (
	// sessionWorkers is how many sessions open at once: a new KCP
	// session's greeting waits a client tick (10 ms) for the server's
	// probe to be acknowledged, so opening is bound by round trips, not
	// CPU, until well over a hundred are on their way. A mode whose
	// server queues fewer handshaken connections for accepting
	// (Traits.AcceptQueue: quic-go's 32) opens no more than that at once:
	// a session is not open until its greeting is answered, which needs it
	// accepted, so the queue cannot overflow.
	sessionWorkers = 128
	// sessionTimeout bounds opening and greeting one session: far beyond a
	// loopback handshake's milliseconds even when sessionWorkers of them
	// queue for a CPU that ticks ten thousand KCP sessions.
	sessionTimeout = 15 * time.Second
	// greetResend is how long an unreliable mode's greeting waits for its
	// reply before it is sent again: loopback answers in microseconds, so
	// a second's silence means the datagram was lost.
	greetResend = time.Second
	// sessionIdleMargin is how much longer than the hold a server keeps a
	// silent session when the settings leave Idle unset: room for opening
	// every session before the hold begins.
	sessionIdleMargin = 10 * time.Minute
	// saturatedShare is the share of the cores above which the CPU counts
	// as saturated: a server left wanting CPU cannot quite reach all of it
	// (the readings, the scheduler, other processes take some).
	saturatedShare = 0.9
)

// measureSessions starts mode's server in a child process on loopback, opens n
// conversations to it from this process, greets once on each, holds them idle for
// hold, and reads the server's memory, goroutines and CPU before, after opening
// and after the hold.
//
// Each conversation has its own socket. The server's Idle and MaxSessions,
// when s leaves them zero, are set so that it neither reaps nor refuses a
// session; values s sets are kept, so a server that cannot hold n sessions
// shows in Failed. progress, if not nil, is called with the count of open
// sessions as each opens, on the calling goroutine. The error is for a
// measurement that could not be made: ctx's cause, or a server that failed
// to start or died.
func measureSessions(ctx context.Context, mode string, s modes.Settings, n int, hold time.Duration, progress func(opened int)) (*SessionStats, error) {
	m, err := modes.Lookup(mode)
	if err != nil {
		return nil, err
	}
	if n < 1 {
		return nil, fmt.Errorf("sessions %d: want 1 or more", n)
	}
	s = sessionSettings(s, n, hold)
	srv, err := startSessionServer(ctx, m.Name, s)
	if err != nil {
		return nil, err
	}
	st, err := holdSessions(ctx, m, s, srv, n, hold, progress)
	if stopErr := srv.stop(ctx); err == nil {
		err = stopErr
	}
	if err != nil {
		return nil, err
	}
	return st, nil
}

// sessionSettings fills what s leaves unset so that a server holds n
// sessions through hold: room for n, and an idle timeout beyond the hold.
func sessionSettings(s modes.Settings, n int, hold time.Duration) modes.Settings {
	if s.MaxSessions == 0 {
		s.MaxSessions = n
	}
	if s.Idle == 0 {
		s.Idle = hold + sessionIdleMargin
	}
	return s
}

// holdSessions is measureSessions' part with the server running: read,
// open, read, hold, read, greet again, close.
func holdSessions(ctx context.Context, m *modes.Mode, s modes.Settings, srv *sessionServer, n int, hold time.Duration, progress func(int)) (*SessionStats, error) {
	if srv.ready.Pin != "" {
		s.QUIC.Pin = srv.ready.Pin
	}
	tr, err := m.New(&s)
	if err != nil {
		return nil, err
	}
	t := tr.Traits()
	st := &SessionStats{Mode: m.Name, Sessions: n, ServerGOMAXPROCS: srv.ready.GOMAXPROCS,
		KernelSocketTable: strings.ToUpper(t.Network)} // sockstat's lines are TCP: and UDP:
	// The first reading builds what readings use (the encoder's buffers,
	// the status file's); the second is the baseline.
	if _, err := srv.read(ctx); err != nil {
		return nil, err
	}
	if st.Baseline, err = srv.read(ctx); err != nil {
		return nil, err
	}
	if err := st.idleBaseline(ctx, srv, min(hold, baselineHold)); err != nil {
		return nil, err
	}
	o := &opener{tr: tr, addr: srv.ready.Addr, n: n, size: digits(n - 1), resend: t.Delivery == modes.Unreliable,
		workers: openWorkers(t)}
	st.Workers = o.workers
	defer o.closeAll()
	begin := time.Now()
	openErr := o.openAll(ctx, progress)
	st.OpenS, st.Opened = time.Since(begin).Seconds(), o.opened()
	if err := context.Cause(ctx); ctx.Err() != nil {
		return nil, err
	}
	clientCPU, err := st.hold(ctx, srv, hold)
	if err != nil {
		return nil, err
	}
	heldErr := o.greetAll(ctx)
	if err := context.Cause(ctx); ctx.Err() != nil {
		return nil, err
	}
	st.Held = o.opened()
	st.perSession(clientCPU, hold > 0)
	st.Failed = st.failure(openErr, heldErr, s, srv.ready)
	return st, nil
}

// hold reads the server, waits d with the sessions idle and reads it
// again, and the machine's CPU meanwhile; it returns the CPU time this
// process, the clients', used.
func (st *SessionStats) hold(ctx context.Context, srv *sessionServer, d time.Duration) (clientCPU time.Duration, err error) {
	if st.AfterOpen, err = srv.read(ctx); err != nil {
		return 0, err
	}
	machine, known := procstat.MachineCPU()
	cpu, begin := cpuTime(), time.Now()
	if err := sleep(ctx, d); err != nil {
		return 0, err
	}
	st.HoldS, clientCPU = time.Since(begin).Seconds(), cpuTime()-cpu
	if now, ok := procstat.MachineCPU(); ok && known && d > 0 {
		if busy, ok := now.BusySince(machine); ok {
			st.MachineCPUBusy = &busy
		}
	}
	if st.AfterHold, err = srv.read(ctx); err != nil {
		return 0, err
	}
	return clientCPU, nil
}

// baselineHold is how long the server is watched with no session, for the
// CPU it spends with nothing to serve: its runtime's and its transport's
// own timers.
const baselineHold = time.Second

// idleBaseline watches the server with no session for d and keeps the CPU
// it used per second, which the hold's figure leaves out: at a hundred
// sessions the server's own ticking would otherwise pass for theirs.
func (st *SessionStats) idleBaseline(ctx context.Context, srv *sessionServer, d time.Duration) error {
	if d <= 0 || st.Baseline.ReadCPUS == nil {
		return nil
	}
	begin := time.Now()
	if err := sleep(ctx, d); err != nil {
		return err
	}
	took := time.Since(begin).Seconds()
	r, err := srv.read(ctx)
	if err != nil || r.CPUS == nil {
		return err
	}
	rate := (*r.CPUS - *st.Baseline.ReadCPUS) / took
	st.ServerBaselineCPU = &rate
	return nil
}

// sleep waits d, or until ctx ends, when it returns ctx's cause.
func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return context.Cause(ctx)
	}
}

// perSession divides the readings' changes among the opened sessions;
// clientCPU is this process's CPU time during the hold. Without a hold
// (held false) the CPU is left unknown: the instant between two readings
// measures nothing.
func (st *SessionStats) perSession(clientCPU time.Duration, held bool) {
	if st.Opened == 0 {
		return
	}
	n := float64(st.Opened)
	b, a := &st.Baseline, &st.AfterHold
	st.HeapBytesPerSession = (float64(a.HeapBytes) - float64(b.HeapBytes)) / n
	st.StackBytesPerSession = (float64(a.StackBytes) - float64(b.StackBytes)) / n
	st.GoroutinesPerSession = float64(a.Goroutines-b.Goroutines) / n
	st.RSSBytesPerSession = optDelta(a.RSSBytes, b.RSSBytes, n)
	st.KernelSocketBytesPerSession = optDelta(a.KernelSocketBytes, b.KernelSocketBytes, n)
	if held {
		st.idleCPU(clientCPU)
	}
}

// idleCPU divides the hold's CPU time, the server's from its readings and
// the clients' given, among the opened sessions and seconds of the hold,
// and says whether the CPU ran short.
func (st *SessionStats) idleCPU(clientCPU time.Duration) {
	if st.AfterOpen.ReadCPUS == nil || st.AfterHold.CPUS == nil {
		return
	}
	n := float64(st.Opened)
	server := *st.AfterHold.CPUS - *st.AfterOpen.ReadCPUS
	rate := server / st.HoldS
	if st.ServerBaselineCPU != nil {
		rate = max(0, rate-*st.ServerBaselineCPU)
	}
	idle := rate / n
	st.IdleCPUPerSession = &idle
	if clientCPU > 0 {
		client := clientCPU.Seconds() / st.HoldS / n
		st.ClientIdleCPUPerSession = &client
	}
	busy := (server + clientCPU.Seconds()) / st.HoldS / float64(runtime.NumCPU())
	if st.MachineCPUBusy != nil {
		busy = *st.MachineCPUBusy
	}
	st.CPUSaturated = server >= saturatedShare*st.HoldS*float64(st.ServerGOMAXPROCS) || busy >= saturatedShare
}

// optDelta is (after - before) / n, or nil when either is unknown.
func optDelta(after, before *uint64, n float64) *float64 {
	if after == nil || before == nil {
		return nil
	}
	d := (float64(*after) - float64(*before)) / n
	return &d
}

// failure says why not every session was opened and held, or "" when all
// were: the first error of each phase, and what limited it.
func (st *SessionStats) failure(openErr, heldErr error, s modes.Settings, ready sessionReady) string {
	var msg string
	if st.Opened < st.Sessions {
		msg = fmt.Sprintf("opened %d of %d: %v", st.Opened, st.Sessions, openErr)
		if errors.Is(openErr, syscall.EMFILE) {
			if limit, ok := procstat.OpenFiles(); ok {
				msg += fmt.Sprintf("; the clients' process may open %d files (ulimit -n)", limit)
			}
		}
		if s.MaxSessions < st.Sessions {
			msg += fmt.Sprintf("; the server keeps at most %d sessions (max sessions)", s.MaxSessions)
		}
		if errs := st.AfterOpen.ServerErrors - st.Baseline.ServerErrors; errs > 0 {
			msg += fmt.Sprintf("; the server had %d socket errors", errs)
			if ready.OpenFiles != nil {
				msg += fmt.Sprintf(" and may open %d files (ulimit -n)", *ready.OpenFiles)
			}
		}
	}
	if st.Held < st.Opened {
		if msg != "" {
			msg += "; "
		}
		msg += fmt.Sprintf("%d of the %d opened no longer answered after the %.3gs hold: %v", st.Opened-st.Held, st.Opened, st.HoldS, heldErr)
	}
	return msg
}

// opener opens and holds the sessions' conversations, each on its own
// socket, named by its index.
type opener struct {
	tr      modes.Transport
	addr    string
	n       int
	size    int  // a name's length: the largest index's digits
	resend  bool // the mode may lose a greeting: send it again after greetResend
	workers int  // how many to open, greet or close at a time

	conns []message.Conn // by index; nil where none is open
}

// openWorkers is how many sessions of a mode with traits t open at a
// time.
func openWorkers(t modes.Traits) int {
	if t.AcceptQueue > 0 {
		return min(sessionWorkers, t.AcceptQueue)
	}
	return sessionWorkers
}

// opened counts the open conversations.
func (o *opener) opened() int {
	k := 0
	for _, c := range o.conns {
		if c != nil {
			k++
		}
	}
	return k
}

// openAll opens and greets n conversations, o.workers at a time,
// calling progress as each opens. After the first failure it opens no
// more, and returns that failure once the ones already begun have ended.
func (o *opener) openAll(ctx context.Context, progress func(int)) error {
	o.conns = make([]message.Conn, o.n)
	var first error
	opened := 0
	inParallel(o.n, o.workers, func(i int) error {
		c, err := o.open(ctx, i)
		o.conns[i] = c
		return err
	}, func(i int, err error) bool {
		if err != nil {
			if first == nil {
				first = fmt.Errorf("session %d: %w", i, err)
			}
			return false
		}
		opened++
		if progress != nil {
			progress(opened)
		}
		return ctx.Err() == nil
	})
	return first
}

// open dials conversation i and greets on it, within sessionTimeout.
func (o *opener) open(ctx context.Context, i int) (message.Conn, error) {
	ctx, cancel := context.WithTimeout(ctx, sessionTimeout)
	defer cancel()
	c, err := o.tr.DialAddr(ctx, o.addr)
	if err != nil {
		return nil, err
	}
	if err := o.greet(ctx, c, i); err != nil {
		c.Close()
		return nil, err
	}
	return c, nil
}

// greetAll greets again on every open conversation, closing and
// forgetting those that do not answer, and returns the first failure.
func (o *opener) greetAll(ctx context.Context) error {
	var first error
	inParallel(o.n, o.workers, func(i int) error {
		c := o.conns[i]
		if c == nil {
			return nil
		}
		ctx, cancel := context.WithTimeout(ctx, sessionTimeout)
		defer cancel()
		if err := o.greet(ctx, c, i); err != nil {
			c.Close()
			o.conns[i] = nil
			return err
		}
		return nil
	}, func(i int, err error) bool {
		if err != nil && first == nil {
			first = fmt.Errorf("session %d: %w", i, err)
		}
		return true
	})
	return first
}

// greet sends conversation i's name and reads the exact reply, "Hello
// NAME!\n"; an unreliable mode's greeting is sent again after each
// greetResend of silence, until ctx ends.
func (o *opener) greet(ctx context.Context, c message.Conn, i int) error {
	name := appendName(nil, i, o.size)
	for {
		if err := c.Send(ctx, name); err != nil {
			return err
		}
		try, cancel := ctx, context.CancelFunc(func() {})
		if o.resend {
			try, cancel = context.WithTimeout(ctx, greetResend)
		}
		reply, err := c.Receive(try)
		cancel()
		switch {
		case err == nil:
			if seq, ok := parseGreeting(reply, o.size, o.n); !ok || seq != i {
				return fmt.Errorf("greeting %q: wrong reply %q", name, reply)
			}
			return nil
		case o.resend && ctx.Err() == nil && errors.Is(err, context.DeadlineExceeded):
			continue // lost: send it again
		}
		return err
	}
}

// closeAll closes every open conversation, o.workers at a time: a
// connected mode's Close waits for its goroutines.
func (o *opener) closeAll() {
	inParallel(len(o.conns), o.workers, func(i int) error {
		if c := o.conns[i]; c != nil {
			c.Close()
		}
		return nil
	}, func(int, error) bool { return true })
}

// inParallel calls each(i) for every i from 0 to n-1, workers at a
// time, and done with each call's index and error on the calling
// goroutine, as the calls end. Once done returns false no further call
// begins; inParallel returns when every call begun has ended.
func inParallel(n, workers int, each func(i int) error, done func(i int, err error) bool) {
	type result struct {
		i   int
		err error
	}
	jobs, results := make(chan int), make(chan result)
	var wg sync.WaitGroup
	for range min(n, workers) {
		wg.Go(func() {
			for i := range jobs {
				results <- result{i, each(i)}
			}
		})
	}
	next, running, more := 0, 0, true
	for more && next < n || running > 0 {
		var feed chan<- int
		if more && next < n {
			feed = jobs
		}
		select {
		case feed <- next:
			next++
			running++
		case r := <-results:
			running--
			more = done(r.i, r.err) && more
		}
	}
	close(jobs)
	wg.Wait()
}
