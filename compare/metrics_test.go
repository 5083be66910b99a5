package compare

import (
	"math"
	"runtime/debug"
	"slices"
	"strings"
	"testing"
	"time"
)

func near(got, want, rel float64) bool {
	return math.Abs(got-want) <= rel*math.Abs(want)+1e-12
}

func TestLatencyPercentiles(t *testing.T) {
	r := NewRecorder(100)
	// Round trips 1 ms to 100 ms, sent in a shuffled order so nothing
	// depends on arrival order: p50 is 50 ms, p90 90 ms, p99 99 ms.
	for i := range 100 {
		seq := (i * 37) % 100
		r.Reply(seq, time.Duration(seq+1)*time.Millisecond)
	}
	got := r.Latency()
	want := Latency{Mean: 50.5, P50: 50, P90: 90, P99: 99, Max: 100}
	// HdrHistogram at 3 digits reports the top of the value's bucket: within 0.1%.
	for _, c := range []struct {
		name      string
		got, want float64
		rel       float64
	}{
		{"mean", got.Mean, want.Mean, 0},
		{"p50", got.P50, want.P50, 1e-3},
		{"p90", got.P90, want.P90, 1e-3},
		{"p99", got.P99, want.P99, 1e-3},
		{"max", got.Max, want.Max, 0},
	} {
		if !near(c.got, c.want, c.rel) || c.got < c.want {
			t.Errorf("%s = %v ms, want %v ms (at most %.1f%% above)", c.name, c.got, c.want, c.rel*100)
		}
	}
}

func TestLatencyEmpty(t *testing.T) {
	r := NewRecorder(10)
	if got := r.Latency(); got != nil {
		t.Errorf("Latency() with no replies = %+v, want nil (no data)", got)
	}
	if got := r.Jitter(); got != nil {
		t.Errorf("Jitter() with no replies = %v, want nil (no data)", *got)
	}
	if ms, frac := r.CDF(10); ms != nil || frac != nil {
		t.Errorf("CDF() with no replies = %v, %v, want nil", ms, frac)
	}
	r.Reply(0, time.Millisecond)
	if got := r.Jitter(); got != nil {
		t.Errorf("Jitter() with one reply = %v, want nil: jitter needs two arrivals", *got)
	}
}

// TestPercentilesWithinExtremes: HdrHistogram reports the top of a value's
// bucket, which can pass the true maximum (50 replies at 20.0047 ms gave a
// p99 above max); percentiles are held within [min, max].
func TestPercentilesWithinExtremes(t *testing.T) {
	for _, rtts := range [][]time.Duration{
		{20004700 * time.Nanosecond},
		{20004700, 20004701, 20004702},
		{40123456, 40123999, 40124999, 40129999, 40130001},
	} {
		r := NewRecorder(len(rtts))
		for i, rtt := range rtts {
			r.Reply(i, rtt)
		}
		l := r.Latency()
		lo, hi := ms(slices.Min(rtts)), ms(slices.Max(rtts))
		for name, v := range map[string]float64{"p50": l.P50, "p90": l.P90, "p99": l.P99} {
			if v < lo || v > hi {
				t.Errorf("round trips %v: %s = %v ms outside [min %v, max %v]", rtts, name, v, lo, hi)
			}
		}
		if l.Max != hi {
			t.Errorf("round trips %v: max = %v, want %v", rtts, l.Max, hi)
		}
	}
}

func TestInOrderAndDuplicates(t *testing.T) {
	for _, c := range []struct {
		name                          string
		arrivals                      []int
		delivered, inOrder, duplicate int
	}{
		{"in order", []int{0, 1, 2, 3}, 4, 4, 0},
		{"one overtaken", []int{0, 2, 1, 3}, 4, 3, 0},
		// 0 in, 2 in, 1 late, 3 in, 3 dup, 5 in, 4 late, 2 dup.
		{"reordered with duplicates", []int{0, 2, 1, 3, 3, 5, 4, 2}, 6, 4, 2},
		{"reversed", []int{3, 2, 1, 0}, 4, 1, 0},
		{"lost and duplicated", []int{1, 1, 1, 4}, 2, 2, 2},
		{"nothing", nil, 0, 0, 0},
	} {
		r := NewRecorder(6)
		for _, seq := range c.arrivals {
			r.Reply(seq, time.Millisecond)
		}
		if r.delivered != c.delivered || r.inOrder != c.inOrder || r.duplicates != c.duplicate {
			t.Errorf("%s: arrivals %v: delivered, in order, duplicates = %d, %d, %d; want %d, %d, %d",
				c.name, c.arrivals, r.delivered, r.inOrder, r.duplicates, c.delivered, c.inOrder, c.duplicate)
		}
	}
}

func TestJitterRFC3550(t *testing.T) {
	r := NewRecorder(5)
	// Round trips 40, 50, 40, 40 ms; a duplicate of 1 at 90 ms changes
	// nothing. By hand: J = 10/16 = 0.625; J = 0.625 + (10-0.625)/16 =
	// 1.2109375; J = 1.2109375 + (0-1.2109375)/16 = 1.13525390625.
	r.Reply(0, 40*time.Millisecond)
	r.Reply(1, 50*time.Millisecond)
	r.Reply(1, 90*time.Millisecond)
	r.Reply(2, 40*time.Millisecond)
	r.Reply(3, 40*time.Millisecond)
	if got, want := *r.Jitter(), 1.13525390625; !near(got, want, 1e-12) {
		t.Errorf("Jitter() = %v ms, want %v ms", got, want)
	}
	// A steady round trip has no jitter.
	s := NewRecorder(3)
	for i := range 3 {
		s.Reply(i, 40*time.Millisecond)
	}
	if got := *s.Jitter(); got != 0 {
		t.Errorf("Jitter() of a constant round trip = %v, want 0", got)
	}
}

// TestCDF: the curve is a fraction of what was sent, so with 4 replies to 5
// greetings it levels off at 0.8, the delivered share.
func TestCDF(t *testing.T) {
	r := NewRecorder(5)
	for i, rtt := range []time.Duration{10, 10, 20, 40} {
		r.Reply(i, rtt*time.Millisecond)
	}
	ms, frac := r.CDF(5)
	wantFrac := []float64{0.4, 0.6, 0.8}
	wantMS := []float64{10, 20, 40}
	if len(ms) != len(wantMS) {
		t.Fatalf("CDF() = %v, %v; want points at %v ms", ms, frac, wantMS)
	}
	for i := range ms {
		if !near(ms[i], wantMS[i], 1e-3) || frac[i] != wantFrac[i] {
			t.Errorf("CDF point %d = (%v ms, %v), want (%v ms, %v)", i, ms[i], frac[i], wantMS[i], wantFrac[i])
		}
	}
}

func TestVersionsNameTheCommit(t *testing.T) {
	bi := &debug.BuildInfo{
		Main: debug.Module{Path: "github.com/udplab/udplab", Version: "v0.0.0-20261121020506-c8bbe5facef6+dirty"},
		Deps: []*debug.Module{{Path: "github.com/xtaci/kcp-go/v5", Version: "v5.6.72"},
			{Path: "github.com/quic-go/quic-go", Version: "v0.65.0"}, {Path: "github.com/klauspost/reedsolomon", Version: "v1.14.2"}},
		Settings: []debug.BuildSetting{
			{Key: "vcs.revision", Value: "c8bbe5facef6e774c08e8ecbabf41934e39248b7"},
			{Key: "vcs.modified", Value: "true"},
		},
	}
	v := versionsOf(bi)
	if v.Udplab != "commit c8bbe5facef6e774c08e8ecbabf41934e39248b7-dirty" || v.KCPGo != "v5.6.72" ||
		v.QUICGo != "v0.65.0" || v.ReedSolomon != "v1.14.2" {
		t.Errorf("versionsOf = %+v; want the full commit, marked dirty, kcp-go v5.6.72, quic-go v0.65.0, reedsolomon v1.14.2", v)
	}
	bi.Settings = nil
	bi.Main.Version = "(devel)"
	if v := versionsOf(bi); !strings.Contains(v.Udplab, "commit unknown") {
		t.Errorf("versionsOf without VCS = %q; want it to say the commit is unknown", v.Udplab)
	}
}

// TestLostCell: the lost column names each cause it knows; an FEC mode's
// count of greetings parity did not rebuild stands for the link's and the
// sockets' losses.
func TestLostCell(t *testing.T) {
	u := func(n uint64) *uint64 { return &n }
	i := func(n int) *int { return &n }
	for _, tt := range []struct {
		lost Lost
		want string
	}{
		{Lost{Link: u(3), Socket: u(0)}, "3 link"},
		{Lost{Link: u(3)}, "3 link + ? sock"},
		{Lost{Link: u(3), Socket: u(1), Late: 2, Refused: u(1)}, "3 link + 1 sock + 2 late + 1 refused"},
		{Lost{Unrepaired: i(7), Refused: u(0)}, "7 not rebuilt"},
		{Lost{Unrepaired: i(0), Refused: u(0)}, "0"},
		{Lost{Unrepaired: i(2), Late: 1, Refused: u(1)}, "2 not rebuilt + 1 late + 1 refused"},
		{Lost{Unfinished: i(4)}, "4 unfinished"},
	} {
		if got := tt.lost.cell(); got != tt.want {
			t.Errorf("cell() = %q, want %q", got, tt.want)
		}
	}
}
