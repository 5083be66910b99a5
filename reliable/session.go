package reliable

import (
	"encoding/binary"
	"errors"
	"net"
	"net/netip"
	"os"
	"sync"
	"sync/atomic"
	"time"

	kcp "github.com/xtaci/kcp-go/v5"

	"github.com/udplab/udplab/internal/udpsock"
)

// errEmpty is a non-blocking read's: no message is there yet.
var errEmpty = errors.New("reliable: no message waiting")

// session is one conversation on a listener's socket: kcp-go's KCP core
// and udplab's I/O around it, in kcp-go's formats. It has no goroutine of
// its own: the listener's read loop puts packets in, its timer ticks it
// while it has work, and its reader (a server's handler goroutine, or a
// Conn's caller) takes messages out. An idle session is this struct, the
// KCP core and its place in the timer for its idle deadline.
type session struct {
	l     *listener
	addr  net.Addr
	key   netip.AddrPort // the gate's name for addr
	to    netip.AddrPort // addr for a batch.Writer
	conv  uint32
	entry timerEntry
	// admitted: accept took s and its end is still to be told (see
	// listener.forget). Guarded by l.mu.
	admitted bool

	mu     sync.Mutex
	kcp    *kcp.KCP
	closed bool
	enc    fecEncoder
	dec    *fecDecoder // nil until FEC traffic arrives, and after fecHold without
	// fecForeign: the peer's FEC shard counts are not the listener's;
	// its shards rebuild nothing, its data shards still reach KCP.
	fecForeign bool
	tx         [][]byte  // the packets of the flush under way
	rest       []byte    // what the last Read's buffer could not take of a message
	ackDue     bool      // input came: acknowledgements may wait for a flush
	active     time.Time // the last request answered, or the start: idle from here
	serving    bool      // a handler goroutine is reading (server)

	readable, writable chan struct{} // cap 1: something changed
	die                chan struct{}
	rd, wd             atomic.Int64 // deadlines, UnixNano; 0: none

	// A server's: the request reader, and what its drain watches.
	r   *reader
	act *activity
}

func newSession(l *listener, conv uint32, addr net.Addr, now time.Time) *session {
	s := &session{
		l: l, addr: addr, key: sourceKey(addr), to: udpsock.AddrPort(addr), conv: conv, active: now,
		readable: make(chan struct{}, 1), writable: make(chan struct{}, 1), die: make(chan struct{}),
	}
	s.entry = timerEntry{owner: s, index: -1}
	s.kcp = newKCP(conv, s.output, l.cfg, l.kcpMTU)
	return s
}

// output is KCP's: it puts one packet of a flush in s.tx, under FEC and
// the cipher, as kcp-go's session does (sess.go, newUDPSession and
// postProcess). Called with s.mu held.
func (s *session) output(buf []byte, size int) {
	if size < kcp.IKCP_OVERHEAD {
		return
	}
	l := s.l
	p := getPacket()[:l.hdr+size]
	copy(p[l.hdr:], buf[:size])
	var parity [][]byte
	if l.fec != nil {
		parity = s.enc.encode(l.fec, p, l.crypt.headerRoom(), time.Now())
	}
	s.tx = append(s.tx, l.crypt.sealInPlace(p))
	for _, q := range parity {
		s.tx = append(s.tx, l.crypt.sealInPlace(q))
	}
}

// sendTx writes the flush's packets in one batch. Called with s.mu held.
func (s *session) sendTx() {
	if len(s.tx) == 0 {
		return
	}
	s.l.io.write(s.tx, s.to, s.addr)
	for i, p := range s.tx {
		putPacket(p)
		s.tx[i] = nil
	}
	s.tx = s.tx[:0]
}

// flush sends what KCP has to send now and schedules the next tick while
// segments await acknowledgement. Called with s.mu held.
func (s *session) flush(now time.Time) {
	next := kcpFlush(s.kcp, kcp.IKCP_FLUSH_FULL)
	s.ackDue = false
	s.sendTx()
	if s.kcp.WaitSnd() > 0 {
		s.l.timer.schedule(&s.entry, now.Add(time.Duration(next)*time.Millisecond))
	}
}

// input hands KCP one decrypted packet from the peer, through the FEC
// decoder when it is a shard, as kcp-go's kcpInput does. It reports
// whether a message is waiting to be read.
func (s *session) input(plain []byte, now time.Time) (readable bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return false
	}
	switch binary.LittleEndian.Uint16(plain[4:]) {
	case fecTypeData, fecTypeParity:
		if len(plain) < fecOverhead {
			return false
		}
		s.inputFEC(plain, now)
	case fecTypeOOB:
		// kcp-go hands out-of-band data to a callback udplab never sets.
		atomic.AddUint64(&kcp.DefaultSnmp.OOBPackets, 1)
		return false
	default:
		s.kcpInput(plain, kcp.IKCP_PACKET_REGULAR)
	}
	s.ackDue = true
	s.sendTx() // Input flushes when the window slid
	s.schedule(now)
	if s.kcp.WaitSnd() < s.l.cfg.SendWindow {
		notify(s.writable)
	}
	if s.kcp.PeekSize() > 0 {
		notify(s.readable)
		return true
	}
	return false
}

func (s *session) inputFEC(plain []byte, now time.Time) {
	if binary.LittleEndian.Uint16(plain[4:]) == fecTypeData {
		s.kcpInput(plain[fecOverhead:], kcp.IKCP_PACKET_REGULAR)
	}
	f := s.l.fec
	if f == nil || s.fecForeign {
		return // a peer with FEC, a server without, or other shard counts: its data still counts
	}
	if s.dec == nil {
		s.dec = newFECDecoder(f)
	}
	for _, r := range s.dec.decode(f, plain, now) {
		if sz := int(binary.LittleEndian.Uint16(r)); sz >= 2 && sz <= len(r) {
			s.kcpInput(r[2:sz], kcp.IKCP_PACKET_FEC)
		}
		putPacket(r)
	}
	if s.dec.foreign {
		s.fecForeign = true
		s.dec.release()
		s.dec = nil
		s.l.fecRefused.Add(1)
	}
}

func (s *session) kcpInput(data []byte, typ kcp.PacketType) {
	if s.kcp.Input(data, typ, s.l.ackNoDelay) != 0 {
		atomic.AddUint64(&kcp.DefaultSnmp.KCPInErrors, 1)
	}
}

// schedule puts s in the timer for its next work. Called with s.mu held.
func (s *session) schedule(now time.Time) {
	if at := s.next(now); !at.IsZero() {
		s.l.timer.schedule(&s.entry, at)
	}
}

// next is when s next has work, or zero: its next flush while it has
// acknowledgements or segments in flight, the end of its FEC state's
// hold, and (on a server) its idle deadline. Called with s.mu held.
func (s *session) next(now time.Time) time.Time {
	var at time.Time
	sooner := func(t time.Time) {
		if at.IsZero() || t.Before(at) {
			at = t
		}
	}
	if s.ackDue || s.kcp.WaitSnd() > 0 {
		sooner(now.Add(s.l.interval))
	}
	if s.enc.holding() {
		sooner(s.enc.last.Add(fecHold))
	}
	if s.dec != nil {
		sooner(s.dec.last.Add(fecHold))
	}
	if s.l.idle > 0 {
		// Past its deadline while a serve runs (tick does not reap
		// then), the session is looked at again an idle time later,
		// not at once and again.
		deadline := s.active.Add(s.l.idle)
		if !deadline.After(now) {
			deadline = now.Add(s.l.idle)
		}
		sooner(deadline)
	}
	return at
}

// tick is the timer's: it flushes what is due, lets go of FEC state held
// past fecHold, and reaps the session once idle past its deadline.
func (s *session) tick(now time.Time) time.Time {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return time.Time{}
	}
	if s.ackDue || s.kcp.WaitSnd() > 0 {
		s.flush(now)
		if s.kcp.WaitSnd() < s.l.cfg.SendWindow {
			notify(s.writable)
		}
	}
	if s.enc.holding() && now.Sub(s.enc.last) >= fecHold {
		s.enc.release(s.l.fec)
	}
	if s.dec != nil && now.Sub(s.dec.last) >= fecHold {
		s.dec.release()
		s.dec = nil
	}
	if s.kcp.WaitSnd() == 0 {
		s.tx = nil // an idle session holds no batch
	}
	idle := s.l.idle > 0 && !s.serving && !now.Before(s.active.Add(s.l.idle))
	at := s.next(now)
	s.mu.Unlock()
	if idle {
		s.l.idled(s)
		return time.Time{}
	}
	return at
}

// Read returns the next message, or as much of it as b holds (the rest on
// the next Read), as kcp-go's UDPSession.Read does. On a server it does not
// block: with nothing waiting it returns errEmpty (see Server.endServe).
func (s *session) Read(b []byte) (int, error) {
	var wait *time.Timer
	defer func() {
		if wait != nil {
			wait.Stop()
		}
	}()
	for {
		n, err := s.tryRead(b)
		if err != errEmpty || s.l.serve != nil {
			return n, err
		}
		if err := s.await(s.readable, &s.rd, &wait); err != nil {
			return 0, err
		}
	}
}

func (s *session) tryRead(b []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.rest) > 0 {
		n := copy(b, s.rest)
		s.rest = s.rest[n:]
		return n, nil
	}
	size := s.kcp.PeekSize()
	switch {
	case size > 0 && len(b) >= size:
		s.kcp.Recv(b)
	case size > 0:
		msg := make([]byte, size)
		s.kcp.Recv(msg)
		s.rest = msg[copy(b, msg):]
		size = len(b)
	case s.closed:
		return 0, net.ErrClosed
	default:
		return 0, errEmpty
	}
	// Taking a message may reopen a full receive window, which KCP then
	// announces at its next flush. (Owing acknowledgements, s is
	// scheduled already.)
	if !s.ackDue {
		s.ackDue = true
		s.schedule(time.Now())
	}
	return size, nil
}

// Write sends b as one message (cut into segments if longer than one).
func (s *session) Write(b []byte) (int, error) { return s.WriteBuffers([][]byte{b}) }

// WriteBuffers queues each of v as kcp-go's WriteBuffers does, under one
// lock, and flushes; it blocks while the send window is full.
func (s *session) WriteBuffers(v [][]byte) (int, error) {
	var wait *time.Timer
	defer func() {
		if wait != nil {
			wait.Stop()
		}
	}()
	for {
		if n, ok, err := s.tryWrite(v); ok || err != nil {
			return n, err
		}
		if err := s.await(s.writable, &s.wd, &wait); err != nil {
			return 0, err
		}
	}
}

// await blocks until ready or the session's end fires (nil), or the
// deadline in dl passes (os.ErrDeadlineExceeded), reusing the timer in
// *wait.
func (s *session) await(ready chan struct{}, dl *atomic.Int64, wait **time.Timer) error {
	var expired <-chan time.Time
	if d := dl.Load(); d != 0 {
		left := time.Until(time.Unix(0, d))
		if left <= 0 {
			return os.ErrDeadlineExceeded
		}
		if *wait == nil {
			*wait = time.NewTimer(left)
		} else {
			(*wait).Reset(left)
		}
		expired = (*wait).C
	}
	select {
	case <-ready:
	case <-expired:
		return os.ErrDeadlineExceeded
	case <-s.die:
	}
	return nil
}

func (s *session) tryWrite(v [][]byte) (n int, ok bool, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return 0, false, net.ErrClosed
	}
	if s.kcp.WaitSnd() >= s.l.cfg.SendWindow {
		return 0, false, nil
	}
	mss := s.l.kcpMTU - kcp.IKCP_OVERHEAD
	for _, b := range v {
		n += len(b)
		for len(b) > mss {
			s.kcp.Send(b[:mss])
			b = b[mss:]
		}
		s.kcp.Send(b)
	}
	s.flush(time.Now())
	return n, true, nil
}

// settled reports whether everything s sent has been acknowledged.
func (s *session) settled() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.closed || s.kcp.WaitSnd() == 0
}

// SetReadDeadline sets when a blocked Read gives up, and wakes it.
func (s *session) SetReadDeadline(t time.Time) error {
	s.rd.Store(unixNano(t))
	notify(s.readable)
	return nil
}

// SetWriteDeadline sets when a blocked Write gives up, and wakes it.
func (s *session) SetWriteDeadline(t time.Time) error {
	s.wd.Store(unixNano(t))
	notify(s.writable)
	return nil
}

func unixNano(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixNano()
}

// RemoteAddr returns the peer's address.
func (s *session) RemoteAddr() net.Addr { return s.addr }

// GetConv returns the conversation id, as kcp-go's sessions do.
func (s *session) GetConv() uint32 { return s.conv }

// Close ends the session, wakes its blocked calls and takes it out of its
// listener. KCP has no FIN: the peer learns nothing.
func (s *session) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	close(s.die)
	if s.l.fec != nil {
		s.enc.release(s.l.fec)
	}
	if s.dec != nil {
		s.dec.release()
		s.dec = nil
	}
	s.rest = nil
	s.mu.Unlock()
	s.l.timer.remove(&s.entry)
	s.l.forget(s)
	return nil
}

// notify wakes whoever waits on c, without waiting for them.
func notify(c chan struct{}) {
	select {
	case c <- struct{}{}:
	default:
	}
}
