package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"

	"github.com/udplab/udplab/message"
	"github.com/udplab/udplab/raw"
	"github.com/udplab/udplab/reliable"
)

var serveCmd = &command{
	name:      "serve",
	usageLine: "[--raw ADDR|off] [--reliable ADDR|off] [--reliable-fec ADDR|off] [--reply greet|time|echo] [reliable flags]",
	short:     "serve the greeting over raw, reliable and reliable-fec side by side",
	long: `Serve runs one server per mode, all answering the same requests: raw is
bare UDP (one datagram per message, no acknowledgement, no retransmission,
no ordering), reliable is KCP without FEC, and reliable-fec is KCP with
Reed-Solomon FEC (--fec, default 10,3). These are the modes compare
measures, under the same names. With the default --reply greet, NAME gets
"Hello NAME!\n" and exit gets "Good bye!\n".

Every listener's socket gets 4 MiB buffers (forced past net.core.rmem_max
where the process may), so a burst waits in the kernel instead of being
dropped there. serve logs one line per listener when ready and a summary
of each on SIGINT or SIGTERM, then exits 0. A summary ends with
socket_drops: the datagrams the kernel dropped at that listener's socket
because its receive buffer was full, which the server never saw; "unknown"
where the kernel does not say (outside Linux).`,
	setFlags: func(fs *flag.FlagSet) func(context.Context, *stdio) error {
		var (
			addrs        = make([]string, len(cliModes))
			reply, level string
			cfg          reliable.Config
		)
		for i, m := range cliModes {
			addrVar(fs, &addrs[i], m.name, m.defaultAddr, true,
				fmt.Sprintf("`ADDR` the %s server (%s) listens on, or off", m.name, m.what))
		}
		replyVar(fs, &reply)
		reliableFlags(fs, &cfg, true)
		logLevelVar(fs, &level)
		return func(ctx context.Context, st *stdio) error {
			if err := checkListeners(fs, addrs, &cfg); err != nil {
				return err
			}
			h, err := message.Lookup(reply)
			if err != nil {
				return usagef("%v", err)
			}
			log := newLogger(st, level)
			cfg.Logger = log
			return serve(ctx, log, addrs, reply, h, &cfg)
		}
	},
}

// checkListeners checks that something is served and that the reliable
// flags given have a listener to apply to.
func checkListeners(fs *flag.FlagSet, addrs []string, cfg *reliable.Config) error {
	var on, kcp, fec bool
	for i, m := range cliModes {
		if addrs[i] != "off" {
			on, kcp, fec = true, kcp || m.kcp, fec || m.fec
		}
	}
	switch f := given(fs, reliableFlagNames()...); {
	case !on:
		return usagef("--%s, --%s and --%s are all off: nothing to serve", modeRaw, modeReliable, modeReliableFEC)
	case f != "" && !kcp:
		return usagef("--%s is a reliable flag, and --%s and --%s are off", f, modeReliable, modeReliableFEC)
	case given(fs, "fec") != "" && !fec:
		return usagef("--fec sets %s's shards, and --%s is off", modeReliableFEC, modeReliableFEC)
	case fec && cfg.NoFEC:
		return usagef("--fec 0,0 turns FEC off: --%s serves KCP without FEC; give --%s shards such as 10,3, or --%s off",
			modeReliable, modeReliableFEC, modeReliableFEC)
	}
	return checkReliable(cfg)
}

// server is what serve needs of raw's and reliable's servers.
type server interface {
	message.Server
	SocketDrops() (uint64, bool)
}

// listener is one running server and its counters for the summary.
type listener struct {
	mode  string
	srv   server
	stats func() []any
}

// serve runs a server for every mode whose address is not off, until ctx
// ends, then logs each one's summary.
func serve(ctx context.Context, log *slog.Logger, addrs []string, reply string, h message.Handler, cfg *reliable.Config) error {
	var ls []listener
	defer func() {
		for _, l := range ls {
			l.srv.Close()
		}
	}()
	for i, m := range cliModes {
		if addrs[i] == "off" {
			continue
		}
		l, err := listen(log, m, addrs[i], reply, h, cfg)
		if err != nil {
			return fmt.Errorf("--%s %s: %w", m.name, addrs[i], err)
		}
		ls = append(ls, l)
	}
	<-ctx.Done()
	log.Info("shutting down", "cause", context.Cause(ctx))
	for _, l := range ls {
		l.srv.Close()
		log.Info("summary", l.summary()...)
	}
	return nil
}

// summary is l's counters, then the datagrams the kernel dropped at its
// socket for a full receive buffer (read as the socket closed), or unknown
// where the kernel does not say.
func (l listener) summary() []any {
	var drops any = "unknown"
	if n, ok := l.srv.SocketDrops(); ok {
		drops = n
	}
	return append(append([]any{"mode", l.mode}, l.stats()...), "socket_drops", drops)
}

// listen starts mode m's server on addr and logs that it is ready.
func listen(log *slog.Logger, m cliMode, addr, reply string, h message.Handler, cfg *reliable.Config) (listener, error) {
	if m.kcp {
		return listenKCP(log, m, addr, reply, h, cfg)
	}
	s, err := raw.Listen(addr, h, &raw.ServerConfig{Logger: log})
	if err != nil {
		return listener{}, err
	}
	log.Info("serving", "mode", m.name, "addr", s.Addr(), "reply", reply, "delivery", "unreliable-unordered")
	return listener{m.name, s, func() []any { return statsAttrs(s.Stats()) }}, nil
}

// listenKCP is listen for the reliable modes.
func listenKCP(log *slog.Logger, m cliMode, addr, reply string, h message.Handler, cfg *reliable.Config) (listener, error) {
	s, err := reliable.Listen(addr, h, m.reliableConfig(cfg))
	if err != nil {
		return listener{}, err
	}
	in := s.Config() // what the server runs with, defaults filled in
	fec, crypt := in.FECString(), in.Crypt
	if in.NoFEC {
		fec = "off"
	}
	if crypt == "" {
		crypt = "off"
	}
	log.Info("serving", "mode", m.name, "addr", s.Addr(), "reply", reply, "delivery", "reliable-ordered",
		"fec", fec, "profile", in.Profile, "crypt", crypt, "mtu", in.MTU)
	return listener{m.name, s, func() []any {
		st := s.Stats()
		return append(statsAttrs(st.ServerStats),
			"sessions", st.Accepted, "refused", st.Refused, "reaped", st.Reaped, "auth_failures", st.AuthFailures)
	}}, nil
}

func statsAttrs(s message.ServerStats) []any {
	return []any{"requests", s.Requests, "replies", s.Replies, "bad_requests", s.BadRequests,
		"oversized", s.Oversized, "errors", s.Errors}
}
