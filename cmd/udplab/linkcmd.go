package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/udplab/udplab/link"
)

var linkCmd = &command{
	name:      "link",
	usageLine: "--listen ADDR --to ADDR [--preset NAME] [--loss P] [--delay D] ... [--up SPEC] [--down SPEC]",
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

Every --stats it prints each direction's counters to stdout; on SIGINT or
SIGTERM it prints a summary, flushes --trace and exits 0.`,
	setFlags: func(fs *flag.FlagSet) func(context.Context, *stdio) error {
		var (
			listen, to, preset, up, down, schedule, trace string
			stats, idle                                   time.Duration
			items                                         []string
		)
		addrVar(fs, &listen, "listen", "", false, "`ADDR` clients send to")
		addrVar(fs, &to, "to", "", false, "the server's `ADDR`")
		fs.Var(choiceValue{&preset, append([]string{""}, link.PresetNames()...)}, "preset",
			"start from the preset `NAME`: "+strings.Join(link.PresetNames(), ", "))
		for _, k := range []struct{ key, usage string }{
			{"loss", "random loss `P`, such as 10%"},
			{"burst", "Gilbert-Elliott burst loss `p,r,1-h,1-k` as netem's gemodel, such as 1%,30%"},
			{"delay", "one-way delay `D`, such as 40ms"},
			{"jitter", "delay spread `D`; packets still arrive in order unless --reorder"},
			{"dist", "jitter distribution `NAME`: uniform, normal or pareto (default uniform)"},
			{"reorder", "share `P` of packets that skip the delay and overtake (needs --delay)"},
			{"dup", "share `P` of packets sent twice"},
			{"corrupt", "share `P` of packets with one bit flipped"},
			{"rate", "rate limit `R` such as 10mbit, counting 28 header bytes per packet"},
			{"queue", fmt.Sprintf("`N` packets may wait at the rate limit before tail drop (default %d)", link.DefaultQueue)},
			{"mtu", "drop datagrams larger than `N` bytes"},
			{"seed", fmt.Sprintf("random `SEED`: the same seed gives every packet the same fate (default %d)", link.DefaultSeed)},
		} {
			fs.Var(itemValue{k.key, &items}, k.key, k.usage)
		}
		fs.Var(specValue{"up", &up}, "up", "link grammar `SPEC` for the up direction only")
		fs.Var(specValue{"down", &down}, "down", "link grammar `SPEC` for the down direction only")
		fs.StringVar(&schedule, "schedule", "", "change the link over time: `OFFSET:SPEC;...` where a SPEC may be outage")
		fs.StringVar(&trace, "trace", "", "write each packet's fate to `FILE` as JSON Lines")
		fs.DurationVar(&stats, "stats", 5*time.Second, "print counters this often; 0 prints only the summary")
		fs.DurationVar(&idle, "idle", 60*time.Second, "forget a client silent this long")
		return func(ctx context.Context, st *stdio) error {
			if listen == "" || to == "" {
				return usagef("--listen and --to are both needed")
			}
			if stats < 0 || idle <= 0 {
				return usagef("--stats wants zero or more and --idle a positive duration")
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
			var steps []link.Step
			if schedule != "" {
				if steps, err = link.ParseSchedule(schedule, spec); err != nil {
					return usagef("--schedule: %s", strings.TrimPrefix(err.Error(), "link: "))
				}
			}
			return runLink(ctx, st, spec, steps, listen, to, trace, stats, idle)
		}
	},
}

func runLink(ctx context.Context, st *stdio, spec link.Spec, steps []link.Step, listen, to, trace string, every, idle time.Duration) error {
	var opts link.Options
	if trace != "" {
		f, err := os.Create(trace)
		if err != nil {
			return err
		}
		defer f.Close()
		opts.Trace = f
	}
	l, err := link.New(spec, &opts)
	if err != nil {
		return err
	}
	log := newLogger(st, "info")
	p, err := link.NewProxy(link.ProxyConfig{Listen: listen, To: to, Link: l, Idle: idle, Logger: log})
	if err != nil {
		l.Close()
		return err
	}
	log.Info("link: relaying", "listen", p.Addr(), "to", to, "link", spec.String())

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	scheduleDone := make(chan struct{})
	go func() {
		defer close(scheduleDone)
		l.RunSchedule(ctx, steps)
	}()
	var tick <-chan time.Time
	if every > 0 {
		t := time.NewTicker(every)
		defer t.Stop()
		tick = t.C
	}
	for done := false; !done; {
		select {
		case <-tick:
			printLinkStats(st.out, "", l)
		case <-ctx.Done():
			done = true
		}
	}
	cancel()
	<-scheduleDone
	p.Close()
	printLinkStats(st.out, "summary ", l)
	if err := l.Close(); err != nil {
		return err
	}
	if opts.Trace != nil {
		return opts.Trace.(*os.File).Sync()
	}
	return nil
}

func printLinkStats(w io.Writer, prefix string, l *link.Link) {
	fmt.Fprintf(w, "%sup   %v\n%sdown %v\n", prefix, l.Stats(link.Up), prefix, l.Stats(link.Down))
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
