package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/schollz/progressbar/v3"
	"golang.org/x/term"

	"github.com/udplab/udplab/compare"
	"github.com/udplab/udplab/internal/cliflag"
	"github.com/udplab/udplab/link"
	"github.com/udplab/udplab/modes"
)

// formats are compare's output formats.
var formats = []string{"table", "json", "csv", "markdown"}

// progressAfter is how long a comparison runs before it shows a progress
// bar: shorter ones finish before a bar would help.
const progressAfter = 2 * time.Second

var compareCmd = &command{
	name:      "compare",
	usageLine: "[--workload greet|bulk|sessions] [--link SPEC]... [--sweep KEY=V1,V2,...] [--modes LIST] [--format F] [--chart FILE]",
	short:     "measure every mode side by side over simulated lossy links",
	long: `Compare runs the same greeting workload over every mode (` + strings.Join(modes.Names(), ", ") + `),
each over the same simulated link with the same seed, and prints what
arrived, in what order, how late, and how many bytes and packets each mode
spent. The modes: ` + modeList() + `.

Everything runs inside this process on loopback: for each link and mode a
server and a client start, the client's datagrams cross the link's up
direction and the server's its down direction, and both stop before the
next run. Names carry a sequence number ("Hello 0000000000000042!").

With no --link, it runs a default matrix, each with a 40 ms round trip:
` + "  " + strings.Join(compare.DefaultMatrix, "\n  ") + `
--link takes the link grammar or a preset (` + strings.Join(link.PresetNames(), ", ") + `)
and may repeat. --sweep varies one key over values on top of one --link
(default ` + compare.DefaultSweepBase + `), for example --sweep loss=0%,5%,20%.

--target MODE=ADDR,... measures servers already running ("udplab serve"
elsewhere) over the real network instead: no simulation, the wire counted
at the client. A mode means the same everywhere: kcp is KCP without FEC,
kcp-fec KCP with --fec; the target must match --fec, --key and --crypt
(serve's defaults match compare's).

--repeat N runs every cell N times with seeds SEED, SEED+1, ... and shows
each cell as mean ± the half-width of its 95% confidence interval.

--workload picks what the client does:
  greet     --messages greetings, one every --interval, each answered (default)
  bulk      --bytes from client to server as fast as each mode allows, to a
            server that answers nothing: completion time, goodput (and its
            share of the link's rate), retransmissions and the link's queue
            drops; --competing MODE runs a second flow on the same link
            beside each, and gives both goodputs and Jain's fairness index
  sessions  --sessions conversations per mode over loopback (no link), each
            greeted once and held idle for --idle-hold: the server's heap,
            RSS, goroutines and idle CPU per session, measured in a server
            process of its own

Results go to stdout (or --out); a progress bar goes to stderr when it is
a terminal and the comparison runs longer than a couple of seconds.`,
	setFlags: func(fs *flag.FlagSet) func(context.Context, *stdio) error {
		var (
			cfg                       compare.Config
			links                     []string
			sweep, format, out, chart string
			targets                   []compare.Target
			quiet                     bool
		)
		cliflag.Int(fs, &cfg.Repeat, "repeat", 1, 1, math.MaxInt, "run every (link, mode) cell `N` times with seeds SEED, SEED+1, ... and summarize each")
		fs.Var(modesValue{&cfg.Modes}, "modes", "comma list of `MODES` to run: "+strings.Join(modes.Names(), ", ")+" (default all)")
		fs.Var(linkListValue{&links}, "link", "a link to run over, in the link grammar or a preset `SPEC`; may repeat (default the matrix above)")
		fs.StringVar(&sweep, "sweep", "", "run one link per value of a link parameter: `KEY=V1,V2,...` such as loss=0%,5%,20%")
		cliflag.Uint64(fs, &cfg.Seed, "seed", link.DefaultSeed, "random `SEED` for every link that names none; the same seed gives every packet the same fate")
		cliflag.Int(fs, &cfg.Workload.Messages, "messages", compare.DefaultMessages, 1, math.MaxInt, "`N` greetings per run")
		cliflag.Duration(fs, &cfg.Workload.Interval, "interval", compare.DefaultInterval, 0, "time `D` between sends; 0 sends as fast as the transport takes them (goodput)")
		cliflag.Int(fs, &cfg.Workload.Size, "size", compare.DefaultSize, 1, compare.MaxSize,
			fmt.Sprintf("greet: name length, 1 to %d `BYTES`; replies are 8 longer. Bulk: each message, at least %d (default each mode's own)", compare.MaxSize, compare.MinBulkSize))
		cliflag.Duration(fs, &cfg.Workload.Wait, "wait", 0, 0, "wait `D` for stragglers after the last send or reply; 0 is automatic: 4 times the slowest round trip, at least "+compare.MinWait.String())
		cliflag.Choice(fs, &cfg.Workload.Kind, "workload", compare.KindGreet, compare.Kinds(), "what the client does: greet (greetings, each answered), bulk (--bytes one way, as fast as the mode allows) or sessions (--sessions conversations held idle)")
		cliflag.Bytes(fs, &cfg.Workload.Bytes, "bytes", compare.DefaultBulkBytes, 1, "bulk: `SIZE` to send, such as 4MB or 512KiB; --size is each message (default each mode's best: a full datagram, or 8 KiB on a stream)")
		fs.StringVar(&cfg.Competing, "competing", "", "bulk: run a second bulk flow of `MODE` on the same link beside each mode's, and report both flows' goodput and Jain's fairness index")
		cliflag.Int(fs, &cfg.Workload.Sessions, "sessions", compare.DefaultSessions, 1, math.MaxInt, "sessions: `N` conversations open at once, each greeted once")
		cliflag.Duration(fs, &cfg.Workload.IdleHold, "idle-hold", compare.DefaultIdleHold, time.Millisecond, "sessions: hold them idle for `D` while the server's CPU is measured")
		fs.Var(targetValue{&targets}, "target", "measure running servers instead: `MODE=ADDR,...` such as raw=127.0.0.1:6000,kcp=127.0.0.1:6001")
		modes.Flags(fs, &cfg.Settings, modes.All(), false)
		cliflag.Choice(fs, &format, "format", "table", formats, "output format")
		fs.StringVar(&out, "out", "", "write the results to `FILE` instead of stdout")
		fs.Var(chartValue{&chart}, "chart", "draw a chart into `FILE`.svg or FILE.png: latency CDF per link, delivery and p99 against a --sweep, or goodput over time (bulk)")
		cliflag.Bool(fs, &quiet, "quiet", false, "no progress bar")
		return func(ctx context.Context, st *stdio) error {
			if err := buildCompare(&cfg, links, sweep, targets, fs); err != nil {
				return err
			}
			cfg.Settings.Logger = newLogger(st, "warn") // a target's unverified certificate
			// Find out now, not after the whole comparison, that the
			// results have nowhere to go.
			for _, f := range []struct{ flag, path string }{{"out", out}, {"chart", chart}} {
				if err := checkWritable(f.path); err != nil {
					return usagef("--%s %s", f.flag, err)
				}
			}
			return runCompare(ctx, st, &cfg, format, out, chart, quiet)
		}
	},
}

// buildCompare fills cfg's links or targets from the flags and checks the
// whole configuration; every mistake is a usage error.
func buildCompare(cfg *compare.Config, links []string, sweep string, targets []compare.Target, fs *flag.FlagSet) error {
	cfg.Targets = targets
	if err := checkWorkloadFlags(cfg, fs); err != nil {
		return err
	}
	if cfg.Workload.Kind == compare.KindSessions && sweep != "" {
		if err := sessionsSweep(cfg, sweep, fs); err != nil {
			return err
		}
		sweep = ""
	}
	var used []*modes.Mode
	for _, name := range cfg.UsedModes() {
		used = append(used, lookupMode(name))
	}
	if err := checkModeFlags(fs, used, false, "no mode compared takes it"); err != nil {
		return err
	}
	if len(targets) > 0 {
		for _, name := range []string{"link", "sweep", "modes", "seed"} {
			if isSet(fs, name) {
				return usagef("--target measures running servers: --%s does not apply", name)
			}
		}
	} else {
		switch {
		case sweep != "":
			if len(links) > 1 {
				return usagef("--sweep varies one link: give at most one --link")
			}
			base := compare.DefaultSweepBase
			if len(links) == 1 {
				base = links[0]
			}
			key, ls, err := compare.SweepLinks(base, sweep, cfg.Seed)
			if err != nil {
				return usagef("--sweep %q: %s", sweep, grammarHint(err))
			}
			cfg.Sweep, cfg.Links = key, ls
		case len(links) > 0:
			for _, text := range links {
				l, err := compare.ParseLink(text, cfg.Seed)
				if err != nil {
					return usagef("--link %q: %s", text, grammarHint(err))
				}
				cfg.Links = append(cfg.Links, l)
			}
		}
	}
	if err := cfg.Validate(); err != nil {
		return usagef("%v", err)
	}
	return nil
}

// sessionsSweep reads --sweep sessions=N1,N2,... for the sessions
// workload, which has no link to vary.
func sessionsSweep(cfg *compare.Config, sweep string, fs *flag.FlagSet) error {
	values, ok := strings.CutPrefix(sweep, "sessions=")
	if !ok {
		return usagef("--sweep %q: the sessions workload has no link; want sessions=N1,N2,... such as sessions=100,1000,10000", sweep)
	}
	if isSet(fs, "sessions") {
		return usagef("--sweep sessions=... sets the session counts: --sessions does not apply")
	}
	for _, v := range strings.Split(values, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(v))
		if err != nil || n < 1 {
			return usagef("--sweep %q: %q is not a session count: want whole numbers of 1 or more", sweep, v)
		}
		cfg.SessionsSweep = append(cfg.SessionsSweep, n)
	}
	cfg.Sweep = "sessions"
	return nil
}

// workloadFlags are the flags only some workloads take.
var workloadFlags = map[string][]string{
	compare.KindGreet:    {"messages", "interval", "wait"},
	compare.KindBulk:     {"bytes", "competing"},
	compare.KindSessions: {"sessions", "idle-hold"},
}

// checkWorkloadFlags refuses a flag the chosen workload does not take,
// and lets bulk's --size default to each mode's own.
func checkWorkloadFlags(cfg *compare.Config, fs *flag.FlagSet) error {
	kind := cfg.Workload.Kind
	for k, names := range workloadFlags {
		for _, name := range names {
			if k != kind && isSet(fs, name) {
				return usagef("--%s is for --workload %s, not %s", name, k, kind)
			}
		}
	}
	switch kind {
	case compare.KindBulk:
		if !isSet(fs, "size") {
			cfg.Workload.Size = 0
		}
	case compare.KindSessions:
		for _, name := range []string{"size", "link", "seed", "repeat"} {
			if isSet(fs, name) {
				return usagef("--workload sessions runs over loopback, one greeting a session: --%s does not apply", name)
			}
		}
	}
	return nil
}

func runCompare(ctx context.Context, st *stdio, cfg *compare.Config, format, out, chart string, quiet bool) error {
	var bar *progress
	if f, ok := st.err.(*os.File); ok && !quiet && term.IsTerminal(int(f.Fd())) {
		bar = &progress{w: st.err, start: time.Now(), total: cfg.Work()}
		cfg.Progress = bar.add
	}
	rep, err := compare.Run(ctx, *cfg)
	bar.finish()
	if rep == nil {
		return err
	}
	// Whatever stopped the comparison, the runs it measured are printed.
	if err != nil && ctx.Err() != nil {
		err = fmt.Errorf("interrupted during run %d of %d; its figures cover the time until then (marked interrupted)", len(rep.Results), cfg.Runs())
	} else if err != nil {
		err = fmt.Errorf("run %d of %d: %w", len(rep.Results)+1, cfg.Runs(), err)
	}
	silent := warnRuns(st.err, rep, len(cfg.Targets) > 0)
	if werr := writeReport(st, rep, format, out, chart); werr != nil {
		return werr
	}
	if err == nil && silent != "" {
		err = fmt.Errorf("no replies from %s: is a udplab server there, serving that mode with the same --fec, --key and --crypt?", silent)
	}
	return err
}

// warnRuns puts one line on w for each run whose figures need a caveat:
// a stall, or a link that could not keep time. Against targets it returns
// the first target that answered nothing.
func warnRuns(w io.Writer, rep *compare.Report, targets bool) (silent string) {
	for _, r := range rep.Results {
		if targets && r.Delivered == 0 && silent == "" {
			silent = fmt.Sprintf("%s (%s)", r.Link, r.Mode)
		}
		if r.Stalled {
			fmt.Fprintf(w, "udplab compare: %s on %s stalled: the transport stopped taking messages (a dead link?)\n", r.Mode, r.Link)
		}
		if r.Noisy && r.TimingError != nil {
			fmt.Fprintf(w, "udplab compare: %s on %s (seed %d) is noisy: the link released 1%% of its packets %.2f ms or more past their time (p99 lateness; a clean run keeps under max(1 ms, 5%% of the delay)); a busy host? Its latencies include that error.\n",
				r.Mode, r.Link, r.Seed, r.TimingError.P99)
		}
	}
	return silent
}

// checkWritable reports, before any run, a path the results could not be
// written to: a directory, a missing directory, no permission. An empty
// path is fine (stdout, or no chart). It creates nothing that stays.
func checkWritable(path string) error {
	if path == "" {
		return nil
	}
	if fi, err := os.Stat(path); err == nil && fi.IsDir() {
		return fmt.Errorf("%q: is a directory; want a file name", path)
	}
	_, statErr := os.Stat(path)
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE, 0o644)
	if err != nil {
		return fmt.Errorf("%q: cannot be written: %v", path, errors.Unwrap(err))
	}
	f.Close()
	if errors.Is(statErr, os.ErrNotExist) {
		os.Remove(path) // it was only a probe
	}
	return nil
}

// writeReport writes rep in format to out (stdout when empty) and draws
// the chart, if asked.
func writeReport(st *stdio, rep *compare.Report, format, out, chart string) error {
	var buf bytes.Buffer
	var err error
	switch format {
	case "json":
		err = rep.WriteJSON(&buf)
	case "csv":
		err = rep.WriteCSV(&buf)
	case "markdown":
		err = rep.WriteMarkdown(&buf)
	default:
		err = rep.WriteTable(&buf)
	}
	if err != nil {
		return err
	}
	if out != "" {
		if err := os.WriteFile(out, buf.Bytes(), 0o644); err != nil {
			return err
		}
	} else if _, err := st.out.Write(buf.Bytes()); err != nil {
		return err
	}
	if chart != "" && len(rep.Results) > 0 {
		return rep.WriteChart(chart)
	}
	return nil
}

// progress shows a progress bar once a comparison has run for
// progressAfter. Its methods are called by one goroutine at a time.
type progress struct {
	w     io.Writer
	start time.Time
	total int
	done  int
	bar   *progressbar.ProgressBar
}

func (p *progress) add(n int) {
	p.done += n
	if p.bar == nil {
		if time.Since(p.start) < progressAfter {
			return
		}
		p.bar = progressbar.NewOptions(p.total,
			progressbar.OptionSetWriter(p.w),
			progressbar.OptionSetDescription("comparing"),
			progressbar.OptionShowCount(),
			progressbar.OptionSetPredictTime(true),
			progressbar.OptionThrottle(100*time.Millisecond),
			progressbar.OptionClearOnFinish(),
		)
		_ = p.bar.Set(p.done)
		return
	}
	_ = p.bar.Add(n)
}

// finish clears the bar, so stderr keeps only what matters.
func (p *progress) finish() {
	if p != nil && p.bar != nil {
		_ = p.bar.Finish()
	}
}

func isSet(fs *flag.FlagSet, name string) bool {
	set := false
	fs.Visit(func(f *flag.Flag) { set = set || f.Name == name })
	return set
}

// modesValue is --modes: a comma list of modes, each once, by name or
// alias, kept as names.
type modesValue struct{ modes *[]string }

func (v modesValue) String() string {
	if v.modes == nil || *v.modes == nil {
		return ""
	}
	return strings.Join(*v.modes, ",")
}

func (v modesValue) Set(s string) error {
	var ms []string
	for _, name := range strings.Split(s, ",") {
		m, err := modes.Lookup(strings.TrimSpace(name))
		if err != nil {
			return errors.New("want a comma list of " + strings.Join(modes.Names(), ", "))
		}
		if slices.Contains(ms, m.Name) {
			return fmt.Errorf("%s is listed twice", m.Name)
		}
		ms = append(ms, m.Name)
	}
	*v.modes = ms
	return nil
}

// linkListValue is --link, which may repeat; each is checked when given.
type linkListValue struct{ links *[]string }

func (v linkListValue) String() string { return "" }

func (v linkListValue) Set(s string) error {
	if _, err := compare.ParseLink(s, link.DefaultSeed); err != nil {
		return errors.New(grammarHint(err))
	}
	*v.links = append(*v.links, s)
	return nil
}

// targetValue is --target MODE=ADDR,...: each mode at most once.
type targetValue struct{ targets *[]compare.Target }

func (v targetValue) String() string { return "" }

func (v targetValue) Set(s string) error {
	want := "want MODE=ADDR,... with MODE one of " + strings.Join(modes.Names(), ", ") +
		", such as raw=127.0.0.1:6000,kcp=127.0.0.1:6001"
	var ts []compare.Target
	for _, item := range strings.Split(s, ",") {
		key, addr, ok := strings.Cut(item, "=")
		m, err := modes.Lookup(key)
		if !ok || err != nil || cliflag.CheckAddr(addr) != nil {
			return errors.New(want)
		}
		for _, t := range ts {
			if t.Mode == m.Name {
				return fmt.Errorf("%s is given twice; %s", m.Name, want)
			}
		}
		ts = append(ts, compare.Target{Mode: m.Name, Addr: addr})
	}
	*v.targets = ts
	return nil
}

// chartValue is --chart, whose extension picks the format.
type chartValue struct{ path *string }

func (v chartValue) String() string {
	if v.path == nil {
		return ""
	}
	return *v.path
}

func (v chartValue) Set(s string) error {
	if err := compare.CheckChartPath(s); err != nil {
		return errors.New("want a file ending in " + strings.Join(compare.ChartFormats, " or "))
	}
	*v.path = s
	return nil
}
