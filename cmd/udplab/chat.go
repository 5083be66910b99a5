package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"strings"
	"time"

	"github.com/udplab/udplab/message"
	"github.com/udplab/udplab/raw"
	"github.com/udplab/udplab/reliable"
)

var chatCmd = &command{
	name:      "chat",
	usageLine: "--listen ADDR --peer ADDR [--mode raw|reliable|reliable-fec] [reliable flags]",
	short:     "send lines to a peer and print what it sends",
	long: `Chat sends each line typed to the peer as one message and prints each
message received as ">>>ADDR: text".

The modes are serve's and compare's: raw (bare UDP), reliable (KCP without
FEC) and reliable-fec (KCP with --fec); both sides use the same one. In raw
mode each side needs --listen (its own address) and --peer (the other's).
In the reliable modes one side listens with --listen and accepts the first
peer, the other dials with --peer.

At the end of input chat keeps receiving for --linger, so messages in flight
still print and KCP can finish delivering what was sent; then it exits. It
also ends on SIGINT or SIGTERM.`,
	setFlags: func(fs *flag.FlagSet) func(context.Context, *stdio) error {
		var (
			mode, listen, peer string
			linger             time.Duration
			cfg                reliable.Config
		)
		modeVar(fs, &mode)
		addrVar(fs, &listen, "listen", "", false, "this side's `ADDR`")
		addrVar(fs, &peer, "peer", "", false, "the other side's `ADDR`")
		durationVar(fs, &linger, "linger", time.Second, 0, "after end of input, keep receiving for `D` before exiting")
		reliableFlags(fs, &cfg, false)
		return func(ctx context.Context, st *stdio) error {
			m := lookupMode(mode)
			if err := checkModeFlags(fs, m, &cfg); err != nil {
				return err
			}
			switch {
			case !m.kcp && (listen == "" || peer == ""):
				return usagef("raw chat needs both --listen and --peer")
			case m.kcp && (listen == "") == (peer == ""):
				return usagef("%s chat takes --listen (to accept a peer) or --peer (to dial one), not both", m.name)
			}
			c, err := openChat(ctx, m, listen, peer, &cfg, st)
			if err != nil {
				return err
			}
			return chat(ctx, c, m, linger, st)
		}
	},
}

func openChat(ctx context.Context, m cliMode, listen, peer string, cfg *reliable.Config, st *stdio) (message.Conn, error) {
	if m.kcp && peer != "" {
		return m.dial(peer, cfg)
	}
	pc, err := net.ListenPacket("udp", listen)
	if err != nil {
		return nil, err
	}
	if m.kcp {
		fmt.Fprintf(st.err, "waiting for a peer on %s\n", pc.LocalAddr())
		return reliable.AcceptOne(ctx, pc, m.reliableConfig(cfg))
	}
	paddr, err := net.ResolveUDPAddr("udp", peer)
	if err != nil {
		pc.Close()
		return nil, err
	}
	return raw.NewConn(pc, paddr), nil
}

// chat runs until end of input, ctx's end, or a failed receive. It owns two
// goroutines: one reads input and sends it, one receives and prints; both end
// before it returns, except a read of input blocked when ctx ends, which the
// process exit ends.
func chat(ctx context.Context, c message.Conn, m cliMode, linger time.Duration, st *stdio) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	recvDone := make(chan error, 1)
	go func() {
		for {
			msg, err := c.Receive(ctx)
			if err != nil {
				recvDone <- err
				return
			}
			fmt.Fprintf(st.out, ">>>%s: %s\n", c.RemoteAddr(), strings.TrimSuffix(string(msg), "\n"))
		}
	}()
	sendDone := make(chan error, 1)
	go func() { sendDone <- sendLines(ctx, c, m, st) }()
	var err error
	select {
	case err = <-sendDone:
		if err == nil && linger > 0 {
			select {
			case <-time.After(linger):
			case <-ctx.Done():
			case err = <-recvDone:
				recvDone <- err
			}
		}
	case err = <-recvDone:
	case <-ctx.Done():
	}
	cancel()
	c.Close()
	if rerr := <-recvDone; err == nil && !errors.Is(rerr, context.Canceled) && !errors.Is(rerr, net.ErrClosed) {
		err = rerr
	}
	if errors.Is(err, context.Canceled) || errors.Is(err, net.ErrClosed) {
		err = nil
	}
	return err
}

// sendLines sends each non-empty input line until the input ends; a line
// longer than the mode carries is refused and the chat goes on.
func sendLines(ctx context.Context, c message.Conn, m cliMode, st *stdio) error {
	lines := newLineReader(st.in, m.maxMessage)
	for {
		line, size, err := lines.next()
		switch {
		case errors.Is(err, io.EOF):
			return nil
		case err != nil:
			return err
		case size > m.maxMessage:
			fmt.Fprintln(st.out, tooLong(m, size))
		case size > 0:
			if err := c.Send(ctx, line); err != nil {
				return err
			}
		}
	}
}
