package compare

import (
	"context"
	"net"
	"time"

	"github.com/udplab/udplab/internal/sockstat"
	"github.com/udplab/udplab/link"
	"github.com/udplab/udplab/message"
	"github.com/udplab/udplab/modes"
)

// testReadBuffer, when set by a test, replaces the large receive buffers
// with small ones, so that the kernel's drops can be provoked and counted.
var testReadBuffer int

// localRun is one simulated run's plumbing: the link, and the server's and
// the client's loopback sockets.
type localRun struct {
	link *link.Link
	*sockets
	client *countingConn // the client's link-wrapped socket, counting what it reads
}

// sockets are a server's and a client's loopback sockets, and what the
// kernel knows about them.
type sockets struct {
	spc, cpc     *net.UDPConn
	ssock, csock sockstat.Socket
	scount       *sockstat.Counter // the server socket's drops, read as it closes too
	ccount       *sockstat.Counter // the client socket's

	drops struct {
		server, client uint64
		known          bool
	}
}

// newLocalRun starts a link with spec and binds the two sockets.
func newLocalRun(spec link.Spec) (*localRun, error) {
	l, err := link.New(spec, nil)
	if err != nil {
		return nil, err
	}
	s, err := newSockets()
	if err != nil {
		l.Close()
		return nil, err
	}
	return &localRun{link: l, sockets: s}, nil
}

// newSockets binds a server's and a client's sockets on loopback, each
// with large receive buffers, so that the kernel drops as little as it
// can; what it still drops is read from its counters.
func newSockets() (*sockets, error) {
	e := &sockets{}
	var err error
	loopback := &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)}
	if e.spc, err = net.ListenUDP("udp4", loopback); err == nil {
		e.cpc, err = net.ListenUDP("udp4", loopback)
	}
	if err != nil {
		e.close()
		return nil, err
	}
	for _, pc := range []*net.UDPConn{e.spc, e.cpc} {
		if testReadBuffer > 0 {
			pc.SetReadBuffer(testReadBuffer)
			continue
		}
		sockstat.SetBuffers(pc)
	}
	e.ssock, e.csock = sockstat.Of(e.spc), sockstat.Of(e.cpc)
	e.scount, e.ccount = sockstat.NewCounter(e.spc), sockstat.NewCounter(e.cpc)
	return e, nil
}

// wrap returns the server's and the client's sockets with their egress
// through the link's down and up directions, counting what each offers.
func (e *sockets) wrap(l *link.Link) (server, client *countingConn) {
	server = &countingConn{PacketConn: l.Wrap(countedClose{e.spc, e.scount}, link.Down)}
	client = &countingConn{PacketConn: l.Wrap(countedClose{e.cpc, e.ccount}, link.Up)}
	return server, client
}

// start serves h with tr on the server socket and opens the client's
// conversation, each through its direction of the link. The server and
// the Conn take their sockets over.
// It also returns how long the Conn took to open, in ms: a handshake's.
func (e *localRun) start(ctx context.Context, tr modes.Transport, h message.Handler) (modes.Server, message.Conn, float64, error) {
	sw, cw := e.wrap(e.link)
	e.client = cw
	srv, err := tr.Serve(sw, h)
	if err != nil {
		return nil, nil, 0, err
	}
	begin := time.Now()
	conn, err := tr.Dial(ctx, e.client, e.spc.LocalAddr())
	if err != nil {
		srv.Close()
		return nil, nil, 0, err
	}
	return srv, conn, ms(time.Since(begin)), nil
}

// settled returns the condition that ends a raw run's settling: every
// datagram either side wrote has been dropped, delivered or read, and the
// server has answered every request it read. Then nothing is on its way,
// and every greeting's fate is in a counter. It must hold on two polls in
// a row, with the same totals, so a datagram between two counters is not
// missed.
//
// With parity (fec), datagrams are not greetings, so the counters cannot
// be matched one for one: settled is then the link holding nothing twice
// in a row.
func (e *localRun) settled(srv modes.Server, parity bool) func() bool {
	var last [2]uint64
	return func() bool {
		up, down := e.link.Stats(link.Up), e.link.Stats(link.Down)
		st := srv.Stats()
		t, _ := sockstat.Read()
		sd, _ := t.Drops(e.ssock)
		cd, _ := t.Drops(e.csock)
		now := [2]uint64{up.Offered + st.Requests, down.Offered + e.client.reads.Load()}
		steady := now == last
		last = now
		if parity {
			return steady && drained(up) && drained(down)
		}
		return steady && drained(up) && drained(down) &&
			st.Requests+sd == up.Delivered &&
			st.Requests == st.Replies+st.BadRequests+st.Oversized+st.Errors+st.Consumed &&
			st.Replies == down.Offered &&
			e.client.reads.Load()+cd == down.Delivered
	}
}

// stranded counts, once a raw run is torn down, the datagrams the link
// had delivered that nobody finished with: requests in the server's
// socket it never read, requests it read and never answered (a teardown
// in the middle of a batch), and replies in the client's socket it never
// read. Each is a greeting still on its way when the run ended, as one in
// the link is. Socket drops are counted apart.
func (e *localRun) stranded(st message.ServerStats, up, down link.Stats) uint64 {
	left := func(in, out uint64) uint64 { return in - min(in, out) }
	read := st.Requests
	settled := st.Replies + st.BadRequests + st.Oversized + st.Errors + st.Consumed
	return left(up.Delivered, read+e.drops.server) + left(read, settled) +
		left(down.Delivered, e.client.reads.Load()+e.drops.client)
}

// drained reports whether every datagram offered to a direction has left
// it: dropped, delivered, or refused by the socket.
func drained(s link.Stats) bool {
	return s.Offered+s.Duplicated == s.Dropped()+s.Delivered+s.WriteErrors
}

// readDrops reads both sockets' kernel drop counters: now, or as each
// socket closed, when an interrupted run closed it early.
func (e *sockets) readDrops() {
	sd, sok := e.scount.Drops()
	cd, cok := e.ccount.Drops()
	e.drops.server, e.drops.client, e.drops.known = sd, cd, sok && cok
}

// countedClose is a socket whose Close first takes its drop counter's last
// reading: once closed, the kernel forgets the socket and its count.
type countedClose struct {
	net.PacketConn
	c *sockstat.Counter
}

func (c countedClose) Close() error {
	c.c.Close()
	return c.PacketConn.Close()
}

// socketDrops is both sockets' drops, or nil when unknown.
func (e *sockets) socketDrops() *uint64 {
	if !e.drops.known {
		return nil
	}
	n := e.drops.server + e.drops.client
	return &n
}

// close releases whatever is still open; the server and the Conn close
// their sockets themselves, and closing twice is harmless.
func (e *localRun) close() {
	e.link.Close()
	e.sockets.close()
}

func (e *sockets) close() {
	if e.spc != nil {
		e.spc.Close()
	}
	if e.cpc != nil {
		e.cpc.Close()
	}
}
