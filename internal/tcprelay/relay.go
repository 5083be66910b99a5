// Package tcprelay puts TCP programs behind a simulated link, as a
// split-TCP performance-enhancing proxy does: it accepts kernel TCP
// connections, and carries each one's bytes to a server through a TCP
// connection between two user-space TCP/IP stacks (internal/netstack)
// whose IP packets cross a link.Link, one packet per datagram.
//
// # The three legs
//
//	client ==kernel TCP== near stack ~~netstack TCP over the link~~ far stack ==kernel TCP== server
//
// The near side accepts a kernel connection from the client (the
// client's kernel completes its handshake before the relay even sees
// the connection), starts a netstack host for it on its own loopback UDP
// socket, and connects across the link to the far host, which listens on
// one loopback UDP socket for every connection. Only once the far host
// has accepted that middle connection does the far side connect to the
// server: setup to the server is lazy, after the middle leg's handshake
// has crossed the link both ways. The near side's packets take the
// link's Up direction, the far side's its Down direction.
//
// # What the end programs see
//
// Each end program talks to a kernel TCP peer on loopback, which never
// loses a packet: neither end's kernel sees a loss, a retransmission or
// the link's delay in its round-trip time. The link's loss, delay, rate
// and outages act on the middle leg only, whose TCP recovers from them;
// the end programs feel that recovery as stalls (a lost segment holds
// back everything behind it until it is retransmitted, 200 ms or more
// after a timeout; the middle leg runs without RACK, see middleStack),
// as reduced throughput (the middle leg's congestion window, and the
// kernel buffers on both sides filling up behind it), and as bytes
// arriving late. A connect to the relay succeeds at once,
// whatever the link does; a server that refuses or cannot be reached is
// seen by the client as a connection accepted and then reset.
//
// # Close and reset
//
// A FIN is passed on as a FIN: when one end closes its writing half
// (shutdown(SHUT_WR), CloseWrite), the relay reads EOF and closes the
// writing half of the next leg, so half-closed connections work both
// ways. When both directions have ended, every leg is closed. An error on
// any leg (a reset, a failed write, a failed connect) resets every leg of
// that connection: the kernel legs with SO_LINGER 0, the middle leg with
// netstack.Abort, so a RST arrives as a RST at the other end and never
// as a FIN that could make a cut stream look complete. Close resets
// every connection in flight.
//
// # Bounds
//
// At most Config.MaxConns connections are relayed at once; a client past
// the bound is reset at once and counted as refused. Each connection
// copies through four buffers of a fixed size; everything else it holds
// is in TCP buffers, bounded by each stack. There is no idle timeout: a
// silent connection is relayed as long as both ends keep it.
package tcprelay

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/udplab/udplab/internal/netstack"
	"github.com/udplab/udplab/internal/sockstat"
	"github.com/udplab/udplab/link"
)

// Config configures a Relay. Link and To are required.
type Config struct {
	// Link carries the middle leg: Up on the way to the server, Down on
	// the way back. The Relay does not close it.
	Link *link.Link
	// To is the server's TCP address.
	To string
	// MaxConns bounds the connections relayed at once. Zero means
	// DefaultMaxConns.
	MaxConns int
	// DialTimeout bounds the far side's connect to To. Zero means
	// DefaultDialTimeout.
	DialTimeout time.Duration
	// MTU is the middle leg's IP MTU, and so its datagrams' largest
	// size. Zero means netstack.DefaultMTU; it must not exceed the link's
	// MTU, if the link has one, or every full-sized segment is dropped.
	MTU int
	// Logger gets failed connects at debug level. Nil means
	// slog.Default().
	Logger *slog.Logger
}

// populateConfig returns a copy of cfg with defaults filled in.
func populateConfig(cfg Config) Config {
	if cfg.MaxConns == 0 {
		cfg.MaxConns = DefaultMaxConns
	}
	if cfg.DialTimeout == 0 {
		cfg.DialTimeout = DefaultDialTimeout
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	return cfg
}

// validateConfig rejects a populated config that cannot work.
func validateConfig(cfg Config) error {
	switch {
	case cfg.Link == nil:
		return errors.New("tcprelay: no Link")
	case cfg.To == "":
		return errors.New("tcprelay: no server address")
	case cfg.MaxConns < 0:
		return fmt.Errorf("tcprelay: MaxConns %d: want 1 or more", cfg.MaxConns)
	case cfg.DialTimeout < 0:
		return fmt.Errorf("tcprelay: DialTimeout %v: want a positive duration", cfg.DialTimeout)
	}
	return nil
}

// Stats counts what a Relay did.
type Stats struct {
	Accepted uint64 // client connections relayed
	Refused  uint64 // client connections reset at once: MaxConns were open
	Active   int    // connections being relayed now
	// MiddleFailed counts connections reset because the middle leg's
	// handshake did not get across the link in time.
	MiddleFailed uint64
	// DialFailed counts connections reset because the server refused or
	// did not answer.
	DialFailed uint64
	// Reset counts connections that ended with a reset (an error on a
	// leg, a failed connect, or Close) rather than two FINs.
	Reset uint64
	// BytesUp and BytesDown are the bytes written to the server and to
	// the clients: what crossed the link.
	BytesUp, BytesDown uint64
	// Near is the near stacks' counters, summed over every connection:
	// what they sent went Up. Far is the far stack's: what it sent went
	// Down. Their Retransmissions are the middle leg's.
	Near, Far netstack.Stats
}

// Relay relays TCP connections through a link. Its methods are safe for
// concurrent use.
type Relay struct {
	cfg     Config
	stack   netstack.Config    // both ends of every middle leg
	ln      net.Listener       // kernel TCP, from the clients
	far     *netstack.Listener // the far host
	farAddr net.Addr

	ctx    context.Context // canceled by Close: ends every dial
	cancel context.CancelFunc

	nearSlots, farSlots chan struct{} // a token per connection open on each side

	mu     sync.Mutex
	closed bool
	conns  map[*pair]struct{} // every connection open on either side
	near   netstack.Stats     // closed near hosts' counters, summed

	accepted, refused, middleFailed, dialFailed, reset, up, down atomic.Uint64

	wg        sync.WaitGroup
	closeOnce sync.Once
}

// pair is one relayed connection as one side sees it: the kernel leg and
// the middle leg. Either may be nil until it is connected.
type pair struct {
	mu     sync.Mutex
	legs   []net.Conn
	nearNS *netstack.Conn // the near side's middle leg, for its counters
}

func (p *pair) add(c net.Conn) {
	p.mu.Lock()
	p.legs = append(p.legs, c)
	p.mu.Unlock()
}

// abort resets every leg of p.
func (p *pair) abort() {
	p.mu.Lock()
	legs := p.legs
	p.mu.Unlock()
	for _, c := range legs {
		abort(c)
	}
}

// abort resets c: a RST instead of a FIN, unsent and unread data dropped.
func abort(c net.Conn) {
	if netstack.Abort(c) {
		return
	}
	if tc, ok := c.(*net.TCPConn); ok {
		_ = tc.SetLinger(0)
	}
	_ = c.Close()
}

// Listen accepts kernel TCP connections on addr and relays each to
// cfg.To through cfg.Link, until Close.
func Listen(addr string, cfg Config) (*Relay, error) {
	cfg = populateConfig(cfg)
	if err := validateConfig(cfg); err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("tcprelay: %w", err)
	}
	fpc, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		ln.Close()
		return nil, fmt.Errorf("tcprelay: the far stack's socket: %w", err)
	}
	sockstat.SetBuffers(fpc)
	stack := middleStack(cfg.MTU)
	far, err := netstack.Listen(cfg.Link.Wrap(fpc, link.Down), &stack)
	if err != nil { // Listen closed fpc
		ln.Close()
		return nil, fmt.Errorf("tcprelay: %w", err)
	}
	r := &Relay{
		cfg: cfg, stack: stack, ln: ln, far: far, farAddr: far.Addr(),
		nearSlots: make(chan struct{}, cfg.MaxConns),
		farSlots:  make(chan struct{}, cfg.MaxConns),
		conns:     make(map[*pair]struct{}),
	}
	r.ctx, r.cancel = context.WithCancel(context.Background())
	r.wg.Add(2)
	go func() {
		defer r.wg.Done()
		r.acceptNear()
	}()
	go func() {
		defer r.wg.Done()
		r.acceptFar()
	}()
	return r, nil
}

// Addr is the address clients connect to.
func (r *Relay) Addr() net.Addr { return r.ln.Addr() }

// Stack says how the middle leg's TCP/IP stacks are set up, for reports.
func (r *Relay) Stack() string { return r.stack.Describe() }

// middleStack is how both ends of a middle leg set up their stacks: with
// the middle leg's MTU, the near side's Close lingering middleLinger
// (Listen ignores it), and without RACK, whose tail loss probe can leave
// a lost last segment without a retransmission timer, hanging the
// connection after a half-close for good (see
// netstack.Config.DisableRACK). An end program waits on the middle
// leg's last bytes and FIN, and nothing else would end the wait: a lost
// tail costs it a timeout instead.
func middleStack(mtu int) netstack.Config {
	return netstack.Config{MTU: mtu, Linger: middleLinger, DisableRACK: true}
}

// track registers p, or reports false if the Relay is closed.
func (r *Relay) track(p *pair) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return false
	}
	r.conns[p] = struct{}{}
	return true
}

// untrack forgets p, adding its near host's counters to the closed ones'.
func (r *Relay) untrack(p *pair) {
	var st netstack.Stats
	if p.nearNS != nil {
		st = p.nearNS.Stats()
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	delete(r.conns, p)
	addStats(&r.near, st)
}

// acceptNear takes the clients' connections until the listener closes.
func (r *Relay) acceptNear() {
	for {
		c, err := r.ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			r.cfg.Logger.Debug("tcprelay: accept", "err", err)
			select { // out of file descriptors, say: try again soon
			case <-time.After(10 * time.Millisecond):
			case <-r.ctx.Done():
				return
			}
			continue
		}
		select {
		case r.nearSlots <- struct{}{}:
		default:
			r.refused.Add(1)
			abort(c)
			continue
		}
		p := &pair{legs: []net.Conn{c}}
		if !r.track(p) {
			abort(c)
			<-r.nearSlots
			return
		}
		r.accepted.Add(1)
		r.wg.Add(1)
		go func() {
			defer r.wg.Done()
			defer func() { <-r.nearSlots }()
			defer r.untrack(p)
			r.serveNear(p, c)
		}()
	}
}

// serveNear connects the client's connection c across the link and
// relays it.
func (r *Relay) serveNear(p *pair, c net.Conn) {
	m, err := r.dialMiddle()
	if err != nil {
		if r.ctx.Err() == nil { // not Close's doing
			r.middleFailed.Add(1)
		}
		r.reset.Add(1)
		r.cfg.Logger.Debug("tcprelay: middle leg", "client", c.RemoteAddr(), "err", err)
		abort(c)
		return
	}
	p.mu.Lock()
	p.legs = append(p.legs, m)
	p.nearNS = m
	p.mu.Unlock()
	r.mu.Lock()
	closed := r.closed
	r.mu.Unlock()
	if closed { // Close may have aborted p before m joined it
		p.abort()
		r.reset.Add(1)
		return
	}
	r.pipe(p, c, m, nil, &r.down, true)
}

// dialMiddle starts a near host on a fresh loopback socket and connects
// it to the far host across the link.
func (r *Relay) dialMiddle() (*netstack.Conn, error) {
	pc, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	sockstat.SetBuffers(pc)
	ctx, cancel := context.WithTimeout(r.ctx, middleDialTimeout)
	defer cancel()
	return netstack.Dial(ctx, r.cfg.Link.Wrap(pc, link.Up), r.farAddr, &r.stack)
}

// acceptFar takes the middle leg's connections until the far host closes.
func (r *Relay) acceptFar() {
	for {
		m, err := r.far.Accept()
		if err != nil {
			return // only Close ends it
		}
		select {
		case r.farSlots <- struct{}{}:
		default: // not one of ours: the near side opens no more than this
			abort(m)
			continue
		}
		p := &pair{legs: []net.Conn{m}}
		if !r.track(p) {
			abort(m)
			<-r.farSlots
			return
		}
		r.wg.Add(1)
		go func() {
			defer r.wg.Done()
			defer func() { <-r.farSlots }()
			defer r.untrack(p)
			r.serveFar(p, m)
		}()
	}
}

// serveFar connects the middle leg m to the server and relays it.
func (r *Relay) serveFar(p *pair, m net.Conn) {
	d := net.Dialer{Timeout: r.cfg.DialTimeout}
	s, err := d.DialContext(r.ctx, "tcp", r.cfg.To)
	if err != nil {
		if r.ctx.Err() == nil { // not Close's doing
			r.dialFailed.Add(1)
		}
		r.cfg.Logger.Debug("tcprelay: connect", "to", r.cfg.To, "err", err)
		abort(m) // the near side sees the reset and passes it on
		return
	}
	p.add(s)
	r.mu.Lock()
	closed := r.closed
	r.mu.Unlock()
	if closed {
		p.abort()
		return
	}
	r.pipe(p, m, s, &r.up, nil, false)
}

// halfCloser is a connection whose writing half closes alone.
type halfCloser interface{ CloseWrite() error }

// pipe copies a to b and b to a until both directions end. A FIN read
// closes the other side's writing half; an error resets every leg of p.
// It counts the bytes written to b in ab and those written to a in ba,
// either of which may be nil, and a reset in Stats.Reset if countReset
// (one side of each connection counts it).
func (r *Relay) pipe(p *pair, a, b net.Conn, ab, ba *atomic.Uint64, countReset bool) {
	var failed atomic.Bool
	fail := func() {
		if !failed.Swap(true) {
			p.abort()
		}
	}
	done := make(chan struct{})
	r.wg.Add(1)
	go func() {
		defer r.wg.Done()
		defer close(done)
		if err := relay(b, a, ab); err != nil {
			fail()
		}
	}()
	if err := relay(a, b, ba); err != nil {
		fail()
	}
	<-done
	if failed.Load() {
		if countReset {
			r.reset.Add(1)
		}
		return
	}
	_ = a.Close()
	_ = b.Close() // the near side's middle leg lingers for its last bytes
}

// relay copies src to dst until src's EOF, then closes dst's writing half.
// It returns the first error of either, nil after a clean EOF.
func relay(dst, src net.Conn, n *atomic.Uint64) error {
	buf := make([]byte, copyBuffer)
	for {
		k, rerr := src.Read(buf)
		if k > 0 {
			if _, err := dst.Write(buf[:k]); err != nil {
				return err
			}
			if n != nil {
				n.Add(uint64(k))
			}
		}
		if rerr == io.EOF {
			if hc, ok := dst.(halfCloser); ok {
				return hc.CloseWrite()
			}
			return nil
		}
		if rerr != nil {
			return rerr
		}
	}
}

// Stats returns the Relay's counters.
func (r *Relay) Stats() Stats {
	r.mu.Lock()
	near := r.near
	var open []*netstack.Conn
	for p := range r.conns {
		p.mu.Lock()
		if p.nearNS != nil {
			open = append(open, p.nearNS)
		}
		p.mu.Unlock()
	}
	active := len(r.nearSlots)
	r.mu.Unlock()
	for _, c := range open {
		addStats(&near, c.Stats())
	}
	return Stats{
		Accepted: r.accepted.Load(), Refused: r.refused.Load(), Active: active,
		MiddleFailed: r.middleFailed.Load(), DialFailed: r.dialFailed.Load(), Reset: r.reset.Load(),
		BytesUp: r.up.Load(), BytesDown: r.down.Load(),
		Near: near, Far: r.far.Stats(),
	}
}

// addStats adds b's counters to a's.
func addStats(a *netstack.Stats, b netstack.Stats) {
	a.PacketsSent += b.PacketsSent
	a.BytesSent += b.BytesSent
	a.HeaderBytesSent += b.HeaderBytesSent
	a.PacketsReceived += b.PacketsReceived
	a.BadPackets += b.BadPackets
	a.WriteErrors += b.WriteErrors
	a.Unroutable += b.Unroutable
	a.Throttled += b.Throttled
	a.Retransmissions += b.Retransmissions
	a.Timeouts += b.Timeouts
	a.SegmentsSent += b.SegmentsSent
}

// Close stops accepting, resets every connection in flight, and returns
// once every goroutine of the Relay has stopped and every socket it
// opened is closed. Safe to call twice.
func (r *Relay) Close() error {
	r.closeOnce.Do(func() {
		r.cancel()
		_ = r.ln.Close()
		r.mu.Lock()
		r.closed = true
		pairs := make([]*pair, 0, len(r.conns))
		for p := range r.conns {
			pairs = append(pairs, p)
		}
		r.mu.Unlock()
		for _, p := range pairs {
			p.abort()
		}
		_ = r.far.Close()
		r.wg.Wait()
	})
	return nil
}
