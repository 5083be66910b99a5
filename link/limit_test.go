package link

import (
	"bufio"
	"bytes"
	"strings"
	"testing"
	"testing/synctest"
	"time"
)

// TestHoldLimitBytes floods a long delay line and a huge rate queue with
// 60 KB datagrams: what the link holds never passes the byte limit, the
// rest is dropped and counted, and what it held is delivered.
func TestHoldLimitBytes(t *testing.T) {
	const size = 60_000
	for _, tt := range []struct {
		spec  string
		limit int
	}{
		{"delay=10s,limit-bytes=1MiB", 1 << 20},
		{"rate=1mbit,queue=1000000,limit-bytes=1MiB", 1 << 20},
		{"delay=10s", DefaultLimitBytes},
		{"rate=1mbit,queue=1000000", DefaultLimitBytes},
	} {
		t.Run(tt.spec, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				p := newPair(t, tt.spec, nil)
				fit := tt.limit / size
				n := fit + 100
				p.sendN(t, n, size)
				st := p.link.Stats(Up)
				if st.HeldBytes > tt.limit || st.HeldBytesHigh > tt.limit || st.HeldBytes != st.Queued*size {
					t.Errorf("held %d bytes in %d packets, high %d; want at most %d", st.HeldBytes, st.Queued, st.HeldBytesHigh, tt.limit)
				}
				if st.Queued != fit || st.LimitDrops != uint64(n-fit) {
					t.Errorf("held %d packets and dropped %d, want %d and %d", st.Queued, st.LimitDrops, fit, n-fit)
				}
				time.Sleep(time.Hour) // the 1 Mbit/s queue takes 8 minutes
				synctest.Wait()
				st = p.link.Stats(Up)
				if got := len(p.drain()); got != fit || st.Delivered != uint64(fit) || st.HeldBytes != 0 {
					t.Errorf("delivered %d (stats %d), %d bytes still held; want %d, none held", got, st.Delivered, st.HeldBytes, fit)
				}
			})
		})
	}
}

// TestHoldLimitPackets: the packet limit counts duplicates as the copies
// they are, and a dropped packet's trace names the limit.
func TestHoldLimitPackets(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var trace bytes.Buffer
		p := newPair(t, "delay=1s,dup=100%,limit=10", &Options{Trace: &trace})
		p.sendN(t, 50, 100)
		st := p.link.Stats(Up)
		if st.Queued != 10 || st.LimitDrops != 45 || st.Duplicated != 5 {
			t.Errorf("held %d, dropped %d, duplicated %d; want 10, 45, 5", st.Queued, st.LimitDrops, st.Duplicated)
		}
		settle()
		if got := len(p.drain()); got != 10 {
			t.Errorf("delivered %d, want 10", got)
		}
		p.link.Close()
		drops := 0
		for sc := bufio.NewScanner(&trace); sc.Scan(); {
			if strings.Contains(sc.Text(), `"cause":"limit"`) {
				drops++
			}
		}
		if drops != 45 {
			t.Errorf("%d trace lines name the limit, want 45", drops)
		}
	})
}

// TestHoldLimitSparesUnheld: a reordered packet that is due at once is
// never held, so a full delay line does not stop it.
func TestHoldLimitSparesUnheld(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		p := newPair(t, "delay=1s,reorder=50%,limit=1", nil)
		p.sendN(t, 100, 100)
		st := p.link.Stats(Up)
		if st.Reordered == 0 || st.Queued != 1 || st.LimitDrops+st.Reordered+1 != 100 {
			t.Errorf("stats = %+v, want every packet reordered, held (1) or dropped at the limit", st)
		}
	})
}

// TestBufferClasses: a held packet's buffer is its size class, never more
// than a third above its length (or 64 bytes), whatever came before it.
func TestBufferClasses(t *testing.T) {
	for n := 0; n <= 1<<16; n++ {
		i := classOf(n)
		if c := classSize(i); c < n || c > max(64, n+n/2) || i > 0 && classSize(i-1) >= n {
			t.Fatalf("classOf(%d) = %d of %d bytes", n, i, c)
		}
	}
	if classOf(1<<16+1) != -1 {
		t.Errorf("classOf(64 KiB + 1) = %d, want -1 (not pooled)", classOf(1<<16+1))
	}
	putBuf(getBuf(make([]byte, 60_000)))
	if bp := getBuf(make([]byte, 30)); cap(*bp) != 64 || len(*bp) != 30 {
		t.Errorf("a 30-byte packet after a 60 KB one got len %d cap %d, want 30 and 64", len(*bp), cap(*bp))
	}
}
