package compare

import (
	"context"
	"encoding/csv"
	"path/filepath"
	"strings"
	"testing"
)

func TestBulkMessagesCheck(t *testing.T) {
	const total, size = 10_000, 300
	s := newSink(total, size)
	if s.n != 34 {
		t.Fatalf("%d bytes in %d-byte messages: %d messages, want 34", total, size, s.n)
	}
	buf := make([]byte, size)
	for seq := range s.n {
		msg := bulkMessage(buf, seq, size, total)
		if ok, got := s.check(msg); !ok || got != seq {
			t.Fatalf("message %d: check = %v, %d", seq, ok, got)
		}
	}
	if last := bulkMessage(buf, 33, size, total); len(last) != total-33*size {
		t.Errorf("last message is %d bytes, want %d", len(last), total-33*size)
	}
	for _, short := range []int64{1, 5, 8, 9, 1477, 2 * 1472} {
		s := newSink(short, 1472)
		buf := make([]byte, 1472)
		for seq := range s.n {
			if ok, got := s.check(bulkMessage(buf, seq, 1472, short)); !ok || got != seq {
				t.Errorf("%d bytes, message %d: check = %v, %d", short, seq, ok, got)
			}
		}
	}
	msg := bulkMessage(buf, 5, size, total)
	for _, bad := range [][]byte{
		msg[:len(msg)-1],                    // short
		append(append([]byte{}, msg...), 0), // long
		nil,                                 // empty
		flip(msg, 100),                      // a byte changed
		flip(msg, 7),                        // another sequence number
		bulkMessage(make([]byte, size), 40, size, 100_000)[:size], // past the end
	} {
		if ok, _ := s.check(bad); ok {
			t.Errorf("check accepted a bad message of %d bytes", len(bad))
		}
	}
}

func flip(b []byte, i int) []byte {
	c := append([]byte{}, b...)
	c[i] ^= 0x10
	return c
}

func TestSinkCountsOnce(t *testing.T) {
	const total, size = 1000, 100
	s := newSink(total, size)
	buf := make([]byte, size)
	for _, seq := range []int{0, 2, 1, 2, 3, 4, 5, 6, 7, 8, 9} {
		s.handle(nil, bulkMessage(buf, seq, size, total))
	}
	s.handle(nil, []byte("garbage"))
	var b Bulk
	s.result(&b)
	if b.Delivered != 10 || b.DeliveredBytes != total || b.Duplicates != 1 || b.Corrupt != 1 || !b.Complete || b.InOrder != 9 {
		t.Errorf("got %+v; want 10 delivered, 1000 bytes, 1 duplicate, 1 corrupt, 9 in order, complete", b)
	}
	var sum float64
	for _, v := range b.SeriesBPS {
		sum += v * b.SeriesStepS / 8
	}
	if int64(sum+0.5) != total {
		t.Errorf("the series adds up to %.0f bytes, want %d", sum, total)
	}
	select {
	case <-s.done:
	default:
		t.Error("done not closed with every message in")
	}
}

func TestJain(t *testing.T) {
	for _, c := range []struct {
		xs   []float64
		want float64
	}{{[]float64{1, 1}, 1}, {[]float64{1, 0}, 0.5}, {[]float64{3, 1}, 0.8}} {
		if got := jain(c.xs...); got == nil || *got < c.want-1e-9 || *got > c.want+1e-9 {
			t.Errorf("jain(%v) = %v, want %v", c.xs, got, c.want)
		}
	}
	if got := jain(0, 0); got != nil {
		t.Errorf("jain(0, 0) = %v, want nil", *got)
	}
}

// TestBulkEveryByteOnce sends a transfer over a lossy, reordering link:
// every reliable mode delivers every byte, each once and intact (the sink
// checks the content); raw delivers what the link let through, intact.
func TestBulkEveryByteOnce(t *testing.T) {
	l, err := ParseLink("loss=3%,reorder=5%,delay=5ms", 7)
	if err != nil {
		t.Fatal(err)
	}
	rep, err := Run(context.Background(), Config{
		Modes:    []string{"raw", "kcp", "kcp-fec", "tcp", "quic"},
		Links:    []Link{l},
		Workload: Workload{Kind: KindBulk, Bytes: 300_000},
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, x := range rep.Results {
		b := x.Bulk
		if b == nil {
			t.Fatalf("%s: no bulk figures", x.Mode)
		}
		if b.Corrupt != 0 || b.Duplicates != 0 || x.BadReplies != 0 {
			t.Errorf("%s: %d corrupt, %d duplicates, %d bad replies; want none", x.Mode, b.Corrupt, b.Duplicates, x.BadReplies)
		}
		if x.Mode == "raw" {
			if b.DeliveredBytes >= b.Bytes || b.DeliveredBytes == 0 {
				t.Errorf("raw delivered %d of %d bytes over 3%% loss", b.DeliveredBytes, b.Bytes)
			}
			continue
		}
		if !b.Complete || b.DeliveredBytes != b.Bytes || b.SentBytes != b.Bytes {
			t.Errorf("%s: sent %d, delivered %d of %d bytes (complete %v, stalled %v)", x.Mode, b.SentBytes, b.DeliveredBytes, b.Bytes, b.Complete, x.Stalled)
		}
	}
}

// TestBulkTCPFillsARateLimitedLink: TCP's congestion control keeps a
// slow link busy without flooding its queue. The link's rate is
// simulated, so the figure holds on a busy host unless the link itself
// ran late, which the run reports as noisy.
func TestBulkTCPFillsARateLimitedLink(t *testing.T) {
	l, err := ParseLink("rate=2mbit,queue=50,delay=20ms", 1)
	if err != nil {
		t.Fatal(err)
	}
	rep, err := Run(context.Background(), Config{
		Modes: []string{"tcp"}, Links: []Link{l},
		Workload: Workload{Kind: KindBulk, Bytes: 1_000_000},
	})
	if err != nil {
		t.Fatal(err)
	}
	x := rep.Results[0]
	if x.QueueDrops == nil || x.QueueHigh == nil || *x.QueueHigh == 0 {
		t.Fatalf("queue figures missing or empty: drops %v, high %v", x.QueueDrops, x.QueueHigh)
	}
	if !x.Bulk.Complete || x.Bulk.LinkShare == nil {
		t.Fatalf("complete %v, link share %v", x.Bulk.Complete, x.Bulk.LinkShare)
	}
	t.Logf("tcp: %.0f%% of the rate, %d queue drops, queue high %d", 100**x.Bulk.LinkShare, *x.QueueDrops, *x.QueueHigh)
	if *x.Bulk.LinkShare < 0.7 && !x.Noisy {
		t.Errorf("tcp goodput %.0f%% of the link's rate, want at least 70%%", 100**x.Bulk.LinkShare)
	}
}

func TestBulkCompeting(t *testing.T) {
	l, err := ParseLink("rate=10mbit,delay=5ms,queue=100", 1)
	if err != nil {
		t.Fatal(err)
	}
	rep, err := Run(context.Background(), Config{
		Modes: []string{"kcp", "tcp"}, Links: []Link{l}, Competing: "tcp",
		Workload: Workload{Kind: KindBulk, Bytes: 400_000},
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, x := range rep.Results {
		c := x.Competing
		if c == nil || c.Mode != "tcp" || !c.Complete || !x.Bulk.Complete {
			t.Fatalf("%s: competing flow %+v; want a complete tcp flow beside a complete %s flow", x.Mode, c, x.Mode)
		}
		if x.Fairness == nil || *x.Fairness <= 0 || *x.Fairness > 1 {
			t.Errorf("%s: fairness %v, want in (0, 1]", x.Mode, x.Fairness)
		}
		if x.Bulk.SharedGoodputBPS == nil || c.SharedGoodputBPS == nil {
			t.Errorf("%s: no goodput while sharing", x.Mode)
		}
	}
	var text strings.Builder
	if err := rep.WriteTable(&text); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"Sharing the link with a tcp flow", "Jain", "of the rate"} {
		if !strings.Contains(text.String(), want) {
			t.Errorf("table lacks %q:\n%s", want, text.String())
		}
	}
	if err := rep.WriteChart(filepath.Join(t.TempDir(), "competing.svg")); err != nil {
		t.Errorf("chart: %v", err)
	}
	csvRows(t, rep)
}

// csvRows writes rep as CSV and reads it back, checking that every row has
// a cell for every column.
func csvRows(t *testing.T, rep *Report) [][]string {
	t.Helper()
	var out strings.Builder
	if err := rep.WriteCSV(&out); err != nil {
		t.Fatal(err)
	}
	rows, err := csv.NewReader(strings.NewReader(out.String())).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	for _, row := range rows {
		if len(row) != len(csvHeader) {
			t.Fatalf("CSV row of %d cells under %d columns", len(row), len(csvHeader))
		}
	}
	return rows
}

func TestBulkConfigRefused(t *testing.T) {
	for _, c := range []struct {
		cfg  Config
		want string
	}{
		{Config{Workload: Workload{Kind: KindBulk}, Targets: []Target{{"raw", "127.0.0.1:1"}}}, "--target runs the greet workload only"},
		{Config{Competing: "tcp"}, "needs the bulk workload"},
		{Config{Workload: Workload{Kind: KindBulk}, Competing: "nope"}, `competing "nope": want one of raw`},
		{Config{Workload: Workload{Kind: KindBulk, Size: 4}}, "want at least 9 bytes"},
		{Config{Workload: Workload{Kind: KindBulk, Size: 70000}, Modes: []string{"raw"}}, "one raw message"},
		{Config{Workload: Workload{Kind: "nope"}}, `workload "nope": want one of greet, bulk, sessions`},
	} {
		err := c.cfg.Validate()
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("Validate(%+v) = %v, want %q", c.cfg, err, c.want)
		}
	}
}
