package compare

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/udplab/udplab/link"
	"github.com/udplab/udplab/message"
	"github.com/udplab/udplab/modes"
)

// flow is one bulk conversation over a link: its sockets, its server and
// client, and the sink that counts what arrives.
type flow struct {
	mode           string
	tr             modes.Transport
	traits         modes.Traits
	socks          *sockets
	server, client *countingConn // each end's link-wrapped socket
	srv            modes.Server
	conn           message.Conn
	sink           *sink
	connectMS      float64

	sent     atomic.Int64 // messages Send accepted
	sentB    atomic.Int64 // their bytes
	replies  atomic.Int64 // anything the server sent back as a message
	sendDone chan struct{}
	wg       sync.WaitGroup
	closing  sync.Once

	// What the runner decided.
	t0             time.Time // the flows' common start
	ended, stalled bool
	endAt          time.Duration // when the runner ended the flow, from the start
	lastBytes      int64         // delivered at the last check
	lastSent       int64         // sent at the last check
	lastChange     time.Time
}

// bulkSize is the message size a bulk flow of a mode uses: the workload's,
// or the mode's own best.
func (c *Config) bulkSize(t modes.Traits) int {
	if c.Workload.Size > 0 {
		return c.Workload.Size
	}
	return t.BulkMessage
}

// startFlow binds a socket pair, serves a sink with mode name through the
// link and dials it.
func (c *Config) startFlow(ctx context.Context, name string, l *link.Link) (*flow, error) {
	_, tr := c.transport(name)
	f := &flow{mode: name, tr: tr, traits: tr.Traits(), sendDone: make(chan struct{})}
	f.sink = newSink(c.Workload.Bytes, c.bulkSize(f.traits))
	var err error
	if f.socks, err = newSockets(); err != nil {
		return nil, err
	}
	f.server, f.client = f.socks.wrap(l)
	if f.srv, err = tr.Serve(f.server, f.sink.handle); err != nil {
		f.socks.close()
		return nil, err
	}
	begin := time.Now()
	if f.conn, err = tr.Dial(ctx, f.client, f.socks.spc.LocalAddr()); err != nil {
		f.srv.Close()
		f.socks.close()
		return nil, err
	}
	f.connectMS = ms(time.Since(begin))
	return f, nil
}

// start sends the flow's messages from now on, and reads (and counts)
// anything that comes back.
func (f *flow) start(t0 time.Time, progress func(int)) {
	f.sink.restart(t0)
	f.t0, f.lastChange = t0, t0
	f.wg.Add(2)
	go f.send(progress)
	go f.drain()
}

// send is the sender goroutine: every message, in order, as fast as Send
// takes them. Closing the Conn stops it.
func (f *flow) send(progress func(int)) {
	defer f.wg.Done()
	defer close(f.sendDone)
	s := f.sink
	buf := make([]byte, s.size)
	reported := int64(0)
	for seq := range s.n {
		msg := bulkMessage(buf, seq, s.size, s.total)
		if err := f.conn.Send(context.Background(), msg); err != nil {
			return
		}
		f.sent.Add(1)
		sent := f.sentB.Add(int64(len(msg)))
		if progress != nil && sent-reported >= progressBytes {
			progress(int((sent - reported) / progressBytes))
			reported += (sent - reported) / progressBytes * progressBytes
		}
	}
}

// progressBytes is a bulk flow's unit of progress.
const progressBytes = 1000

// drain is the receiver goroutine: a sink answers nothing, so whatever
// arrives is counted as a bad reply.
func (f *flow) drain() {
	defer f.wg.Done()
	for {
		if _, err := f.conn.Receive(context.Background()); err != nil {
			return
		}
		f.replies.Add(1)
	}
}

// stop ends the flow: its Conn, then its goroutines, then its server.
func (f *flow) stop() {
	f.closing.Do(func() {
		f.conn.Close()
		f.wg.Wait()
		f.srv.Close()
		f.socks.readDrops()
		f.socks.close()
	})
}

// bulkPoll is how often the runner looks at its flows.
const bulkPoll = 5 * time.Millisecond

// await watches the flows until each has ended: every byte in; or, for a
// flow that does not retransmit, its sending done and nothing more
// arriving; or, for one that does, no progress for its straggler wait
// (stalled). It returns early when ctx ends.
func (c *Config) await(ctx context.Context, l *link.Link, spec link.Spec, flows []*flow) {
	tick := time.NewTicker(bulkPoll)
	defer tick.Stop()
	for {
		all := true
		for _, f := range flows {
			if !f.ended {
				c.check(f, l, spec, len(flows) == 1)
			}
			all = all && f.ended
		}
		if all {
			return
		}
		select {
		case <-tick.C:
		case <-ctx.Done():
			return
		}
	}
}

// check decides whether f has ended.
func (c *Config) check(f *flow, l *link.Link, spec link.Spec, alone bool) {
	select {
	case <-f.sink.done:
		f.end()
		return
	default:
	}
	now := time.Now()
	got, _ := f.sink.progress()
	sent := f.sent.Load()
	moved := got != f.lastBytes || sent != f.lastSent
	f.lastBytes, f.lastSent = got, sent
	if moved {
		f.lastChange = now
	}
	sending := true
	select {
	case <-f.sendDone:
		sending = false
	default:
	}
	quiet := now.Sub(f.lastChange)
	if f.traits.Delivery == modes.Unreliable {
		if sending {
			return
		}
		// Nothing is resent: once the link holds nothing and nothing
		// arrives, the flow is over; sharing the link, it is over when
		// nothing has arrived for longer than a packet can spend in it.
		if alone && !moved && drained(l.Stats(link.Up)) && drained(l.Stats(link.Down)) || quiet > settleMax(spec) {
			f.end()
		}
		return
	}
	if quiet > c.minWait(f.tr, spec) {
		// A reliable flow that stops short has stalled, whether its
		// sender is blocked or has handed everything to the transport.
		f.end()
		f.stalled = true
	}
}

// end marks the flow over, now.
func (f *flow) end() {
	f.ended = true
	f.endAt = time.Since(f.t0)
}

// runBulk runs one mode's bulk flow over a simulated link, with the
// competing flow beside it when there is one.
func (c *Config) runBulk(ctx context.Context, name string, lk Link) (Result, error) {
	res := Result{Mode: name, Link: lk.Name, LinkSpec: lk.Spec.String(), SweepValue: lk.SweepValue, Seed: lk.Spec.Seed}
	res.Connect = c.probeConnect(ctx, name, lk.Spec)
	l, err := link.New(lk.Spec, nil)
	if err != nil {
		return res, fmt.Errorf("link %q: %w", lk.Name, err)
	}
	defer l.Close()
	flows, err := c.startFlows(ctx, name, l)
	defer func() {
		for _, f := range flows {
			f.stop()
		}
	}()
	if err != nil {
		return res, err
	}
	cpu := cpuTime()
	t0 := time.Now()
	for i, f := range flows {
		progress := c.Progress
		if i > 0 {
			progress = nil
		}
		f.start(t0, progress)
	}
	c.await(ctx, l, lk.Spec, flows)
	for _, f := range flows {
		if !f.ended { // interrupted
			f.endAt = time.Since(t0)
		}
		f.stop()
	}
	res.CPUS = (cpuTime() - cpu).Seconds()
	l.Close()
	res.Interrupted = ctx.Err() != nil
	c.fillBulk(&res, lk.Spec, l, flows)
	return res, context.Cause(ctx)
}

// startFlows starts the run's flow and, with Competing, the other one on
// the same link.
func (c *Config) startFlows(ctx context.Context, name string, l *link.Link) ([]*flow, error) {
	names := []string{name}
	if c.Competing != "" {
		names = append(names, c.Competing)
	}
	var flows []*flow
	for _, n := range names {
		f, err := c.startFlow(ctx, n, l)
		if err != nil {
			return flows, err
		}
		flows = append(flows, f)
	}
	return flows, nil
}

// fillBulk puts what the flows measured in res: the run's flow in the
// common fields and Bulk, the competing one in Competing.
func (c *Config) fillBulk(res *Result, spec link.Spec, l *link.Link, flows []*flow) {
	f := flows[0]
	up, down := l.Stats(link.Up), l.Stats(link.Down)
	b := f.bulk(spec)
	res.Bulk = b
	res.ConnectMS = &f.connectMS
	res.Sent, res.Delivered, res.InOrder, res.Duplicates = int(f.sent.Load()), b.Delivered, b.InOrder, b.Duplicates
	res.BadReplies = int(f.replies.Load()) + b.Corrupt
	res.Stalled = f.stalled
	res.DurationS, res.GoodputBPS = b.CompletionS, b.GoodputBPS
	res.PayloadBytes = uint64(b.DeliveredBytes) // overhead: wire bytes per byte delivered
	res.WireBytes = f.client.sentBytes.Load() + f.server.sentBytes.Load()
	res.WirePackets = f.client.sentPackets.Load() + f.server.sentPackets.Load()
	res.linkFigures(spec, up, down)
	res.SocketDrops = f.socks.socketDrops()
	if f.traits.Delivery != modes.Unreliable {
		unfinished := res.Sent - res.Delivered
		res.Lost.Unfinished = &unfinished
	}
	res.finish(f.traits, f.tr.Counters(), ipv4Header)
	if len(flows) < 2 {
		return
	}
	o := flows[1]
	res.Competing = o.bulk(spec)
	res.CountersShared = f.traits.Stack == "kcp-go" && o.traits.Stack == "kcp-go"
	shared(res.Bulk, res.Competing, f, o)
	res.Fairness = jain(*res.Bulk.SharedGoodputBPS, *res.Competing.SharedGoodputBPS)
}

// bulk is what f's sink counted, with its sending and the link's rate.
func (f *flow) bulk(spec link.Spec) *Bulk {
	b := &Bulk{Mode: f.mode}
	f.sink.result(b)
	b.SentBytes = f.sentB.Load()
	if !b.Complete && f.traits.Delivery != modes.Unreliable {
		// It stalled: its time is how long the run waited for it, not
		// when its last byte happened to arrive.
		b.CompletionS = f.endAt.Seconds()
		b.GoodputBPS = 0
		if b.CompletionS > 0 {
			b.GoodputBPS = float64(b.DeliveredBytes) * 8 / b.CompletionS
		}
	}
	if spec.Up.Rate > 0 {
		share := b.GoodputBPS / float64(spec.Up.Rate)
		b.LinkShare = &share
	}
	return b
}

// finished is when the flow stopped sending data that arrives: its last
// delivery, when it completed or cannot retransmit; otherwise (a stalled
// flow, or one that delivered nothing) when the run ended it.
func (f *flow) finished() time.Duration {
	_, last := f.sink.progress()
	select {
	case <-f.sink.done:
		return last
	default:
	}
	if last > 0 && f.traits.Delivery == modes.Unreliable {
		return last
	}
	return f.endAt
}

// shared sets each flow's goodput while both were sending: from the common
// start until the first to finish delivered its last byte.
func shared(a, b *Bulk, fa, fb *flow) {
	sa, sb := fa.sink, fb.sink
	window := min(fa.finished(), fb.finished())
	var ga, gb float64
	if window > 0 {
		ga = float64(sa.bytesBefore(window)) * 8 / window.Seconds()
		gb = float64(sb.bytesBefore(window)) * 8 / window.Seconds()
	}
	a.SharedGoodputBPS, b.SharedGoodputBPS = &ga, &gb
}

// errNoBulkTargets refuses a bulk or sessions workload against targets:
// a running server greets, it does not take a transfer.
var errNoBulkTargets = errors.New("--target runs the greet workload only: a running server answers greetings, it does not sink a transfer or report its memory")
