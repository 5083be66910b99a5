package fec

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"testing"
	"time"
)

// codec is an encoder and a decoder joined by a slice of datagrams, with
// no socket and no flusher goroutine, for tests of the coding itself.
type codec struct {
	enc  *encoder
	dec  *decoder
	sent [][]byte // what enc sent, in order
	got  []string // what dec delivered, in order
	st   counters // the decoder's
}

func newCodec(d, p int) *codec {
	cfg := Config{DataShards: d, ParityShards: p}
	codes := newCodecs(d, p)
	c := &codec{}
	c.enc = newEncoder(&cfg, codes, newFlusher(DefaultFlush), new(counters), func(b []byte) error {
		c.sent = append(c.sent, bytes.Clone(b))
		return nil
	})
	c.dec = newDecoder(&cfg, codes, &c.st, func(m []byte) { c.got = append(c.got, string(m)) })
	return c
}

// send sends msgs, flushing at the end if the last group is partial, and
// returns the datagrams they made.
func (c *codec) send(t testing.TB, msgs ...[]byte) [][]byte {
	t.Helper()
	before := len(c.sent)
	for _, m := range msgs {
		if err := c.enc.send(m); err != nil {
			t.Fatal(err)
		}
	}
	c.enc.flushGroup(c.enc.group)
	return c.sent[before:]
}

// feed hands datagrams to the decoder as a socket would.
func (c *codec) feed(pkts ...[]byte) {
	for _, b := range pkts {
		if h, shard, ok := parse(b, c.dec.d, c.dec.p); ok {
			c.dec.handle(h, shard)
		} else {
			c.st.malformed.Add(1)
		}
	}
}

func msgs(n, size int) [][]byte {
	out := make([][]byte, n)
	for i := range out {
		out[i] = bytes.Repeat([]byte{byte('a' + i)}, size+i)
	}
	return out
}

// checkOnce fails t unless c delivered exactly want, each once (equal
// messages as often as want has them), in any order.
func (c *codec) checkOnce(t *testing.T, want [][]byte) {
	t.Helper()
	count := map[string]int{}
	for _, w := range want {
		count[string(w)]++
	}
	for _, g := range c.got {
		count[g]--
	}
	for m, n := range count {
		if n != 0 {
			t.Errorf("message %.10q... (%d bytes) delivered %d times too few", m, len(m), n)
		}
	}
}

// TestDuplicatesAndReordering delivers every datagram twice, shuffled:
// each message still comes out exactly once.
func TestDuplicatesAndReordering(t *testing.T) {
	c := newCodec(4, 2)
	want := msgs(11, 5) // two full groups and a partial one
	pkts := c.send(t, want...)
	pkts = append(pkts, pkts...)
	rand.New(rand.NewPCG(3, 4)).Shuffle(len(pkts), func(i, j int) { pkts[i], pkts[j] = pkts[j], pkts[i] })
	c.feed(pkts...)
	c.checkOnce(t, want)
	if st := c.st.stats(); st.Received+st.Recovered != 11 || st.Malformed != 0 {
		t.Errorf("stats = %+v", st)
	}
}

// TestParityFirst: a group whose parity arrives before its data, with
// data lost, is rebuilt once enough has come.
func TestParityFirst(t *testing.T) {
	c := newCodec(4, 2)
	want := msgs(4, 10)
	pkts := c.send(t, want...)
	c.feed(pkts[4], pkts[5], pkts[3], pkts[1]) // data 0 and 2 lost
	c.checkOnce(t, want)
	if st := c.st.stats(); st.Recovered != 2 || st.Received != 2 {
		t.Errorf("stats = %+v, want 2 received and 2 recovered", st)
	}
}

// TestSizes rebuilds messages of every size class: empty, pooled, larger
// than a pooled buffer, and the largest.
func TestSizes(t *testing.T) {
	for _, size := range []int{0, 1, poolBuf - HeaderBytes, poolBuf, 3000, MaxMessage} {
		t.Run(fmt.Sprint(size), func(t *testing.T) {
			c := newCodec(3, 2)
			want := [][]byte{make([]byte, size), bytes.Repeat([]byte{7}, size/2), bytes.Repeat([]byte{9}, size)}
			r := rand.New(rand.NewPCG(5, 6))
			for i := range want[0] {
				want[0][i] = byte(r.Uint32())
			}
			pkts := c.send(t, want...)
			if len(pkts[4]) > maxPayload {
				t.Fatalf("parity of %d bytes: over a UDP payload", len(pkts[4]))
			}
			c.feed(pkts[1], pkts[3], pkts[4]) // data 0 and 2 rebuilt
			c.checkOnce(t, want)
		})
	}
}

// TestGroupWraparound sends groups across group number 2^32-1 to 0, each
// losing one message: all are rebuilt.
func TestGroupWraparound(t *testing.T) {
	c := newCodec(2, 1)
	c.enc.group = 1<<32 - 3
	want := msgs(12, 3)
	pkts := c.send(t, want...)
	for g := 0; g < 6; g++ {
		c.feed(pkts[3*g+1], pkts[3*g+2]) // data 0 of each group lost
	}
	c.checkOnce(t, want)
	if c.enc.group != 3 {
		t.Errorf("next group = %d, want 3", c.enc.group)
	}
}

// TestWindow: a group that leaves the window is given up (its known missing
// messages lost), and its late shards are dropped, not delivered.
func TestWindow(t *testing.T) {
	c := newCodec(2, 1)
	old := c.send(t, msgs(2, 3)...)
	c.feed(old[1]) // data 1 only: data 0 is known missing, no parity
	c.enc.group += window - 2
	c.feed(c.send(t, []byte("x"))...) // 63 groups on: the old one is still in
	if st := c.st.stats(); st.Lost != 0 {
		t.Fatalf("lost %d while in the window", st.Lost)
	}
	c.feed(c.send(t, []byte("y"))...) // 64 on: it leaves
	if st := c.st.stats(); st.Lost != 1 {
		t.Errorf("lost %d after leaving the window, want 1", st.Lost)
	}
	c.feed(old[0], old[2]) // too late
	if len(c.got) != 3 {
		t.Errorf("delivered %q, want the old group's data 1, x and y", c.got)
	}
}

// TestRestart: a sender far behind the newest group started over; the
// receiver follows it instead of dropping everything as stale.
func TestRestart(t *testing.T) {
	c := newCodec(2, 1)
	c.enc.group = 1 << 20
	c.feed(c.send(t, []byte("before"))...)
	c.enc.group = 5
	c.feed(c.send(t, []byte("after"))...)
	if len(c.got) != 2 || c.got[1] != "after" {
		t.Errorf("delivered %q, want before and after", c.got)
	}
}

// TestCorruptShardIsALoss: a flipped bit fails the checksum, so the shard
// is dropped as malformed and the group rebuilt without it, not from it.
func TestCorruptShardIsALoss(t *testing.T) {
	for _, shard := range []int{0, 1, 2} { // data 0, data 1, the parity
		c := newCodec(2, 1)
		want := msgs(2, 40)
		pkts := c.send(t, want...)
		pkts[shard][len(pkts[shard])/2] ^= 0x10
		c.feed(pkts...)
		c.checkOnce(t, want)
		if st := c.st.stats(); st.Malformed != 1 {
			t.Errorf("corrupt shard %d: malformed %d, want 1", shard, st.Malformed)
		}
	}
}

// dataShard builds one data shard by hand, as another implementation would.
func dataShard(group uint32, index int, msg []byte) []byte {
	b := append(make([]byte, HeaderBytes), msg...)
	putData(b, group, index)
	return b
}

// parityShard builds a parity shard by hand, of size bytes of zeros.
func parityShard(group uint32, index, k, p, size int) []byte {
	b := make([]byte, parityHeaderBytes+size)
	putParity(b, group, index, k, p)
	return b
}

// TestContradictions: shards with valid headers and checksums that
// contradict their group (a forger's, or another implementation's bug) are
// dropped as malformed, and nothing is delivered from them.
func TestContradictions(t *testing.T) {
	t.Run("after parity", func(t *testing.T) {
		c := newCodec(4, 2)
		want := msgs(4, 8) // 8 to 11 bytes: shards of 13
		pkts := c.send(t, want...)
		g := c.enc.group - 1
		c.feed(pkts[0])
		c.feed(parityShard(g, 0, 3, 2, 13)) // says k=3: nothing contradicts it yet
		c.feed(pkts[4])                     // the real parity: k=4
		c.feed(parityShard(g, 1, 3, 2, 12)) // k=3, but another size
		c.feed(pkts[3])                     // data index 3, past k
		c.feed(dataShard(g, 2, make([]byte, 20)))
		if st := c.st.stats(); st.Malformed != 4 || st.Recovered != 0 {
			t.Errorf("stats = %+v, want 4 malformed, none recovered", st)
		}
		c.checkOnce(t, want[:1])
	})
	t.Run("before parity", func(t *testing.T) {
		c := newCodec(4, 2)
		want := msgs(4, 8)
		pkts := c.send(t, want...)
		g := c.enc.group - 1
		c.feed(pkts[3])                     // data index 3 of 13 bytes
		c.feed(parityShard(g, 0, 2, 1, 13)) // says k=2, below index 3
		c.feed(parityShard(g, 0, 4, 2, 12)) // shorter than data 3
		if st := c.st.stats(); st.Malformed != 2 {
			t.Errorf("stats = %+v, want 2 malformed", st)
		}
		c.feed(pkts[1], pkts[4], pkts[5]) // the real ones still rebuild the group
		c.checkOnce(t, want)
	})
}

// TestHoldBudget sends groups of large messages that never complete (no
// parity, first message lost): the receiver gives up old groups rather
// than hold more than its budget.
func TestHoldBudget(t *testing.T) {
	c := newCodec(10, 3)
	for range 8 {
		pkts := c.send(t, msgs(9, 60000)...)
		c.feed(pkts[1:9]...)
		if c.dec.held > c.dec.budget {
			t.Fatalf("holding %d bytes, over the budget of %d", c.dec.held, c.dec.budget)
		}
	}
	if st := c.st.stats(); st.Lost == 0 {
		t.Errorf("stats = %+v: no group given up", st)
	}
	c.dec.close()
	if st := c.st.stats(); st.Received != 64 || st.Lost != 8 {
		t.Errorf("stats = %+v, want 64 received and 8 lost (the first of each group)", st)
	}
	if c.dec.held != 0 {
		t.Errorf("holding %d bytes after close", c.dec.held)
	}
}

// TestParityFor locks in the parity a partial group gets.
func TestParityFor(t *testing.T) {
	for _, tt := range []struct{ k, d, p, want int }{
		{10, 10, 3, 3}, {1, 10, 3, 1}, {3, 10, 3, 1}, {4, 10, 3, 2}, {7, 10, 3, 3}, {9, 10, 3, 3},
		{1, 4, 2, 1}, {2, 4, 2, 1}, {3, 4, 2, 2}, {255, 255, 1, 1}, {1, 1, 255, 255},
	} {
		if got := parityFor(tt.k, tt.d, tt.p); got != tt.want {
			t.Errorf("parityFor(%d, %d, %d) = %d, want %d", tt.k, tt.d, tt.p, got, tt.want)
		}
	}
}

// TestCodingAllocatesNothing locks in an allocation-free path for small
// messages, once the receiver's window has been round: a full group
// encoded, parity included, and decoded.
func TestCodingAllocatesNothing(t *testing.T) {
	if testing.Short() || raceEnabled {
		t.Skip("measures allocations")
	}
	cfg := Config{}.WithDefaults()
	codes := newCodecs(10, 3)
	dec := newDecoder(&cfg, codes, new(counters), func([]byte) {})
	enc := newEncoder(&cfg, codes, newFlusher(DefaultFlush), new(counters), func(b []byte) error {
		if h, shard, ok := parse(b, 10, 3); ok {
			dec.handle(h, shard)
		}
		return nil
	})
	msg := []byte("Alice")
	far := time.Now().Add(time.Hour)
	group := func() {
		for range 10 {
			enc.send(msg)
		}
		enc.flush.fire(far)
	}
	for range window {
		group() // each window slot makes its list of shards once
	}
	allocs := testing.AllocsPerRun(window, group)
	if allocs != 0 {
		t.Errorf("a group of 10 greetings allocated %v times, want 0", allocs)
	}
}
