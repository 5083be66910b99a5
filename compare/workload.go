package compare

import (
	"bytes"
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/udplab/udplab/message"
)

// Workload is what the client does in every run: Messages greetings, one
// every Interval, each name Size bytes long and carrying its sequence
// number, so any udplab server answers it unchanged.
type Workload struct {
	// Messages is how many greetings to send. Zero means DefaultMessages.
	Messages int
	// Interval is the time between two sends; zero sends as fast as the
	// transport accepts them, which measures goodput.
	Interval time.Duration
	// Size is the length of each name in bytes: the sequence number,
	// zero-padded. Zero means DefaultSize. It must hold the largest
	// sequence number's digits.
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
	DefaultMessages = 400
	DefaultInterval = 5 * time.Millisecond
	DefaultSize     = 16
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

func (w Workload) withDefaults() Workload {
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
	sent     int
	duration time.Duration // first send to the last send or the last reply delivered, whichever is later
	stalled  bool          // sending stopped making progress before the end
}

// drive runs w over c and records every reply in rec; it closes c when
// done. It returns when every message has a reply or when nothing has been
// sent or received for the straggler wait. progress, if not nil, is called
// with the number of messages sent since its last call. Per message it
// allocates nothing; the transports may.
func (w Workload) drive(ctx context.Context, c message.Conn, rec *Recorder, progress func(int)) (outcome, error) {
	w = w.withDefaults()
	n := w.Messages
	start := time.Now()
	since := func() int64 { return int64(time.Since(start)) }

	var (
		sendAt      = make([]atomic.Int64, n) // offset of each send from start, +1 so zero means unsent
		sent        atomic.Int64
		lastSend    atomic.Int64
		lastArrival atomic.Int64 // offset of the last reply delivered
		slowest     atomic.Int64 // slowest round trip delivered
		allIn       = make(chan struct{})
		sendDone    = make(chan struct{})
		stop        = make(chan struct{})
		wg          sync.WaitGroup
	)
	// Ending the conversation by closing c, not by a context, keeps the
	// transports' Send and Receive off their context-watching path, which
	// allocates.
	var closeOnce sync.Once
	closeConn := func() { closeOnce.Do(func() { close(stop); c.Close() }) }
	defer closeConn()
	unwatch := context.AfterFunc(ctx, closeConn)
	defer unwatch()

	wg.Add(2)
	go func() { // the sender
		defer wg.Done()
		defer close(sendDone)
		name := make([]byte, 0, w.Size)
		timer := time.NewTimer(0)
		defer timer.Stop()
		<-timer.C
		reported := 0
		for seq := range n {
			if w.Interval > 0 {
				// Pace against the start, not the previous send, so a late
				// wake-up does not push every later message back.
				if d := time.Duration(int64(seq)*int64(w.Interval) - since()); d > 0 {
					timer.Reset(d)
					select {
					case <-timer.C:
					case <-stop:
						return
					}
				}
			}
			name = appendName(name[:0], seq, w.Size)
			sendAt[seq].Store(since() + 1)
			if err := c.Send(context.Background(), name); err != nil {
				sendAt[seq].Store(0)
				return // closed: the run is over
			}
			sent.Store(int64(seq + 1))
			lastSend.Store(since())
			if progress != nil && seq+1-reported >= progressEvery {
				progress(seq + 1 - reported)
				reported = seq + 1
			}
		}
		if progress != nil && n > reported {
			progress(n - reported)
		}
	}()
	go func() { // the receiver, which owns rec
		defer wg.Done()
		for {
			reply, err := c.Receive(context.Background())
			if err != nil {
				return // closed
			}
			now := since()
			seq, ok := parseGreeting(reply, w.Size, n)
			var at int64
			if ok {
				at = sendAt[seq].Load()
			}
			if at == 0 {
				rec.Bad()
				continue
			}
			rtt := now - (at - 1)
			rec.Reply(seq, time.Duration(rtt))
			if rtt > slowest.Load() {
				slowest.Store(rtt)
			}
			lastArrival.Store(now)
			if rec.Delivered() == n {
				close(allIn)
				return
			}
		}
	}()

	// Watch for the end: every reply in, or quiet for the straggler wait.
	wait := func() time.Duration {
		if w.Wait > 0 {
			return w.Wait
		}
		return max(MinWait, waitRTTs*time.Duration(slowest.Load()))
	}
	timer := time.NewTimer(wait())
	defer timer.Stop()
	stalled := false
watch:
	for {
		select {
		case <-allIn:
			break watch
		case <-ctx.Done():
			break watch
		case <-timer.C:
			last := time.Duration(max(lastSend.Load(), lastArrival.Load()))
			quiet := wait()
			select {
			case <-sendDone:
			default:
				quiet += w.Interval // the sender may be pacing, not stuck
			}
			if left := last + quiet - time.Since(start); left > 0 {
				timer.Reset(left)
				continue
			}
			select {
			case <-sendDone:
			default:
				stalled = true // Send has blocked for a whole wait: a dead link
			}
			break watch
		}
	}
	closeConn()
	wg.Wait()

	o := outcome{sent: int(sent.Load()), stalled: stalled}
	o.duration = time.Duration(max(lastArrival.Load(), lastSend.Load()))
	if err := context.Cause(ctx); err != nil {
		return o, err
	}
	return o, nil
}
