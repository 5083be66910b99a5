package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"strings"
	"syscall"
	"time"

	"github.com/udplab/udplab/internal/cliflag"
	"github.com/udplab/udplab/message"
	"github.com/udplab/udplab/modes"
)

var chatCmd = &command{
	name:      "chat",
	usageLine: "[--listen ADDR] [--peer ADDR] [--mode MODE] [mode flags]",
	short:     "send lines to a peer and print what it sends",
	long: `Chat sends each line typed to the peer as one message and prints each
message received as ">>>ADDR: text". "byebye" from either side ends the
chat on both, as in the tutorials' TCP chat.

The modes are serve's and compare's: ` + modeList() + `;
both sides use the same one. In raw and fec each side needs --listen (its
own address) and --peer (the other's). In the connected modes (kcp,
kcp-fec, tcp, quic) one side listens with --listen and accepts the first
peer, the other dials with --peer. A quic listener logs its certificate's
SHA-256 for the dialer's --pin; a quic dialer gives up after 5s when
nothing answers, so start the listener first.

Received text is shown escaped as Go's %q escapes it (ESC as \x1b), so a
peer cannot drive the terminal; --raw-output prints it as it came. In raw
and fec only datagrams from --peer's address are read: chat says at the
end how many from elsewhere it ignored.

At the end of input chat keeps receiving for --linger, so messages in flight
still print and KCP can finish delivering what was sent; then it exits. It
also ends on SIGINT or SIGTERM, and with exit status 1 when the transport
closes the conversation under it (kcp-go does when a packet from the peer's
address starts another conversation).`,
	setFlags: func(fs *flag.FlagSet) func(context.Context, *stdio) error {
		var (
			mode, listen, peer string
			linger             time.Duration
			rawOutput          bool
			settings           modes.Settings
		)
		modeVar(fs, &mode)
		cliflag.Addr(fs, &listen, "listen", "", false, "this side's `ADDR`")
		cliflag.Addr(fs, &peer, "peer", "", false, "the other side's `ADDR`")
		cliflag.Duration(fs, &linger, "linger", time.Second, 0, "after end of input, keep receiving for `D` before exiting")
		rawOutputVar(fs, &rawOutput)
		modes.Flags(fs, &settings, modes.All(), false)
		return func(ctx context.Context, st *stdio) error {
			m := lookupMode(mode)
			if err := checkModeFlags(fs, []*modes.Mode{m}, false, "--mode is "+m.Name); err != nil {
				return err
			}
			settings.Logger = newLogger(st, "info") // a listener's certificate; warnings
			tr, err := newTransport(m, &settings)
			if err != nil {
				return err
			}
			t := tr.Traits()
			switch {
			case !t.Connected && (listen == "" || peer == ""):
				return usagef("%s chat needs both --listen and --peer", m.Name)
			case t.Connected && (listen == "") == (peer == ""):
				return usagef("%s chat takes --listen (to accept a peer) or --peer (to dial one), not both", m.Name)
			}
			if t.Connected && listen != "" {
				fmt.Fprintf(st.err, "waiting for a peer on %s\n", listen)
			}
			c, err := openChat(ctx, tr, listen, peer, st)
			if err != nil && ctx.Err() != nil {
				return nil // interrupted while waiting: nothing was said, nothing is lost
			}
			tm := textMode(rawOutput)
			if err != nil {
				return tm.err(err)
			}
			err = chat(ctx, c, m, t, linger, tm, st)
			reportForeign(c, peer, st)
			return tm.err(err)
		}
	},
}

// openChat opens this side of the chat. A dialer of a connected mode waits
// for the listener to come up, as a KCP dialer can start first too.
func openChat(ctx context.Context, tr modes.Transport, listen, peer string, st *stdio) (message.Conn, error) {
	return untilListening(ctx, func() (message.Conn, error) { return tr.Chat(ctx, listen, peer) }, func() {
		fmt.Fprintf(st.err, "waiting for the peer at %s\n", peer)
	})
}

// untilListening calls dial until it is not refused (nothing listens there
// yet) or ctx ends, pacing the tries; waiting, if not nil, is called once,
// at the first refusal.
func untilListening(ctx context.Context, dial func() (message.Conn, error), waiting func()) (message.Conn, error) {
	for tries := 0; ; tries++ {
		c, err := dial()
		if !errors.Is(err, syscall.ECONNREFUSED) {
			return c, err
		}
		if tries == 0 && waiting != nil {
			waiting()
		}
		select {
		case <-ctx.Done():
			return nil, context.Cause(ctx)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// reportForeign says how many datagrams a datagram mode's chat dropped
// for coming from an address other than the peer's.
func reportForeign(c message.Conn, peer string, st *stdio) {
	if f, ok := c.(interface{ Foreign() uint64 }); ok && f.Foreign() > 0 {
		fmt.Fprintf(st.err, "ignored %d datagrams from addresses other than %s\n", f.Foreign(), peer)
	}
}

// byebye ends a chat, typed on either side.
const byebye = "byebye"

// chat runs until end of input, ctx's end, or a failed receive or send. It
// owns two goroutines: one reads input and sends it, one receives and
// prints; both end before it returns, except a read of input blocked when
// ctx ends, which the process exit ends.
func chat(ctx context.Context, c message.Conn, m *modes.Mode, t modes.Traits, linger time.Duration, tm textMode, st *stdio) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	recvDone := make(chan error, 1)
	go func() { recvDone <- printMessages(ctx, c, tm, st) }()
	sendDone := make(chan error, 1)
	go func() { sendDone <- sendLines(ctx, c, m, t, st) }()
	err, rerr, pending := awaitEnd(ctx, sendDone, recvDone, linger)
	cancel()
	c.Close()
	if pending != nil {
		rerr = <-pending
	} else if errors.Is(rerr, net.ErrClosed) && !errors.Is(rerr, io.EOF) {
		// Chat had not closed c, nor had the peer: the transport did, as
		// kcp-go does when a packet from the peer's address starts another
		// conversation.
		rerr = fmt.Errorf("%w: %v", errClosedUnder, rerr)
	}
	if err == nil && !peerLeft(rerr) {
		err = rerr
	}
	if errors.Is(err, context.Canceled) || errors.Is(err, net.ErrClosed) {
		err = nil
	}
	return err
}

// errClosedUnder ends a chat whose conversation the transport closed.
var errClosedUnder = errors.New("the conversation was closed under the chat")

// awaitEnd waits for the chat's end: a failed send, the end of input and
// then linger, a receive's end, or ctx's. It returns the send's error, the
// receive's, and recvDone itself if the receive is still pending (nil once
// its result was taken), so the caller waits for it exactly once.
func awaitEnd(ctx context.Context, sendDone, recvDone <-chan error, linger time.Duration) (err, rerr error, pending <-chan error) {
	var lingering <-chan time.Time
	for {
		select {
		case err = <-sendDone:
			if err != nil || linger <= 0 {
				return err, nil, recvDone
			}
			timer := time.NewTimer(linger)
			defer timer.Stop()
			sendDone, lingering = nil, timer.C
		case rerr = <-recvDone:
			return err, rerr, nil
		case <-lingering:
			return err, nil, recvDone
		case <-ctx.Done():
			return err, nil, recvDone
		}
	}
}

// peerLeft reports whether a receive ended because the chat is over: this
// side closed it, the peer said byebye, or the peer closed a connection.
func peerLeft(err error) bool {
	return errors.Is(err, context.Canceled) || errors.Is(err, net.ErrClosed) ||
		errors.Is(err, errByebye) || errors.Is(err, io.EOF)
}

// errByebye ends the receiving side when the peer says byebye.
var errByebye = errors.New("the peer said " + byebye)

// printMessages prints each message received until a receive fails or the
// peer says byebye.
func printMessages(ctx context.Context, c message.Conn, tm textMode, st *stdio) error {
	for {
		msg, err := c.Receive(ctx)
		if err != nil {
			return err
		}
		fmt.Fprintf(st.out, ">>>%s: %s", c.RemoteAddr(), tm.line(msg))
		if strings.TrimSuffix(strings.TrimSuffix(string(msg), "\n"), "\r") == byebye {
			return errByebye
		}
	}
}

// sendLines sends each non-empty input line until the input ends or the
// line byebye is sent; a line longer than the mode carries is refused and
// the chat goes on.
func sendLines(ctx context.Context, c message.Conn, m *modes.Mode, t modes.Traits, st *stdio) error {
	lines := newLineReader(st.in, t.MaxMessage)
	for {
		line, size, err := lines.next()
		switch {
		case errors.Is(err, io.EOF):
			return nil
		case err != nil:
			return err
		case size > t.MaxMessage:
			fmt.Fprintln(st.out, tooLong(m, t, size))
		case size > 0:
			if err := c.Send(ctx, line); err != nil {
				return err
			}
			if string(line) == byebye {
				return nil
			}
		}
	}
}
