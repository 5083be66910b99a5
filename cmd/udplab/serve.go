package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/udplab/udplab/internal/cliflag"
	"github.com/udplab/udplab/message"
	"github.com/udplab/udplab/modes"
)

var serveCmd = &command{
	name:      "serve",
	usageLine: "[--MODE ADDR|off]... [--reply greet|time|echo] [--metrics ADDR] [--memory-limit SIZE] [--drain D] [mode flags]",
	short:     "serve the greeting over every mode side by side",
	long: `Serve runs one server per mode, all answering the same requests: ` + modeList() + `.
These are the modes compare measures, under the same names; --reliable and
--reliable-fec are the older names of --kcp and --kcp-fec. With the default
--reply greet, NAME gets "Hello NAME!\n" and exit gets "Good bye!\n".

tcp frames each message with a 4-byte length, and also speaks plain text
to nc, telnet or the tutorials' Python client: a line, or what arrives
before a short pause, is one request, and the reply comes back unframed.
A tcp connection ends when the client closes it or sends exit.

Every UDP listener's socket gets 4 MiB buffers (forced past
net.core.rmem_max where the process may), so a burst waits in the kernel
instead of being dropped there. serve logs a starting line (its memory
limit, drain and metrics URL), one line per listener when ready, and on
SIGINT or SIGTERM it drains: every server stops taking new clients and
requests, and has --drain (2s) to answer what it took and see the answers
acknowledged; then serve logs, per listener, what the drain cut off
(cut_off=none when nothing) and a summary, and exits 0. --drain 0 closes
at once. A UDP listener's summary ends with socket_drops: the datagrams
the kernel dropped at its socket because its receive buffer was full,
which the server never saw; "unknown" where the kernel does not say
(outside Linux, or for tcp, which has no such drops).

--metrics ADDR serves every number of the summaries, while serve runs, in
the Prometheus text format at http://ADDR/metrics, with Go's runtime and
process metrics: udplab_server_NAME_total{mode="..."} for counters, and
udplab_server_NAME{mode="..."} for the values that can fall (kcp's
sessions and probation). socket_drops appears only where the kernel says.

--memory-limit sets the Go runtime's soft memory limit (default 1GiB,
room for every listener's --max-sessions clients): past it the GC works
harder instead of the heap growing until the kernel kills the process.
GOMEMLIMIT in the environment wins over the default, not over the flag;
off sets no limit.`,
	setFlags: func(fs *flag.FlagSet) func(context.Context, *stdio) error {
		var (
			all          = modes.All()
			addrs        = make([]string, len(all))
			reply, level string
			settings     modes.Settings
			cfg          serveConfig
		)
		for i, m := range all {
			cliflag.Addr(fs, &addrs[i], m.ListenFlag(), m.DefaultAddr, true,
				fmt.Sprintf("`ADDR` the %s server (%s) listens on, or off", m.Name, m.What))
			for _, a := range m.Aliases {
				fs.Var(fs.Lookup(m.ListenFlag()).Value, a, "`ADDR`: the older name of --"+m.ListenFlag())
			}
		}
		replyVar(fs, &reply)
		cliflag.Addr(fs, &cfg.metrics, "metrics", "off", true,
			"serve the servers' counters for Prometheus at http://`ADDR`/metrics, or off")
		memoryLimitVar(fs, &cfg.memoryLimit)
		cliflag.Duration(fs, &cfg.drain, "drain", 2*time.Second, 0,
			"on SIGINT or SIGTERM, give the servers `D` to finish what they took; 0 closes them at once")
		modes.Flags(fs, &settings, all, true)
		logLevelVar(fs, &level)
		return func(ctx context.Context, st *stdio) error {
			on, err := listeners(fs, all, addrs)
			if err != nil {
				return err
			}
			h, err := message.Lookup(reply)
			if err != nil {
				return usagef("%v", err)
			}
			log := newLogger(st, level)
			settings.Logger = log
			trs := make([]modes.Transport, len(on))
			for i, m := range on {
				if trs[i], err = newTransport(m, &settings); err != nil {
					return err
				}
			}
			cfg.reply, cfg.explicitLimit = reply, given(fs, "memory-limit") != ""
			return serve(ctx, log, on, trs, addrs, cfg, h)
		}
	},
}

// listeners returns the modes to serve, those whose address is not off,
// and checks that each mode flag given applies to one of them.
func listeners(fs *flag.FlagSet, all []*modes.Mode, addrs []string) ([]*modes.Mode, error) {
	var on, off []*modes.Mode
	for i, m := range all {
		if addrs[i] == "off" {
			off = append(off, m)
		} else {
			on = append(on, m)
		}
	}
	if len(on) == 0 {
		return nil, usagef("every listener is off (%s): nothing to serve", listenFlags(all))
	}
	return on, checkModeFlags(fs, on, true, "those listeners are off")
}

// listenFlags lists the modes' listener flags, as "--raw, --kcp, ...".
func listenFlags(ms []*modes.Mode) string {
	names := make([]string, len(ms))
	for i, m := range ms {
		names[i] = "--" + m.ListenFlag()
	}
	return strings.Join(names, ", ")
}

// listener is one running server.
type listener struct {
	mode string
	srv  modes.Server
}

// serverSet is the servers serve runs, added as they start. The metrics
// endpoint reads it from its own goroutines.
type serverSet struct {
	mu sync.Mutex
	ls []listener
}

func (s *serverSet) add(l listener) {
	s.mu.Lock()
	s.ls = append(s.ls, l)
	s.mu.Unlock()
}

func (s *serverSet) list() []listener {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.ls)
}

// serveConfig is serve's settings beyond its listeners'.
type serveConfig struct {
	reply   string
	metrics string // HOST:PORT of the metrics endpoint, or off
	// memoryLimit is the runtime's soft memory limit; explicitLimit says
	// whether --memory-limit set it, so that it wins over GOMEMLIMIT.
	memoryLimit   int64
	explicitLimit bool
	drain         time.Duration // how long the servers may finish, once told to stop
}

// serve runs a server for every mode in on until ctx ends, then drains
// them. The metrics endpoint, when asked for, starts first and stops last,
// so it shows every server from its start to its summary.
func serve(ctx context.Context, log *slog.Logger, on []*modes.Mode, trs []modes.Transport, addrs []string, cfg serveConfig, h message.Handler) error {
	limit, from, restore := setMemoryLimit(cfg.memoryLimit, cfg.explicitLimit)
	defer restore()
	set := &serverSet{}
	url := "off"
	if cfg.metrics != "off" {
		var stop func()
		var err error
		if url, stop, err = startMetrics(cfg.metrics, set, log); err != nil {
			return err
		}
		defer stop()
	}
	log.Info("starting", "memory_limit", formatLimit(limit), "memory_limit_from", from, "drain", cfg.drain, "metrics", url)
	defer func() {
		for _, l := range set.list() {
			l.srv.Close() // after a failed start; Close is idempotent
		}
	}()
	for i, m := range on {
		addr := addrs[slices.Index(modes.All(), m)]
		s, err := trs[i].Listen(addr, h)
		if err != nil {
			return fmt.Errorf("--%s %s: %w", m.ListenFlag(), addr, err)
		}
		log.Info("serving", append([]any{"mode", m.Name, "addr", s.Addr(), "reply", cfg.reply}, s.Describe()...)...)
		set.add(listener{m.Name, s})
	}
	<-ctx.Done()
	log.Info("shutting down", "cause", context.Cause(ctx), "drain", cfg.drain)
	drain(log, set.list(), cfg.drain)
	return nil
}

// drain tells every server at once to stop taking new clients and
// requests and to finish what it took within d, then logs, in the
// listeners' order, what each cut off and its summary. Its context is a
// new one: serve's has ended already, which is why it drains.
func drain(log *slog.Logger, ls []listener, d time.Duration) {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	errs := make([]error, len(ls))
	var wg sync.WaitGroup
	for i, l := range ls {
		wg.Go(func() { errs[i] = modes.Shutdown(ctx, l.srv) })
	}
	wg.Wait()
	for i, l := range ls {
		if errs[i] != nil {
			log.Warn("drained", "mode", l.mode, "cut_off", errs[i])
		} else {
			log.Info("drained", "mode", l.mode, "cut_off", "none")
		}
		log.Info("summary", l.summary()...)
	}
}

// summary is l's counters, then the datagrams the kernel dropped at its
// socket for a full receive buffer (read as the socket closed), or unknown
// where the kernel does not say.
func (l listener) summary() []any {
	var drops any = "unknown"
	if n, ok := l.srv.SocketDrops(); ok {
		drops = n
	}
	attrs := append([]any{"mode", l.mode}, statsAttrs(l.srv.Stats())...)
	attrs = append(attrs, l.srv.Summary()...)
	return append(attrs, "socket_drops", drops)
}

func statsAttrs(s message.ServerStats) []any {
	return []any{"requests", s.Requests, "replies", s.Replies, "bad_requests", s.BadRequests,
		"oversized", s.Oversized, "errors", s.Errors}
}
