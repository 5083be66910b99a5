package main

import (
	"context"
	"flag"
	"log/slog"

	"github.com/udplab/udplab/message"
	"github.com/udplab/udplab/raw"
	"github.com/udplab/udplab/reliable"
)

var serveCmd = &command{
	name:      "serve",
	usageLine: "[--raw ADDR|off] [--reliable ADDR|off] [--reply greet|time|echo] [reliable flags]",
	short:     "run the raw and the reliable greeting servers side by side",
	long: `Serve runs two servers that answer the same requests: a bare UDP server
(one datagram per message, no acknowledgement, no retransmission, no
ordering) and a reliable one (KCP with Reed-Solomon FEC). With the default
--reply greet, NAME gets "Hello NAME!\n" and exit gets "Good bye!\n".

It logs one line per listener when ready and a summary of each on SIGINT or
SIGTERM, then exits 0.`,
	setFlags: func(fs *flag.FlagSet) func(context.Context, *stdio) error {
		var (
			rawAddr, relAddr, reply, level string
			cfg                            reliable.Config
		)
		addrVar(fs, &rawAddr, "raw", defaultRawAddr, true, "`ADDR` the raw UDP server listens on, or off")
		addrVar(fs, &relAddr, "reliable", defaultReliableAddr, true, "`ADDR` the reliable (KCP) server listens on, or off")
		replyVar(fs, &reply)
		reliableFlags(fs, &cfg, true)
		logLevelVar(fs, &level)
		return func(ctx context.Context, st *stdio) error {
			if rawAddr == "off" && relAddr == "off" {
				return usagef("--raw and --reliable are both off: nothing to serve")
			}
			if err := checkReliable(&cfg); err != nil {
				return err
			}
			h, err := message.Lookup(reply)
			if err != nil {
				return usagef("%v", err)
			}
			log := newLogger(st, level)
			cfg.Logger = log
			return serve(ctx, log, rawAddr, relAddr, reply, h, &cfg)
		}
	},
}

func serve(ctx context.Context, log *slog.Logger, rawAddr, relAddr, reply string, h message.Handler, cfg *reliable.Config) error {
	var (
		rs *raw.Server
		ks *reliable.Server
	)
	if rawAddr != "off" {
		s, err := raw.Listen(rawAddr, h, &raw.ServerConfig{Logger: log})
		if err != nil {
			return err
		}
		rs = s
		defer rs.Close()
		log.Info("raw: serving", "addr", rs.Addr(), "reply", reply, "delivery", "unreliable-unordered")
	}
	if relAddr != "off" {
		s, err := reliable.Listen(relAddr, h, cfg)
		if err != nil {
			return err
		}
		ks = s
		defer ks.Close()
		in := ks.Config() // what the server runs with, defaults filled in
		crypt := in.Crypt
		if crypt == "" {
			crypt = "off"
		}
		log.Info("reliable: serving", "addr", ks.Addr(), "reply", reply, "delivery", "reliable-ordered",
			"fec", in.FECString(), "profile", in.Profile, "crypt", crypt, "mtu", in.MTU)
	}
	<-ctx.Done()
	log.Info("shutting down", "cause", context.Cause(ctx))
	if rs != nil {
		rs.Close()
		log.Info("raw: summary", statsAttrs(rs.Stats())...)
	}
	if ks != nil {
		ks.Close()
		st := ks.Stats()
		log.Info("reliable: summary", append(statsAttrs(st.ServerStats),
			"sessions", st.Accepted, "refused", st.Refused, "reaped", st.Reaped, "auth_failures", st.AuthFailures)...)
	}
	return nil
}

func statsAttrs(s message.ServerStats) []any {
	return []any{"requests", s.Requests, "replies", s.Replies, "bad_requests", s.BadRequests,
		"oversized", s.Oversized, "errors", s.Errors}
}
