package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net"
	"os"
	"runtime/debug"
	"strconv"
	"strings"
	"time"

	"github.com/udplab/udplab/internal/cliflag"
	"github.com/udplab/udplab/link"
)

var linkCmd = &command{
	name:      "link",
	usageLine: "--listen ADDR --to ADDR [--preset NAME] [--loss P] [--delay D] ... [--up SPEC] [--down SPEC] | --api ADDR [--config FILE] | --config FILE",
	short:     "relay UDP through a simulated lossy link, for any UDP program",
	long: `Link listens on --listen and relays every datagram to --to and the replies
back, through a simulated link: loss, burst loss, delay, jitter, reordering,
duplication, corruption, a rate limit with a queue, an MTU. Each client
address gets its own upstream socket. Up is client to server, down is the
way back.

Impairment flags apply to both directions; --up and --down take the link
grammar (for example "loss=5%,delay=20ms") for one direction. A preset
comes first, then the flags, then --up and --down. Probabilities carry a %;
rates take kbit, mbit or gbit. The same --seed gives every packet the same
fate. A --schedule changes the link over time, for example
"0s:loss=1%;10s:loss=30%;20s:outage;25s:loss=1%".

Memory is bounded whatever the flags: each direction holds at most --limit
packets and --limit-bytes of payload at once (delayed or queued), dropping
the rest as limit_drops, and the proxy relays for at most --max-clients
client addresses. Errors that datagrams cause are logged at most once a
second each, with the count suppressed. --metrics serves every counter
for Prometheus.

Every --stats it prints a line per direction for that interval, as iperf3's
-i does: datagrams offered, delivered, dropped by the link and by the
proxy's socket buffers, packets and bits per second delivered; then the
clients. Each schedule step is logged as it takes effect. On SIGINT or
SIGTERM it prints the totals (summary lines), flushes --trace and exits 0.

--api ADDR serves an HTTP/JSON API to list, create and delete named links,
each with its own listen and upstream address, read one's spec and
counters, and replace its spec (both directions or one) while traffic
flows; each change is logged with the old and new spec. --config FILE
starts the named links in FILE, a JSON list of {"name", "listen",
"upstream", "spec"} objects. Either works alone or with the other; with
either, --listen and --to are optional and make one more link, named
default, with the impairment flags' spec. Then the summary has a line per
link and direction, named, and --stats, --schedule, --trace, --metrics and --pcap
are for a single link only (see the README's API section).`,
	setFlags: func(fs *flag.FlagSet) func(context.Context, *stdio) error {
		var (
			run              linkRun
			preset, up, down string
			schedule         string
			items            []string
			tcpRelay         bool
		)
		fs.BoolVar(&tcpRelay, "tcp", false, tcpLinkUsage)
		cliflag.Addr(fs, &run.listen, "listen", "", false, "`ADDR` clients send to")
		cliflag.Addr(fs, &run.to, "to", "", false, "the server's `ADDR`")
		fs.Var(cliflag.ChoiceValue{V: &preset, Choices: append([]string{""}, link.PresetNames()...)}, "preset",
			"start from the preset `NAME`: "+strings.Join(link.PresetNames(), ", "))
		for _, k := range []struct{ key, usage string }{
			{"loss", "random loss `P`, such as 10%, or P/RHO with lag-1 correlation RHO, such as 10%/25% (the mean stays P)"},
			{"burst", "Gilbert-Elliott burst loss `p[,r,1-h,1-k]` as netem's gemodel, such as 1%,30%; p alone means r = 1-p"},
			{"loss-state", "netem's 4-state loss model `p13[/p31[/p32[/p23[/p14]]]]` (netem: loss state)"},
			{"delay", "one-way delay `D`, such as 40ms"},
			{"jitter", "delay spread `D`, or D/RHO with correlation RHO; packets still arrive in order unless --reorder"},
			{"dist", "jitter distribution `NAME`: uniform, normal, pareto, paretonormal, or a netem .dist table's PATH (default uniform; needs --jitter)"},
			{"order", "jitter order `NAME`: keep (packets never overtake; default) or netem (each leaves at its own time, so jitter wider than the gap reorders)"},
			{"reorder", "share `P` of packets that skip the delay and overtake (needs --delay)"},
			{"dup", "share `P` of packets sent twice"},
			{"corrupt", "share `P` of packets with one bit flipped"},
			{"rate", "rate limit `R` such as 10mbit, counting 28 header bytes per packet (48 on IPv6)"},
			{"overhead", "with --rate: `N` bytes of link-layer framing counted per packet (netem: rate R overhead N)"},
			{"cellsize", "with --rate: count each packet in cells of `N[/OVERHEAD]` bytes, as ATM (netem: rate R ... cellsize N celloverhead O)"},
			{"slot", "release packets in bursts at slot boundaries `MIN[/MAX]` apart (netem: slot MIN MAX)"},
			{"slot-packets", "with --slot: at most `N` packets a slot"},
			{"slot-bytes", "with --slot: at most `SIZE` bytes a slot"},
			{"queue", fmt.Sprintf("`N` packets may wait at the rate limit before tail drop (default %d)", link.DefaultQueue)},
			{"mtu", "drop datagrams larger than `N` bytes"},
			{"limit", fmt.Sprintf("hold at most `N` packets each way, delayed or queued, dropping the rest (netem's limit; default %d)", link.DefaultLimit)},
			{"limit-bytes", fmt.Sprintf("hold at most `SIZE` payload bytes each way, such as 4MiB or 4MB (default %dMiB)", link.DefaultLimitBytes>>20)},
			{"seed", fmt.Sprintf("random `SEED`: the same seed gives every packet the same fate (default %d)", link.DefaultSeed)},
		} {
			fs.Var(itemValue{k.key, &items}, k.key, k.usage)
		}
		fs.Var(specValue{"up", &up}, "up", "link grammar `SPEC` for the up direction only")
		fs.Var(specValue{"down", &down}, "down", "link grammar `SPEC` for the down direction only")
		fs.StringVar(&schedule, "schedule", "", "change the link over time: `OFFSET:SPEC;...` where a SPEC may be outage")
		fs.StringVar(&run.trace, "trace", "", "write each packet's fate to `FILE` as JSON Lines")
		fs.StringVar(&run.pcap, "pcap", "", "write a pcapng capture to `FILE`: interface entered (what the link was offered) and left (what it delivered)")
		fs.DurationVar(&run.every, "stats", 5*time.Second, "print each interval's counters this often; 0 prints only the summary")
		fs.DurationVar(&run.idle, "idle", 60*time.Second, "forget a client silent this long")
		cliflag.Addr(fs, &run.metrics, "metrics", "", false, "serve the link's counters at http://`ADDR`/metrics in Prometheus' text format")
		cliflag.Int(fs, &run.maxClients, "max-clients", link.DefaultMaxClients, 1, math.MaxInt,
			"relay for at most `N` client addresses at once; datagrams from more are refused, counted and logged at most once a second")
		fs.BoolVar(&run.exactDrops, "exact-drops", false,
			"keep UDP GRO off, so that socket_drops counts every datagram dropped (never N+); the proxy then relays senders that use UDP GSO at less than half the speed (see the README)")
		cliflag.Addr(fs, &run.api, "api", "", false, "serve the control API at http://`ADDR`/links (JSON; see the README)")
		fs.StringVar(&run.config, "config", "", "start the named links of `FILE`, a JSON list of {\"name\", \"listen\", \"upstream\", \"spec\"}")
		return func(ctx context.Context, st *stdio) error {
			named := run.api != "" || run.config != ""
			single := run.listen != "" || run.to != ""
			switch {
			case !named && (run.listen == "" || run.to == ""):
				return usagef("--listen and --to are both needed, unless --api or --config is given")
			case single && (run.listen == "" || run.to == ""):
				return usagef("--listen and --to go together")
			case run.every < 0 || run.idle <= 0:
				return usagef("--stats wants zero or more and --idle a positive duration")
			}
			if single {
				if err := checkLoop(run.listen, run.to); err != nil {
					return err
				}
			}
			spec, err := link.Parse(preset)
			if err == nil {
				err = spec.Apply(strings.Join(items, ","))
			}
			if err == nil {
				err = spec.Apply(prefixed("up:", up))
			}
			if err == nil {
				err = spec.Apply(prefixed("down:", down))
			}
			if err != nil {
				return usagef("%s", strings.TrimPrefix(err.Error(), "link: "))
			}
			run.spec = spec
			tcpMTU := 0
			if tcpRelay {
				if tcpMTU, err = checkTCPLink(fs, spec); err != nil {
					return err
				}
			}
			if named {
				if !single && (preset != "" || len(items) > 0 || up != "" || down != "") {
					return usagef("the impairment flags set the --listen/--to link; without one, give each link its spec in --config or through --api")
				}
				if schedule != "" || run.trace != "" || run.metrics != "" || run.pcap != "" || isSet(fs, "exact-drops") {
					return usagef("--schedule, --trace, --metrics, --pcap and --exact-drops are for a single link, without --api or --config")
				}
				return run.runNamed(ctx, st)
			}
			if schedule != "" {
				if run.steps, err = link.ParseSchedule(schedule, spec); err != nil {
					return usagef("--schedule: %s", strings.TrimPrefix(err.Error(), "link: "))
				}
			}
			if tcpRelay {
				maxConns := 0 // the relay's own default, unless --max-clients
				if isSet(fs, "max-clients") {
					maxConns = run.maxClients
				}
				return run.runTCP(ctx, st, tcpMTU, maxConns)
			}
			return run.run(ctx, st)
		}
	},
}

// checkLoop refuses a --to that is --listen itself, compared as resolved
// addresses: a wildcard --listen also takes a loopback --to of its port.
func checkLoop(listen, to string) error {
	la, err := net.ResolveUDPAddr("udp", listen)
	if err != nil {
		return usagef("--listen %s: %v", listen, err)
	}
	ta, err := net.ResolveUDPAddr("udp", to)
	if err != nil {
		return usagef("--to %s: %v", to, err)
	}
	wildcard := la.IP == nil || la.IP.IsUnspecified() // ":7000" listens on every local address
	same := la.IP.Equal(ta.IP) || wildcard && isLocal(ta.IP)
	if la.Port == ta.Port && same {
		return usagef("--to %s is --listen %s: the link would relay to itself", to, listen)
	}
	return nil
}

// isLocal reports whether ip is an address of this host: a loopback or
// unspecified address, or one of its interfaces'.
func isLocal(ip net.IP) bool {
	if ip == nil || ip.IsLoopback() || ip.IsUnspecified() {
		return true
	}
	addrs, _ := net.InterfaceAddrs()
	for _, a := range addrs {
		if n, ok := a.(*net.IPNet); ok && n.IP.Equal(ip) {
			return true
		}
	}
	return false
}

// linkRun is one udplab link, as its flags set it.
type linkRun struct {
	spec           link.Spec
	steps          []link.Step
	listen, to     string
	idle           time.Duration
	maxClients     int
	exactDrops     bool
	trace, metrics string        // files and addresses; empty for none
	api, config    string        // --api's address and --config's file; empty for none
	every          time.Duration // --stats
	pcap           string        // --pcap's file; empty for none
}

// linkGCPercent is the Go collector's target for udplab link: a flood
// turns over the socket reads' small allocations fast while the link holds
// up to its byte limit (64 MiB a direction by default), and at Go's default
// of 100 the heap grows to twice what is held before a collection (160 MiB
// measured under a 60 KB flood into --rate 1mbit); at 10 it stays within a
// tenth of it (104 MiB; 111 MiB at 20). The held packets hold no pointers,
// so a collection costs little. GOGC in the environment wins.
const linkGCPercent = 10

// setLinkGC sets the collector's target to linkGCPercent unless GOGC is
// set, and returns what puts it back.
func setLinkGC() (restore func()) {
	if _, set := os.LookupEnv("GOGC"); set {
		return func() {}
	}
	old := debug.SetGCPercent(linkGCPercent)
	return func() { debug.SetGCPercent(old) }
}

// newLink starts the link the flags describe, with the collector at
// linkGCPercent and the trace file (nil without --trace) open; done
// restores the one and closes the other, after the link has closed.
func (r *linkRun) newLink() (l *link.Link, trace *os.File, done func(), err error) {
	restoreGC := setLinkGC()
	var opts link.Options
	if r.trace != "" {
		if trace, err = os.Create(r.trace); err != nil {
			restoreGC()
			return nil, nil, nil, err
		}
		opts.Trace = trace
	}
	done = func() {
		if trace != nil {
			trace.Close()
		}
		restoreGC()
	}
	if l, err = link.New(r.spec, &opts); err != nil {
		done()
		return nil, nil, nil, unprefixed{err}
	}
	return l, trace, done, nil
}

func (r *linkRun) run(ctx context.Context, st *stdio) error {
	l, trace, done, err := r.newLink()
	if err != nil {
		return err
	}
	defer done()
	log := newLogger(st, "info")
	var capt *pcapFile
	if r.pcap != "" {
		if capt, err = openPcap(r.pcap); err != nil {
			l.Close()
			return err
		}
		defer capt.close(log) // on the error paths; after relay, a no-op
	}
	p, err := link.NewProxy(link.ProxyConfig{Listen: r.listen, To: r.to, Link: l, Idle: r.idle, MaxClients: r.maxClients,
		ExactDrops: r.exactDrops, Logger: log, Capture: capt.capture()})
	if err != nil {
		l.Close()
		return unprefixed{err}
	}
	if r.metrics != "" {
		url, stop, err := startMetrics(r.metrics, newLinkCollector(l, p), log)
		if err != nil {
			p.Close()
			l.Close()
			return err
		}
		log.Info("link: metrics", "url", url)
		defer stop()
	}
	err = r.relay(ctx, st, log, l, p, trace)
	if cerr := capt.close(log); err == nil {
		err = cerr
	}
	return err
}

// relay reports on the running proxy until ctx ends, then closes it and
// the link.
func (r *linkRun) relay(ctx context.Context, st *stdio, log *slog.Logger, l *link.Link, p *link.Proxy, trace *os.File) error {
	log.Info("link: relaying", "listen", p.Addr(), "to", r.to, "link", r.spec.String())
	rep := newLinkReport(st.out, l, p)
	r.untilDone(ctx, l, log, rep.interval)
	if now := time.Now(); r.every > 0 && now.Sub(rep.prev.at) >= time.Millisecond {
		rep.interval(now) // the last, partial interval, as iperf3 prints it
	}
	open := p.Clients()
	p.Close()
	rep.summary(open)
	if err := l.Close(); err != nil {
		return unprefixed{err}
	}
	if trace != nil {
		return trace.Sync()
	}
	return nil
}

// untilDone runs the link's --schedule and calls interval every --stats
// until ctx ends, then stops the schedule.
func (r *linkRun) untilDone(ctx context.Context, l *link.Link, log *slog.Logger, interval func(time.Time)) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	scheduleDone := make(chan struct{})
	go func() {
		defer close(scheduleDone)
		l.RunSchedule(ctx, r.steps, func(s link.Step) { log.Info("link: schedule step", "step", s) })
	}()
	defer func() { cancel(); <-scheduleDone }()
	var tick <-chan time.Time
	if r.every > 0 {
		t := time.NewTicker(r.every)
		defer t.Stop()
		tick = t.C
	}
	for {
		select {
		case now := <-tick:
			interval(now)
		case <-ctx.Done():
			return
		}
	}
}

// unprefixed is an error of the link package, shown without the package's
// "link: ": the command's own prefix, "udplab link: ", says it already.
// errors.Is and errors.As see through it.
type unprefixed struct{ err error }

func (e unprefixed) Error() string { return strings.TrimPrefix(e.err.Error(), "link: ") }
func (e unprefixed) Unwrap() error { return e.err }

// linkReport prints the proxy's counters: a line per direction for each
// interval, as iperf3's -i does, and the totals at the end.
type linkReport struct {
	w     io.Writer
	l     *link.Link
	p     *link.Proxy
	start time.Time
	prev  linkSnapshot
}

// linkSnapshot is every counter at one moment.
type linkSnapshot struct {
	at               time.Time
	dirs             [2]link.Stats
	drops            [2]link.SocketDropCount
	refused, expired uint64
}

var directions = [2]link.Direction{link.Up, link.Down}

func newLinkReport(w io.Writer, l *link.Link, p *link.Proxy) *linkReport {
	r := &linkReport{w: w, l: l, p: p}
	for _, d := range directions {
		l.IntervalLateness(d) // the first interval starts now
	}
	r.prev = r.snapshot(time.Now())
	r.start = r.prev.at
	return r
}

func (r *linkReport) snapshot(now time.Time) linkSnapshot {
	s := linkSnapshot{at: now, refused: r.p.Refused(), expired: r.p.Expired()}
	for _, d := range directions {
		s.dirs[d] = r.l.Stats(d)
		s.drops[d] = r.p.SocketDrops(d)
	}
	return s
}

// interval prints what happened since the line before, such as
//
//	[  5.00- 10.00 s] up   offered=5000 delivered=4950 link_drops=50 socket_drops=0 pkt/s=990.0 bitrate=7.92Mbit/s late_p50=0.004ms late_p99=0.061ms late_max=0.210ms
//	[  5.00- 10.00 s] clients=1 refused=0 expired=0
func (r *linkReport) interval(now time.Time) {
	cur := r.snapshot(now)
	span := fmt.Sprintf("[%6.2f-%6.2f s]", r.prev.at.Sub(r.start).Seconds(), now.Sub(r.start).Seconds())
	secs := now.Sub(r.prev.at).Seconds()
	for _, d := range directions {
		a, b := r.prev.dirs[d], cur.dirs[d]
		delivered := b.Delivered - a.Delivered
		fmt.Fprintf(r.w, "%s %-4s offered=%d delivered=%d link_drops=%d socket_drops=%s pkt/s=%.1f bitrate=%s%s\n",
			span, d, b.Offered-a.Offered, delivered, b.Dropped()-a.Dropped(),
			socketDrops(since(cur.drops[d], r.prev.drops[d])),
			float64(delivered)/secs, bitrate(float64(b.DeliveredBytes-a.DeliveredBytes)*8/secs),
			lateness(r.l.IntervalLateness(d)))
	}
	fmt.Fprintf(r.w, "%s clients=%d refused=%d expired=%d\n", span, r.p.Clients(), cur.refused-r.prev.refused, cur.expired-r.prev.expired)
	r.prev = cur
}

// summary prints the totals, with open the clients the proxy still had.
func (r *linkReport) summary(open int) {
	cur := r.snapshot(time.Now())
	for _, d := range directions {
		fmt.Fprintf(r.w, "summary %-4s %v socket_drops=%s\n", d, cur.dirs[d], socketDrops(cur.drops[d]))
	}
	fmt.Fprintf(r.w, "summary clients=%d refused=%d expired=%d\n", open, cur.refused, cur.expired)
}

// lateness is an interval's lateness for its line, or nothing when the
// link held no packet in it (an unimpaired link passes them straight on).
func lateness(l link.Lateness) string {
	if l.Count == 0 {
		return ""
	}
	return " " + l.String()
}

// socketDrops is a count of socket drops for a line: N+ where it is a
// floor, unknown where the kernel does not say.
func socketDrops(c link.SocketDropCount) string {
	switch {
	case !c.Known:
		return "unknown"
	case c.Floor && c.N > 0:
		return strconv.FormatUint(c.N, 10) + "+"
	}
	return strconv.FormatUint(c.N, 10)
}

// since is the drops counted between two readings. Each drop counted
// was one datagram or more, so where the later reading is a floor, so
// is the difference.
func since(cur, prev link.SocketDropCount) link.SocketDropCount {
	return link.SocketDropCount{N: cur.N - prev.N, Known: cur.Known && prev.Known, Floor: cur.Floor}
}

// bitrate writes bits per second as iperf3 does, in kbit/s, Mbit/s or
// Gbit/s.
func bitrate(bps float64) string {
	switch {
	case bps >= 1e9:
		return fmt.Sprintf("%.2fGbit/s", bps/1e9)
	case bps >= 1e6:
		return fmt.Sprintf("%.2fMbit/s", bps/1e6)
	}
	return fmt.Sprintf("%.2fkbit/s", bps/1e3)
}

// prefixed puts prefix before every item of a comma list.
func prefixed(prefix, list string) string {
	if strings.TrimSpace(list) == "" {
		return ""
	}
	items := strings.Split(list, ",")
	for i, it := range items {
		items[i] = prefix + strings.TrimSpace(it)
	}
	return strings.Join(items, ",")
}

// itemValue is one impairment flag: it checks its value with the link
// grammar's own parser and keeps it, in order, as KEY=VALUE.
type itemValue struct {
	key   string
	items *[]string
}

func (v itemValue) String() string { return "" }

func (v itemValue) Set(s string) error {
	if v.key == "burst" {
		s = strings.ReplaceAll(s, ",", "/") // the flag takes netem's commas
	}
	item := v.key + "=" + s
	if err := link.CheckItem(item); err != nil {
		if v.key == "burst" {
			return errors.New("want p,r[,1-h[,1-k]] as percentages, such as 1%,30% (netem's gemodel)")
		}
		return errors.New(grammarHint(err))
	}
	*v.items = append(*v.items, item)
	return nil
}

// specValue is --up or --down: link grammar for one direction.
type specValue struct {
	dir  string
	spec *string
}

func (v specValue) String() string {
	if v.spec == nil {
		return ""
	}
	return *v.spec
}

func (v specValue) Set(s string) error {
	var probe link.Spec
	if err := probe.Apply(prefixed(v.dir+":", s)); err != nil {
		return errors.New(grammarHint(err))
	}
	*v.spec = s
	return nil
}

// grammarHint keeps what the parser said should have been given.
func grammarHint(err error) string {
	msg := strings.TrimPrefix(err.Error(), "link: ")
	if _, after, ok := strings.Cut(msg, ": want"); ok {
		return "want" + after
	}
	return msg
}
