package fec

import (
	"bytes"
	"context"
	"errors"
	"github.com/udplab/udplab/internal/conntest"
	"math/bits"
	"os"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/udplab/udplab/message"
)

// groupCase is one group a test sends: k messages, and which of its
// k+parityFor(k) shards are lost, bit i being data shard i for i < k, then
// parity shard i-k.
type groupCase struct {
	k    int
	lost uint64
}

// fullGroups returns a full group under every loss pattern: all 2^(D+P),
// few enough to try them all for the default 10,3 (8192).
func fullGroups(d, p int) []groupCase {
	return allPatterns(d, d+p)
}

// partialGroups returns, for every k from 1 to d-1, a group of k under
// every loss pattern of its shards.
func partialGroups(d, p int) []groupCase {
	var out []groupCase
	for k := 1; k < d; k++ {
		out = append(out, allPatterns(k, k+parityFor(k, d, p))...)
	}
	return out
}

func allPatterns(k, shards int) []groupCase {
	out := make([]groupCase, 1<<shards)
	for x := range out {
		out[x] = groupCase{k, uint64(x)}
	}
	return out
}

// drops lists, by datagram index, whether the sender's datagrams are lost,
// for a sender that sends each group's data shards and then its parity.
func drops(cases []groupCase, d, p int) []bool {
	var out []bool
	for _, c := range cases {
		for i := range c.k + parityFor(c.k, d, p) {
			out = append(out, c.lost&(1<<i) != 0)
		}
	}
	return out
}

// dropper returns a MemConn Fate that loses datagram n when lost[n].
func dropper(lost []bool) func(n int) int {
	return func(n int) int {
		if n < len(lost) && lost[n] {
			return 0
		}
		return 1
	}
}

// caseMsg is message i of case g: it names both, and its length varies, so
// groups need padding, from 3 bytes to 3+40.
func caseMsg(g, i int) []byte {
	m := []byte{byte(g >> 8), byte(g), byte(i)}
	for j := range (g*7 + i*13) % 41 {
		m = append(m, byte(g+i*j))
	}
	return m
}

// expected says what a receiver must do with a group sent under c: which
// messages it delivers, how many of those it rebuilds, and how many it
// counts as lost when the group closes.
func (c groupCase) expected(d, p int) (delivered []int, recovered, lost int) {
	pk := parityFor(c.k, d, p)
	top := 0 // the highest data index to arrive, plus one
	for i := range c.k {
		if c.lost&(1<<i) == 0 {
			delivered = append(delivered, i)
			top = i + 1
		}
	}
	lostData := c.k - len(delivered)
	switch {
	case bits.OnesCount64(c.lost) <= pk:
		all := make([]int, c.k)
		for i := range all {
			all[i] = i
		}
		return all, lostData, 0
	case c.lost>>c.k != 1<<pk-1: // a parity shard arrived: it told k
		return delivered, 0, lostData
	}
	return delivered, 0, top - len(delivered)
}

// recorder is a Handler that records every request and answers none.
type recorder struct {
	mu  sync.Mutex
	got map[string]int
}

func (r *recorder) handle(dst, req []byte) ([]byte, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.got[string(req)]++
	return dst, message.ErrBadRequest
}

// TestRequestRecovery sends groups of requests under every loss pattern,
// dropping the client's datagrams by index, and checks that the server
// delivers each message exactly once with the right bytes, rebuilds every
// group that lost at most its parity count, and counts the missing
// messages of the others as lost, delivering nothing wrong. Full groups
// send their parity as they fill; partial ones at the flush.
func TestRequestRecovery(t *testing.T) {
	for _, tt := range []struct {
		name  string
		d, p  int
		cases func(d, p int) []groupCase
	}{
		{"full/4,2", 4, 2, fullGroups},
		{"full/10,3", 10, 3, fullGroups},
		{"full/1,1", 1, 1, fullGroups},
		{"full/3,1", 3, 1, fullGroups},
		{"partial/4,2", 4, 2, partialGroups},
		{"partial/10,3", 10, 3, partialGroups},
	} {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) { requestRecovery(t, tt.d, tt.p, tt.cases(tt.d, tt.p)) })
		})
	}
}

// waitEvery is how many groups requestRecovery sends between waits: at
// most 256 × 13 datagrams, well inside a MemConn's queue.
const waitEvery = 256

func requestRecovery(t *testing.T, d, p int, cases []groupCase) {
	cfg := &Config{DataShards: d, ParityShards: p}
	n := conntest.NewMemNet()
	rec := &recorder{got: map[string]int{}}
	s := newServer(t, n.Listen("10.0.0.1:4000"), rec.handle, cfg)
	cpc := n.Listen("10.0.0.2:4000")
	cpc.Fate = dropper(drops(cases, d, p))
	c := newClient(t, cpc, s.Addr(), cfg)
	for g, gc := range cases {
		sendGroup(t, c, g, gc.k, d)
		if g%waitEvery == waitEvery-1 {
			// Let the server read what is queued: 10,3's 8,192 groups
			// sent at once overfill a MemConn, as they would a socket,
			// whenever a busy machine starves the server's goroutine.
			synctest.Wait()
		}
	}
	synctest.Wait()
	s.Close() // closes the groups still open: their losses are counted now
	var want Stats
	for g, gc := range cases {
		delivered, recovered, lost := gc.expected(d, p)
		for _, i := range delivered {
			if got := rec.got[string(caseMsg(g, i))]; got != 1 {
				t.Errorf("group of %d, lost %b: message %d delivered %d times, want once", gc.k, gc.lost, i, got)
			}
		}
		want.Received += uint64(len(delivered) - recovered)
		want.Recovered += uint64(recovered)
		want.Lost += uint64(lost)
	}
	if got := uint64(len(rec.got)); got != want.Received+want.Recovered {
		t.Errorf("%d distinct messages delivered, want %d: some were made up", got, want.Received+want.Recovered)
	}
	st := s.Stats().FEC
	if st.Received != want.Received || st.Recovered != want.Recovered || st.Lost != want.Lost || st.Malformed != 0 {
		t.Errorf("server FEC stats = %+v, want received %d, recovered %d, lost %d, malformed 0",
			st, want.Received, want.Recovered, want.Lost)
	}
}

// sendGroup sends the k messages of case g on c at once and, when they do
// not fill a group, waits out the flush that sends its parity.
func sendGroup(t *testing.T, c *Conn, g, k, d int) {
	t.Helper()
	for i := range k {
		if err := c.Send(context.Background(), caseMsg(g, i)); err != nil {
			t.Fatal(err)
		}
	}
	if k < d {
		time.Sleep(DefaultFlush)
		synctest.Wait() // the flush due now has happened
	}
}

// TestReplyRecovery is TestRequestRecovery the other way: the server's
// replies are dropped by pattern, and the client's Receive must return
// each reply once, rebuilt ones included, and nothing else.
func TestReplyRecovery(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		cases := append(fullGroups(4, 2), partialGroups(4, 2)...)
		replyRecovery(t, 4, 2, cases)
	})
}

func replyRecovery(t *testing.T, d, p int, cases []groupCase) {
	cfg := &Config{DataShards: d, ParityShards: p}
	n := conntest.NewMemNet()
	spc := n.Listen("10.0.0.1:4000")
	spc.Fate = dropper(drops(cases, d, p))
	s := newServer(t, spc, message.Echo, cfg)
	c := newClient(t, n.Listen("10.0.0.2:4000"), s.Addr(), cfg)
	var lost uint64
	for g, gc := range cases {
		sendGroup(t, c, g, gc.k, d) // the echoes group alike
		delivered, _, l := gc.expected(d, p)
		lost += uint64(l)
		got := receiveAll(t, c)
		for _, i := range delivered {
			if got[string(caseMsg(g, i))] != 1 {
				t.Errorf("group of %d, lost %b: reply %d received %d times, want once", gc.k, gc.lost, i, got[string(caseMsg(g, i))])
			}
		}
		if len(got) != len(delivered) {
			t.Errorf("group of %d, lost %b: %d distinct replies, want %d", gc.k, gc.lost, len(got), len(delivered))
		}
	}
	c.Close()
	if st := c.Stats(); st.Lost != lost || st.Malformed != 0 {
		t.Errorf("client stats = %+v, want %d lost", st, lost)
	}
}

// receiveAll returns every message c receives until nothing more comes, by
// content, with how often each came.
func receiveAll(t *testing.T, c *Conn) map[string]int {
	t.Helper()
	got := map[string]int{}
	for {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		msg, err := c.Receive(ctx)
		cancel()
		if errors.Is(err, os.ErrDeadlineExceeded) {
			return got
		}
		if err != nil {
			t.Fatal(err)
		}
		got[string(bytes.Clone(msg))]++
	}
}
