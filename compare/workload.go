package compare

import (
	"bytes"
	"context"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/udplab/udplab/message"
)

// Workload is what the client does in every run: Messages greetings, one
// every Interval, each name Size bytes long and carrying its sequence
// number, so any udplab server answers it unchanged.
type Workload struct {
	// Kind is what the client does: KindGreet (the default), KindBulk or
	// KindSessions.
	Kind string
	// Bytes is what a bulk flow sends; zero means DefaultBulkBytes.
	Bytes int64
	// Sessions is how many conversations the sessions workload holds at
	// once; zero means DefaultSessions.
	Sessions int
	// IdleHold is how long the sessions workload holds them idle; zero
	// means DefaultIdleHold.
	IdleHold time.Duration
	// Messages is how many greetings to send. Zero means DefaultMessages.
	Messages int
	// Interval is the time between two sends; zero sends as fast as the
	// transport accepts them, which measures goodput.
	Interval time.Duration
	// Size is the length of each name in bytes: the sequence number,
	// zero-padded. Zero means DefaultSize. It must hold the largest
	// sequence number's digits. For bulk it is each message's length,
	// and zero means each mode's own (modes.Traits.BulkMessage).
	Size int
	// Wait is how long to wait for stragglers after the last send or the
	// last reply, whichever is later. Zero means automatic: four times the
	// slowest round trip seen so far, and at least MinWait. While sending,
	// the wait is one Interval longer: a run is only declared stalled when
	// Send has blocked that long.
	Wait time.Duration
}

// Workload defaults and limits.
const (
	// DefaultMessages keeps the default comparison (four links, seven
	// modes, a second of greetings each) near half a minute, so that a
	// first `go run` from empty caches, building included, stays within
	// 90 s on two cores; --messages or --repeat buys a steadier tail.
	DefaultMessages = 200
	DefaultInterval = 5 * time.Millisecond
	DefaultSize     = 16
	// DefaultSessions and DefaultIdleHold are the sessions workload's:
	// enough sessions that one's cost stands out of the noise, held long
	// enough for a few of KCP's 10 ms ticks a thousand times over.
	DefaultSessions = 1000
	DefaultIdleHold = 5 * time.Second
	// MaxSize keeps "Hello NAME!\n" within one raw datagram (65507 bytes).
	MaxSize = 65507 - greetingExtra
	// MinWait is the shortest automatic wait for stragglers: long enough
	// for a few of KCP's retransmission timeouts on a fast link.
	MinWait = 500 * time.Millisecond
	// waitRTTs is how many of the slowest round trips seen the automatic
	// wait lasts: a reply lost at the tail needs a timeout and a resend.
	waitRTTs = 4
	// progressEvery is how many sends pass between progress reports, so
	// that reporting costs nothing per message.
	progressEvery = 25
)

// greeting's framing around the name: "Hello " and "!\n".
const (
	greetPrefix   = "Hello "
	greetSuffix   = "!\n"
	greetingExtra = len(greetPrefix) + len(greetSuffix)
)

// The workloads.
const (
	KindGreet    = "greet"    // greetings, one every Interval, each answered
	KindBulk     = "bulk"     // Bytes from client to server as fast as the mode allows
	KindSessions = "sessions" // Sessions conversations opened, greeted once and held idle
)

// Kinds lists the workloads, for help and errors.
func Kinds() []string { return []string{KindGreet, KindBulk, KindSessions} }

func (w Workload) withDefaults() Workload {
	if w.Kind == "" {
		w.Kind = KindGreet
	}
	switch w.Kind {
	case KindBulk:
		if w.Bytes == 0 {
			w.Bytes = DefaultBulkBytes
		}
		return w // Size zero: each mode's own
	case KindSessions:
		if w.Sessions == 0 {
			w.Sessions = DefaultSessions
		}
		if w.IdleHold == 0 {
			w.IdleHold = DefaultIdleHold
		}
	}
	if w.Messages == 0 {
		w.Messages = DefaultMessages
	}
	if w.Size == 0 {
		w.Size = DefaultSize
	}
	return w
}

// Validate reports a workload that cannot run, naming the field and what
// would be accepted.
func (w Workload) Validate() error {
	w = w.withDefaults()
	switch w.Kind {
	case KindGreet:
	case KindBulk:
		return w.validateBulk()
	case KindSessions:
		return w.validateSessions()
	default:
		return fmt.Errorf("workload %q: want one of %s", w.Kind, strings.Join(Kinds(), ", "))
	}
	switch {
	case w.Messages < 1:
		return fmt.Errorf("messages %d: want 1 or more", w.Messages)
	case w.Interval < 0:
		return fmt.Errorf("interval %v: want 0 (as fast as possible) or more", w.Interval)
	case w.Wait < 0:
		return fmt.Errorf("wait %v: want 0 (automatic) or more", w.Wait)
	case w.Size > MaxSize:
		return fmt.Errorf("size %d: want at most %d bytes, so the greeting fits one UDP datagram", w.Size, MaxSize)
	case w.Size < digits(w.Messages-1):
		return fmt.Errorf("size %d: want at least %d bytes to hold sequence numbers up to %d", w.Size, digits(w.Messages-1), w.Messages-1)
	}
	return nil
}

func (w Workload) validateBulk() error {
	switch {
	case w.Bytes < 1 || w.Bytes > MaxBulkBytes:
		return fmt.Errorf("bytes %d: want 1 to %d (1GB)", w.Bytes, int64(MaxBulkBytes))
	case w.Size != 0 && w.Size < MinBulkSize:
		return fmt.Errorf("size %d: want at least %d bytes for bulk: a sequence number and data", w.Size, MinBulkSize)
	}
	return nil
}

func (w Workload) validateSessions() error {
	switch {
	case w.Sessions < 1:
		return fmt.Errorf("sessions %d: want 1 or more", w.Sessions)
	case w.IdleHold < 0:
		return fmt.Errorf("idle hold %v: want more than 0", w.IdleHold)
	}
	return nil
}

func digits(n int) int {
	d := 1
	for ; n >= 10; n /= 10 {
		d++
	}
	return d
}

// appendName appends message seq's name: seq in decimal, zero-padded to
// size bytes.
func appendName(dst []byte, seq, size int) []byte {
	for range size - digits(seq) {
		dst = append(dst, '0')
	}
	var d [20]byte
	i := len(d)
	for {
		i--
		d[i] = byte('0' + seq%10)
		seq /= 10
		if seq == 0 {
			break
		}
	}
	return append(dst, d[i:]...)
}

// parseGreeting returns the sequence number of the greeting reply, or false
// if it is not exactly "Hello NAME!\n" for a name this workload sent.
func parseGreeting(reply []byte, size, n int) (int, bool) {
	if len(reply) != size+greetingExtra || !bytes.HasPrefix(reply, []byte(greetPrefix)) ||
		!bytes.HasSuffix(reply, []byte(greetSuffix)) {
		return 0, false
	}
	seq := 0
	for _, c := range reply[len(greetPrefix) : len(greetPrefix)+size] {
		if c < '0' || c > '9' {
			return 0, false
		}
		seq = seq*10 + int(c-'0')
		if seq >= n {
			return 0, false // also stops overflow on long names
		}
	}
	return seq, true
}

// outcome is what driving one conversation measured, beyond the Recorder.
type outcome struct {
	sent        int
	late        int           // replies read after the wait ended, while settling
	duration    time.Duration // first send to the last send or the last reply delivered, whichever is later
	stalled     bool          // sending stopped making progress before the end
	interrupted bool          // the context ended the run early
}

// driveOpts are what a run adds to the workload's own settings.
type driveOpts struct {
	// progress, if not nil, is called with the number of messages sent
	// since its last call.
	progress func(int)
	// minWait is the shortest automatic straggler wait: long enough for
	// the transport to retransmit a few times before any round trip is
	// known. Zero means MinWait.
	minWait time.Duration
	// settle, if not nil, reports whether everything sent has been
	// accounted for. After the wait, replies that still arrive are counted
	// as late (not delivered) until settle is true or settleMax has passed.
	settle    func() bool
	settleMax time.Duration
	// beforeClose, if not nil, runs once the run is over and before c is
	// closed, while its socket can still be read about.
	beforeClose func()
}

// settlePoll is how often the settle condition is checked.
const settlePoll = time.Millisecond

// drive runs w over c and records every reply in rec; it closes c when
// done. It returns when every message has a reply or when nothing has been
// sent or received for the straggler wait (then, with opts.settle, after the
// replies still on their way have been counted as late). Per message it
// allocates nothing; the transports may.
func (w Workload) drive(ctx context.Context, c message.Conn, rec *Recorder, opts driveOpts) (outcome, error) {
	w = w.withDefaults()
	d := newDriver(w, c, rec)
	defer d.closeConn()
	unwatch := context.AfterFunc(ctx, d.closeConn)
	defer unwatch()

	d.wg.Add(2)
	go d.send(opts.progress)
	go d.receive()
	stalled := d.watch(ctx, opts.minWait)
	if ctx.Err() == nil && opts.settle != nil {
		d.ending.Store(true)
		d.settle(ctx, opts.settle, opts.settleMax)
	}
	if opts.beforeClose != nil {
		opts.beforeClose()
	}
	d.closeConn()
	d.wg.Wait()

	o := outcome{sent: int(d.sent.Load()), late: int(d.late.Load()), stalled: stalled, interrupted: ctx.Err() != nil}
	o.duration = time.Duration(max(d.lastArrival.Load(), d.lastSend.Load()))
	if err := context.Cause(ctx); err != nil {
		return o, err
	}
	return o, nil
}

// driver is one run of a workload: a sender, a receiver that owns the
// Recorder, and the watcher that decides when the run is over.
type driver struct {
	w     Workload
	c     message.Conn
	rec   *Recorder
	start time.Time

	sendAt      []atomic.Int64 // offset of each send from start, +1 so zero means unsent
	sent        atomic.Int64
	lastSend    atomic.Int64
	lastArrival atomic.Int64 // offset of the last reply delivered
	slowest     atomic.Int64 // slowest round trip delivered
	ending      atomic.Bool  // the wait is over: replies from now on are late
	late        atomic.Int64
	allIn       chan struct{}
	sendDone    chan struct{}
	stop        chan struct{}
	wg          sync.WaitGroup
	closeOnce   sync.Once
}

func newDriver(w Workload, c message.Conn, rec *Recorder) *driver {
	return &driver{
		w: w, c: c, rec: rec, start: time.Now(),
		sendAt: make([]atomic.Int64, w.Messages),
		allIn:  make(chan struct{}), sendDone: make(chan struct{}), stop: make(chan struct{}),
	}
}

func (d *driver) since() int64 { return int64(time.Since(d.start)) }

// closeConn ends the conversation by closing c, not by a context, which
// keeps the transports' Send and Receive off their context-watching path,
// which allocates.
func (d *driver) closeConn() {
	d.closeOnce.Do(func() { close(d.stop); d.c.Close() })
}

// send is the sender goroutine.
func (d *driver) send(progress func(int)) {
	defer d.wg.Done()
	defer close(d.sendDone)
	w, n := d.w, d.w.Messages
	name := make([]byte, 0, w.Size)
	timer := time.NewTimer(0)
	defer timer.Stop()
	<-timer.C
	reported := 0
	for seq := range n {
		if w.Interval > 0 {
			// Pace against the start, not the previous send, so a late
			// wake-up does not push every later message back.
			if wait := time.Duration(int64(seq)*int64(w.Interval) - d.since()); wait > 0 {
				timer.Reset(wait)
				select {
				case <-timer.C:
				case <-d.stop:
					return
				}
			}
		}
		name = appendName(name[:0], seq, w.Size)
		d.sendAt[seq].Store(d.since() + 1)
		if err := d.c.Send(context.Background(), name); err != nil {
			d.sendAt[seq].Store(0)
			return // closed: the run is over
		}
		d.sent.Store(int64(seq + 1))
		d.lastSend.Store(d.since())
		if progress != nil && seq+1-reported >= progressEvery {
			progress(seq + 1 - reported)
			reported = seq + 1
		}
	}
	if progress != nil && n > reported {
		progress(n - reported)
	}
}

// receive is the receiver goroutine, which owns rec.
func (d *driver) receive() {
	defer d.wg.Done()
	n := d.w.Messages
	allIn := false
	for {
		reply, err := d.c.Receive(context.Background())
		if err != nil {
			return // closed
		}
		if d.ending.Load() {
			d.late.Add(1)
			continue
		}
		now := d.since()
		seq, ok := parseGreeting(reply, d.w.Size, n)
		var at int64
		if ok {
			at = d.sendAt[seq].Load()
		}
		if at == 0 {
			d.rec.Bad()
			continue
		}
		rtt := now - (at - 1)
		d.rec.Reply(seq, time.Duration(rtt))
		if rtt > d.slowest.Load() {
			d.slowest.Store(rtt)
		}
		d.lastArrival.Store(now)
		if !allIn && d.rec.Delivered() == n {
			allIn = true
			close(d.allIn)
			// Keep reading: a duplicate may still come, and must be
			// counted rather than left in the socket.
		}
	}
}

// watch waits for the end: every reply in, the context done, or quiet for
// the straggler wait. It reports a stall: Send blocked for a whole wait.
func (d *driver) watch(ctx context.Context, minWait time.Duration) (stalled bool) {
	if minWait == 0 {
		minWait = MinWait
	}
	wait := func() time.Duration {
		if d.w.Wait > 0 {
			return d.w.Wait
		}
		return max(minWait, waitRTTs*time.Duration(d.slowest.Load()))
	}
	timer := time.NewTimer(wait())
	defer timer.Stop()
	for {
		select {
		case <-d.allIn:
			return false
		case <-ctx.Done():
			return false
		case <-timer.C:
			last := time.Duration(max(d.lastSend.Load(), d.lastArrival.Load()))
			quiet := wait()
			sending := true
			select {
			case <-d.sendDone:
				sending = false
			default:
				quiet += d.w.Interval // the sender may be pacing, not stuck
			}
			if left := last + quiet - time.Since(d.start); left > 0 {
				timer.Reset(left)
				continue
			}
			return sending // Send has blocked for a whole wait: a dead link
		}
	}
}

// settle waits until done reports that every datagram is accounted for,
// or until max has passed.
func (d *driver) settle(ctx context.Context, done func() bool, max time.Duration) {
	deadline := time.Now().Add(max)
	tick := time.NewTicker(settlePoll)
	defer tick.Stop()
	for !done() && time.Now().Before(deadline) {
		select {
		case <-tick.C:
		case <-ctx.Done():
			return
		}
	}
}
