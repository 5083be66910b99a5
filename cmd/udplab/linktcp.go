package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"time"

	"github.com/udplab/udplab/internal/netstack"
	"github.com/udplab/udplab/internal/tcprelay"
	"github.com/udplab/udplab/link"
)

// tcpLinkUsage is what --tcp says in udplab link's help.
const tcpLinkUsage = "relay TCP programs instead of UDP: each connection crosses the link as a TCP connection between two user-space stacks (see the README's \"TCP programs behind the link\")"

// checkTCPLink refuses flags --tcp has no use for, and returns the middle
// leg's MTU: the link's smallest, if it has one, else netstack's default.
func checkTCPLink(fs *flag.FlagSet, spec link.Spec) (mtu int, err error) {
	for _, name := range []string{"api", "config", "pcap", "metrics", "idle", "exact-drops"} {
		if isSet(fs, name) {
			return 0, usagef("--%s does not apply with --tcp", name)
		}
	}
	for _, m := range []int{spec.Up.MTU, spec.Down.MTU} {
		if m > 0 && (mtu == 0 || m < mtu) {
			mtu = m
		}
	}
	if mtu > netstack.DefaultMTU {
		mtu = netstack.DefaultMTU
	}
	if mtu != 0 && mtu < 576 {
		return 0, usagef("--tcp needs an mtu of 576 or more, the smallest IPv4 packet every host takes")
	}
	return mtu, nil
}

// runTCP relays TCP connections through the link until ctx ends; mtu is
// the middle leg's, and maxConns the bound on connections (0: the
// relay's default).
func (r *linkRun) runTCP(ctx context.Context, st *stdio, mtu, maxConns int) error {
	l, trace, done, err := r.newLink()
	if err != nil {
		return err
	}
	defer done()
	log := newLogger(st, "info")
	relay, err := tcprelay.Listen(r.listen, tcprelay.Config{Link: l, To: r.to, MaxConns: maxConns, MTU: mtu, Logger: log})
	if err != nil {
		l.Close()
		return err
	}
	log.Info("link: relaying tcp", "listen", relay.Addr(), "to", r.to, "link", r.spec.String(), "stack", relay.Stack())

	rep := &tcpLinkReport{w: st.out, l: l, r: relay}
	rep.prev, rep.start = rep.snapshot(), time.Now()
	rep.at = rep.start
	r.untilDone(ctx, l, log, rep.interval)
	relay.Close()
	rep.summary()
	if err := l.Close(); err != nil {
		return unprefixed{err}
	}
	if trace != nil {
		return trace.Sync()
	}
	return nil
}

// tcpLinkReport prints the TCP relay's counters: the link's datagrams per
// direction, then the connections and the middle leg's retransmissions.
type tcpLinkReport struct {
	w         io.Writer
	l         *link.Link
	r         *tcprelay.Relay
	start, at time.Time
	prev      tcpLinkSnapshot
}

type tcpLinkSnapshot struct {
	dirs [2]link.Stats
	r    tcprelay.Stats
}

func (p *tcpLinkReport) snapshot() tcpLinkSnapshot {
	return tcpLinkSnapshot{dirs: [2]link.Stats{p.l.Stats(link.Up), p.l.Stats(link.Down)}, r: p.r.Stats()}
}

// interval prints what happened since the line before, such as
//
//	[  5.00- 10.00 s] up   offered=900 delivered=855 link_drops=45 retrans=41 bytes=1048576
//	[  5.00- 10.00 s] conns=1 accepted=1 refused=0 reset=0
func (p *tcpLinkReport) interval(now time.Time) {
	cur := p.snapshot()
	span := fmt.Sprintf("[%6.2f-%6.2f s]", p.at.Sub(p.start).Seconds(), now.Sub(p.start).Seconds())
	retrans := [2]uint64{cur.r.Near.Retransmissions - p.prev.r.Near.Retransmissions, cur.r.Far.Retransmissions - p.prev.r.Far.Retransmissions}
	bytes := [2]uint64{cur.r.BytesUp - p.prev.r.BytesUp, cur.r.BytesDown - p.prev.r.BytesDown}
	for _, d := range directions {
		a, b := p.prev.dirs[d], cur.dirs[d]
		fmt.Fprintf(p.w, "%s %-4s offered=%d delivered=%d link_drops=%d retrans=%d bytes=%d\n",
			span, d, b.Offered-a.Offered, b.Delivered-a.Delivered, b.Dropped()-a.Dropped(), retrans[d], bytes[d])
	}
	fmt.Fprintf(p.w, "%s conns=%d accepted=%d refused=%d reset=%d\n", span, cur.r.Active,
		cur.r.Accepted-p.prev.r.Accepted, cur.r.Refused-p.prev.r.Refused, cur.r.Reset-p.prev.r.Reset)
	p.prev, p.at = cur, now
}

// summary prints the totals.
func (p *tcpLinkReport) summary() {
	cur := p.snapshot()
	retrans := [2]uint64{cur.r.Near.Retransmissions, cur.r.Far.Retransmissions}
	bytes := [2]uint64{cur.r.BytesUp, cur.r.BytesDown}
	for _, d := range directions {
		fmt.Fprintf(p.w, "summary %-4s %v retrans=%d bytes=%d\n", d, cur.dirs[d], retrans[d], bytes[d])
	}
	fmt.Fprintf(p.w, "summary conns accepted=%d refused=%d reset=%d middle_failed=%d connect_failed=%d\n",
		cur.r.Accepted, cur.r.Refused, cur.r.Reset, cur.r.MiddleFailed, cur.r.DialFailed)
}
