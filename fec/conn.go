package fec

import (
	"context"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/udplab/udplab/internal/deadline"
	"github.com/udplab/udplab/internal/udpsock"
	"github.com/udplab/udplab/message"
)

// Conn is an fec client conversation with one server, or with a peer Conn.
// It implements message.Conn: Send encodes, Receive decodes. Besides the
// caller's goroutines it runs one, which sends the parity of groups that
// do not fill within Flush; Close stops it. Datagrams that arrive from any
// address other than the remote one are dropped: by the kernel on a
// connected socket (see Dial), otherwise by Receive, which counts them (see
// Foreign).
type Conn struct {
	pc     net.PacketConn
	remote net.Addr
	to     udpsock.Remote // pc, sending to remote
	d, p   int

	st    counters
	enc   *encoder
	dec   *decoder
	flush *flusher

	// Owned by Receive: one receiver at a time.
	buf   []byte
	inbox inbox

	foreign atomic.Uint64
	// The deadline setters, bound once: a method value made per call
	// would allocate on every Send and Receive.
	setRead, setWrite func(time.Time) error

	closed    atomic.Bool
	closeOnce sync.Once
	closeErr  error
	stop      chan struct{} // closed by Close: stops the flusher
	done      chan struct{} // closed when the flusher has returned
}

var _ message.Conn = (*Conn)(nil)

// Dial returns a Conn to the server at addr ("host:port") over a UDP socket
// of the same address family, connected to the server, so the kernel drops
// datagrams from any other address and a closed port makes a later Send or
// Receive fail with an error matching syscall.ECONNREFUSED. A nil cfg is
// the zero Config.
func Dial(addr string, cfg *Config) (*Conn, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	uc, err := udpsock.DialConnected(addr)
	if err != nil {
		return nil, fmt.Errorf("fec: %w", err)
	}
	return NewConn(uc, uc.RemoteAddr(), cfg)
}

// NewConn returns a Conn that talks to remote over pc, which it takes over:
// Close closes pc, and so does NewConn when cfg is invalid. This is the seam
// for an impaired socket. A nil cfg is the zero Config.
func NewConn(pc net.PacketConn, remote net.Addr, cfg *Config) (*Conn, error) {
	c, err := takeOver(pc, cfg)
	if err != nil {
		return nil, err
	}
	conn := &Conn{
		pc: pc, remote: remote, to: udpsock.NewRemote(pc, remote), d: c.DataShards, p: c.ParityShards,
		buf: make([]byte, readBufferSize), flush: newFlusher(c.Flush),
		setRead: pc.SetReadDeadline, setWrite: pc.SetWriteDeadline,
		stop: make(chan struct{}), done: make(chan struct{}),
	}
	codes := newCodecs(c.DataShards, c.ParityShards)
	conn.enc = newEncoder(&c, codes, conn.flush, &conn.st, conn.to.Write)
	conn.dec = newDecoder(&c, codes, &conn.st, conn.inbox.push)
	go func() {
		defer close(conn.done)
		conn.flush.run(conn.stop, nil, nil)
	}()
	return conn, nil
}

// takeOver is a constructor's first step with a PacketConn it took over:
// it returns cfg with defaults filled in; if cfg is refused it closes pc.
func takeOver(pc net.PacketConn, cfg *Config) (Config, error) {
	c, err := cfg.populate()
	if err != nil {
		pc.Close()
	}
	return c, err
}

// Send sends msg at once as one data shard, and its group's parity if msg
// fills the group. A message larger than MaxMessage is refused with an
// error matching message.ErrTooLarge and nothing is sent.
func (c *Conn) Send(ctx context.Context, msg []byte) error {
	if len(msg) > MaxMessage {
		return fmt.Errorf("fec: send %d bytes: %w: one shard carries at most %d", len(msg), message.ErrTooLarge, MaxMessage)
	}
	if c.closed.Load() {
		return fmt.Errorf("fec: send: %w", net.ErrClosed)
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("fec: send: %w", context.Cause(ctx))
	}
	stop := deadline.Watch(ctx, c.setWrite)
	err := c.enc.send(msg)
	stop()
	if err != nil {
		return fmt.Errorf("fec: send to %s: %w", c.remote, deadline.Err(ctx, err))
	}
	return nil
}

// Receive returns the next message delivered: one whose data shard arrived
// or one rebuilt from parity, in no particular order. The slice is valid
// until the next Receive.
func (c *Conn) Receive(ctx context.Context) ([]byte, error) {
	if c.closed.Load() {
		return nil, fmt.Errorf("fec: receive: %w", net.ErrClosed)
	}
	if msg, ok := c.inbox.pop(); ok {
		return msg, nil // rebuilt along with an earlier one
	}
	stop := deadline.Watch(ctx, c.setRead)
	defer stop()
	for {
		n, ok, err := c.to.Read(c.buf)
		if err != nil {
			return nil, fmt.Errorf("fec: receive from %s: %w", c.remote, deadline.Err(ctx, err))
		}
		if !ok {
			c.foreign.Add(1)
			continue
		}
		h, shard, ok := parse(c.buf[:n], c.d, c.p)
		if !ok {
			c.st.malformed.Add(1)
			continue
		}
		c.dec.handle(h, shard)
		if msg, ok := c.inbox.pop(); ok {
			return msg, nil
		}
	}
}

// Stats returns what the Conn's FEC has done so far.
func (c *Conn) Stats() Stats { return c.st.stats() }

// Foreign counts datagrams Receive dropped because they came from another
// address. On a connected socket the kernel drops those, and it stays 0.
func (c *Conn) Foreign() uint64 { return c.foreign.Load() }

// LocalAddr returns the address datagrams are sent from.
func (c *Conn) LocalAddr() net.Addr { return c.pc.LocalAddr() }

// RemoteAddr returns the server's address.
func (c *Conn) RemoteAddr() net.Addr { return c.remote }

// Close closes the socket, waking any blocked call, and returns once the
// flushing goroutine has stopped. An open group's parity is not sent, and
// the messages missing from groups still open are counted as lost. Later
// calls return an error matching net.ErrClosed.
func (c *Conn) Close() error {
	c.closeOnce.Do(func() {
		c.closed.Store(true)
		c.closeErr = c.pc.Close()
		close(c.stop)
		<-c.done
		c.enc.close()
		c.dec.close()
	})
	return c.closeErr
}

// inbox holds the messages a datagram delivered until Receive returns
// them: one arrived and any it let the decoder rebuild. Its buffers are
// reused, so a message is valid until the next Receive.
type inbox struct {
	msgs       [][]byte
	next, used int
}

func (q *inbox) push(msg []byte) {
	if q.used == len(q.msgs) {
		q.msgs = append(q.msgs, nil)
	}
	q.msgs[q.used] = append(q.msgs[q.used][:0], msg...)
	q.used++
}

func (q *inbox) pop() ([]byte, bool) {
	if q.next == q.used {
		q.next, q.used = 0, 0
		return nil, false
	}
	q.next++
	return q.msgs[q.next-1], true
}
