package batch

import (
	"bytes"
	"errors"
	"net/netip"
	"os"
	"sync"
	"testing"
	"time"
)

// TestSegmentedRuns: runs of equal datagrams to one address go as GSO
// datagrams where the kernel can; whatever the runs (equal sizes, a
// shorter one ending a run, addresses taking turns, more than a GSO
// datagram holds), every datagram arrives whole, from its source, in
// order, with GSO and without.
func TestSegmentedRuns(t *testing.T) {
	for _, gso := range []bool{true, false} {
		src := listen(t, "udp4", "127.0.0.1:0")
		a, b := listen(t, "udp4", "127.0.0.1:0"), listen(t, "udp4", "127.0.0.1:0")
		w := NewWriter(src, 128)
		if w.mmsg == nil {
			t.Skip("no recvmmsg here")
		}
		if gso && !w.mmsg.gso {
			t.Skip("the kernel has no UDP_SEGMENT")
		}
		w.mmsg.gso = gso
		var wantA, wantB [][]byte
		add := func(to *[][]byte, ap netip.AddrPort, size, seed int) {
			p := payload(size, seed)
			*to = append(*to, p)
			w.Add(p, ap, nil)
		}
		seed := 0
		for _, run := range []struct{ n, size int }{{70, 100}, {1, 40}, {5, 1400}, {3, 30000}, {1, 0}, {2, 9}} {
			for range run.n {
				add(&wantA, apOf(a), run.size, seed)
				seed++
			}
			add(&wantA, apOf(a), run.size/2, seed) // a shorter one ends the run
			seed++
			add(&wantB, apOf(b), run.size, seed) // another address breaks it
			seed++
		}
		if _, err := w.Flush(); err != nil {
			t.Fatalf("gso=%v: Flush: %v", gso, err)
		}
		readN(t, NewReader(a, 16, 64<<10), a, wantA, apOf(src))
		readN(t, NewReader(b, 16, 64<<10), b, wantB, apOf(src))
	}
}

// TestSegmentedRunRefused: when the kernel refuses a GSO datagram, its
// segments go again one by one, each with its own error, and the
// datagrams after it still go.
func TestSegmentedRunRefused(t *testing.T) {
	src, dst := listen(t, "udp4", "127.0.0.1:0"), listen(t, "udp4", "127.0.0.1:0")
	w := NewWriter(src, 8)
	if w.mmsg == nil || !w.mmsg.gso {
		t.Skip("no UDP_SEGMENT here")
	}
	v6 := netip.MustParseAddrPort("[2001:db8::1]:9") // an IPv4 socket cannot send there
	for range 3 {
		w.Add([]byte("lost"), v6, nil)
	}
	w.Add([]byte("kept"), apOf(dst), nil)
	ms, err := w.Flush()
	if err == nil {
		t.Fatal("Flush to an IPv6 address from an IPv4 socket: no error")
	}
	for i, m := range ms[:3] {
		if m.Err == nil {
			t.Errorf("message %d to %v: no error", i, v6)
		}
	}
	if ms[3].Err != nil {
		t.Errorf("message after the refused run: %v", ms[3].Err)
	}
	if !w.mmsg.gso {
		t.Error("GSO turned off by an address error, not by EIO")
	}
	readN(t, NewReader(dst, 4, 64), dst, [][]byte{[]byte("kept")}, apOf(src))
}

// TestCoalescedRuns: a Reader with GRO on cuts the runs the kernel
// coalesced back into their datagrams, whole, in order, from their
// source, pooled or not.
func TestCoalescedRuns(t *testing.T) {
	pool := &sync.Pool{New: func() any { b := make([]byte, 4*(64<<10)); return &b }}
	for _, pooled := range []bool{false, true} {
		src, dst := listen(t, "udp4", "127.0.0.1:0"), listen(t, "udp4", "127.0.0.1:0")
		w := NewWriter(src, 64)
		r := NewReader(dst, 4, 64<<10)
		if pooled {
			r = NewPooledReader(dst, 4, 64<<10, pool)
		}
		if !r.EnableGRO() || !w.mmsg.gso {
			t.Skip("the kernel has no UDP_GRO or no UDP_SEGMENT")
		}
		var want [][]byte
		for i, size := range []int{100, 100, 100, 100, 60, 7, 7, 7, 1400, 1400, 1400, 3} {
			p := payload(size, i)
			want = append(want, p)
			w.Add(p, apOf(dst), nil)
		}
		if _, err := w.Flush(); err != nil {
			t.Fatal(err)
		}
		dst.SetReadDeadline(time.Now().Add(10 * time.Second))
		ms, err := r.Read()
		if err != nil {
			t.Fatal(err)
		}
		if len(ms) <= 4 {
			t.Errorf("pooled=%v: a Read of 4 buffers returned %d datagrams: nothing was coalesced", pooled, len(ms))
		}
		for _, m := range ms {
			if !bytes.Equal(m.Buf, want[0]) || m.Addr != apOf(src) {
				t.Fatalf("pooled=%v: read %d bytes from %v, want the %d-byte datagram next from %v", pooled, len(m.Buf), m.Addr, len(want[0]), apOf(src))
			}
			want = want[1:]
		}
		readN(t, r, dst, want, apOf(src))
		r.Release()
		if pooled && (r.arena != nil || r.msgs[0].Buf != nil) {
			t.Error("a released Reader still holds its buffers")
		}
	}
}

// TestPooledReaderIdle: a pooled Reader waiting on an idle socket holds
// no buffer, and reads once a datagram comes.
func TestPooledReaderIdle(t *testing.T) {
	pool := &sync.Pool{New: func() any { b := make([]byte, 4*2048); return &b }}
	src, dst := listen(t, "udp4", "127.0.0.1:0"), listen(t, "udp4", "127.0.0.1:0")
	r := NewPooledReader(dst, 4, 2048, pool)
	dst.SetReadDeadline(time.Now().Add(20 * time.Millisecond))
	if _, err := r.Read(); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("Read of an idle socket: %v", err)
	}
	if r.arena != nil {
		t.Error("a pooled Reader holds its buffers while the socket is idle")
	}
	src.WriteTo([]byte("x"), dst.LocalAddr())
	readN(t, r, dst, [][]byte{[]byte("x")}, apOf(src))
	r.Release()
}

// TestTimestamps: with timestamps on, a datagram's At is when it reached
// the socket (on loopback, within the send call), not when it was read;
// so is each of a coalesced run's.
func TestTimestamps(t *testing.T) {
	src, dst := listen(t, "udp4", "127.0.0.1:0"), listen(t, "udp4", "127.0.0.1:0")
	r := NewReader(dst, 4, 64<<10)
	if !r.EnableTimestamps() {
		t.Skip("no SO_TIMESTAMPNS here")
	}
	r.EnableGRO()
	w := NewWriter(src, 8)
	awaitStamping(t, r, w, apOf(dst))
	const slack = time.Millisecond // the clocks' rounding, with room to spare
	before := time.Now()
	for range 5 {
		w.Add([]byte("stamped"), apOf(dst), nil)
	}
	if _, err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	after := time.Now()
	time.Sleep(20 * time.Millisecond) // the read comes later by at least this
	dst.SetReadDeadline(time.Now().Add(10 * time.Second))
	for got := 0; got < 5; {
		ms, err := r.Read()
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range ms {
			if m.At.Before(before.Add(-slack)) || m.At.After(after.Add(slack)) {
				t.Errorf("At = %v after the send began, want within the send call (%v)", m.At.Sub(before), after.Sub(before))
			}
		}
		got += len(ms)
	}
}

// awaitStamping waits until the kernel stamps datagrams as they arrive.
// The first socket to ask turns stamping on for the whole system from a
// work queue, which a busy machine runs late; until then the kernel
// stamps a datagram when it is read instead.
func awaitStamping(t *testing.T, r *Reader, w *Writer, to netip.AddrPort) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); {
		w.Add([]byte("probe"), to, nil)
		if _, err := w.Flush(); err != nil {
			t.Fatal(err)
		}
		sent := time.Now()
		time.Sleep(5 * time.Millisecond)
		r.pc.SetReadDeadline(time.Now().Add(10 * time.Second))
		ms, err := r.Read()
		if err != nil {
			t.Fatal(err)
		}
		if len(ms) == 1 && ms[0].At.Before(sent) {
			return
		}
	}
	t.Skip("the kernel never stamped a datagram on arrival")
}
