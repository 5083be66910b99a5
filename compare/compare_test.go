package compare

import (
	"bytes"
	"context"
	"net"
	"regexp"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/udplab/udplab/internal/leakcheck"
	"github.com/udplab/udplab/link"
	"github.com/udplab/udplab/message"
	"github.com/udplab/udplab/modes"
	"github.com/udplab/udplab/raw"
	"github.com/udplab/udplab/reliable"
)

func TestMain(m *testing.M) {
	ServeSessionsChild()
	leakcheck.VerifyTestMain(m)
}

func TestNamesRoundTrip(t *testing.T) {
	for _, c := range []struct{ seq, size, n int }{
		{0, 1, 1}, {7, 1, 10}, {42, 16, 1000}, {999, 3, 1000}, {12345, 200, 20000},
	} {
		name := appendName(nil, c.seq, c.size)
		if len(name) != c.size {
			t.Errorf("appendName(%d, %d) = %q, want %d bytes", c.seq, c.size, name, c.size)
		}
		reply, err := message.Greet(nil, name)
		if err != nil {
			t.Fatalf("Greet(%q): %v", name, err)
		}
		if seq, ok := parseGreeting(reply, c.size, c.n); !ok || seq != c.seq {
			t.Errorf("parseGreeting(%q) = %d, %v; want %d, true", reply, seq, ok, c.seq)
		}
	}
	if got := string(appendName(nil, 42, 16)); got != "0000000000000042" {
		t.Errorf("appendName(42, 16) = %q", got)
	}
}

func TestParseGreetingRejects(t *testing.T) {
	for _, reply := range []string{
		"Hello 0042!\n",      // wrong length
		"Hullo 00042!\n",     // wrong greeting
		"Hello 00042?\n",     // wrong suffix
		"Hello 000x2!\n",     // not a number
		"Hello 01000!\n",     // out of range for n = 1000
		"Good bye!\n",        // not a greeting
		"Hello 99999999999!", // no newline
	} {
		if seq, ok := parseGreeting([]byte(reply), 5, 1000); ok {
			t.Errorf("parseGreeting(%q) = %d, true; want false", reply, seq)
		}
	}
	// A name longer than any int still stops cleanly.
	long := "Hello " + strings.Repeat("9", 100) + "!\n"
	if _, ok := parseGreeting([]byte(long), 100, 1000); ok {
		t.Errorf("parseGreeting of a 100-digit name succeeded")
	}
}

func TestWorkloadValidate(t *testing.T) {
	for _, c := range []struct {
		w    Workload
		want string // "" for valid
	}{
		{Workload{}, ""},
		{Workload{Messages: 1, Size: 1}, ""},
		{Workload{Messages: -1}, "messages -1: want 1 or more"},
		{Workload{Interval: -time.Millisecond}, "interval -1ms: want 0"},
		{Workload{Wait: -time.Second}, "wait -1s: want 0"},
		{Workload{Messages: 1000, Size: 2}, "size 2: want at least 3 bytes"},
		{Workload{Size: MaxSize + 1}, "size 65500: want at most 65499"},
	} {
		err := c.w.Validate()
		switch {
		case c.want == "" && err != nil:
			t.Errorf("%+v.Validate() = %v, want nil", c.w, err)
		case c.want != "" && (err == nil || !strings.Contains(err.Error(), c.want)):
			t.Errorf("%+v.Validate() = %v, want an error containing %q", c.w, err, c.want)
		}
	}
}

func TestDefaultMatrixParses(t *testing.T) {
	links := DefaultLinks(7)
	if len(links) != len(DefaultMatrix) || len(links) < 4 {
		t.Fatalf("DefaultLinks = %d links, want %d (at least 4)", len(links), len(DefaultMatrix))
	}
	for _, l := range links {
		if l.Spec.Seed != 7 {
			t.Errorf("link %q has seed %d, want 7", l.Name, l.Spec.Seed)
		}
		if l.Spec.Up.Delay != 20*time.Millisecond || l.Spec.Down.Delay != 20*time.Millisecond {
			t.Errorf("link %q: want a 40 ms round trip, got %v + %v", l.Name, l.Spec.Up.Delay, l.Spec.Down.Delay)
		}
	}
	// A link's own seed wins over the default.
	l, err := ParseLink("loss=1%,seed=9", 7)
	if err != nil || l.Spec.Seed != 9 {
		t.Errorf("ParseLink(seed=9) = seed %d, %v; want 9", l.Spec.Seed, err)
	}
}

func TestSweepLinks(t *testing.T) {
	key, links, err := SweepLinks("delay=20ms", "up:loss=0%,5%,20%", 3)
	if err != nil {
		t.Fatal(err)
	}
	if key != "up:loss" || len(links) != 3 {
		t.Fatalf("SweepLinks = %q, %d links; want up:loss, 3", key, len(links))
	}
	for i, want := range []float64{0, 0.05, 0.2} {
		l := links[i]
		if l.Spec.Up.Loss != want || l.Spec.Down.Loss != 0 || l.Spec.Up.Delay != 20*time.Millisecond || l.Spec.Seed != 3 {
			t.Errorf("link %d = %v, want up loss %v over delay=20ms, seed 3", i, l.Spec, want)
		}
	}
	for _, bad := range []string{"loss", "=1%", "loss=", "loss=5%,x", "colour=red"} {
		if _, _, err := SweepLinks("", bad, 1); err == nil {
			t.Errorf("SweepLinks(%q) succeeded, want an error", bad)
		}
	}
	xs, unit, numeric := sweepAxis([]string{"0%", "5%", "20%"})
	if !numeric || unit != "%" || xs[2] != 20 {
		t.Errorf("sweepAxis(percentages) = %v, %q, %v", xs, unit, numeric)
	}
	xs, unit, _ = sweepAxis([]string{"10ms", "1s"})
	if unit != "ms" || xs[1] != 1000 {
		t.Errorf("sweepAxis(durations) = %v, %q", xs, unit)
	}
	if _, _, numeric := sweepAxis([]string{"uniform", "pareto"}); numeric {
		t.Errorf("sweepAxis(names) is numeric")
	}
}

// TestLossSweep: more loss, less raw delivery; the reliable mode delivers
// everything whatever the loss.
func TestLossSweep(t *testing.T) {
	key, links, err := SweepLinks("delay=5ms", "loss=0%,10%,30%", 1)
	if err != nil {
		t.Fatal(err)
	}
	rep, err := Run(context.Background(), Config{
		Modes: []string{"raw", "kcp-fec"}, Links: links, Sweep: key, Seed: 1,
		Workload: Workload{Messages: 300, Interval: time.Millisecond},
	})
	if err != nil {
		t.Fatal(err)
	}
	var raws []float64
	for _, r := range rep.Results {
		if r.Mode == "raw" {
			raws = append(raws, r.DeliveredPct())
		} else if r.Delivered != r.Sent {
			t.Errorf("reliable-fec on %s delivered %d of %d", r.Link, r.Delivered, r.Sent)
		}
	}
	if len(raws) != 3 || !(raws[0] == 100 && raws[1] < raws[0] && raws[2] < raws[1]) {
		t.Errorf("raw delivery over loss 0%%, 10%%, 30%% = %v%%, want 100 then falling", raws)
	}
}

// TestTargets measures servers started apart from compare, as
// "udplab serve" runs them.
func TestTargets(t *testing.T) {
	rs, err := raw.Listen("127.0.0.1:0", message.Greet, &raw.ServerConfig{Logger: discard})
	if err != nil {
		t.Fatal(err)
	}
	defer rs.Close()
	ks, err := reliable.Listen("127.0.0.1:0", message.Greet, &reliable.Config{Logger: discard})
	if err != nil {
		t.Fatal(err)
	}
	defer ks.Close()
	plain, err := reliable.Listen("127.0.0.1:0", message.Greet, &reliable.Config{Logger: discard, NoFEC: true})
	if err != nil {
		t.Fatal(err)
	}
	defer plain.Close()
	rep, err := Run(context.Background(), Config{
		Targets: []Target{
			{Mode: "raw", Addr: rs.Addr().String()},
			{Mode: "kcp-fec", Addr: ks.Addr().String()},
			{Mode: "kcp", Addr: plain.Addr().String()},
		},
		Workload: Workload{Messages: 200, Interval: 200 * time.Microsecond},
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Results) != 3 || len(rep.Config.Targets) != 3 || rep.Config.Links != nil {
		t.Fatalf("report = %+v, want three target runs and no links", rep)
	}
	// A mode means one configuration: reliable is KCP without FEC, and
	// the record says so.
	for i, want := range []string{"raw", "kcp-fec", "kcp"} {
		if rep.Results[i].Mode != want {
			t.Errorf("target %d reported as %s, want %s", i, rep.Results[i].Mode, want)
		}
	}
	if got := rep.Config.transportInfo("kcp-fec").Settings["fec"]; got != "10,3" {
		t.Errorf("recorded FEC %v, want 10,3 for the kcp-fec target", got)
	}
	for _, r := range rep.Results {
		if r.Delivered != 200 || r.InOrder != 200 {
			t.Errorf("%s at %s: delivered %d, in order %d; want 200 on loopback", r.Mode, r.Link, r.Delivered, r.InOrder)
		}
		if r.WirePackets < 400 || r.WireBytes < r.PayloadBytes {
			t.Errorf("%s: wire %d packets, %d bytes for %d payload: want at least a request and a reply each",
				r.Mode, r.WirePackets, r.WireBytes, r.PayloadBytes)
		}
	}
	if raw := rep.Results[0]; raw.WireBytes != raw.PayloadBytes {
		t.Errorf("raw target: wire %d bytes, payload %d; want equal", raw.WireBytes, raw.PayloadBytes)
	}
	if got := rs.Stats().Requests; got != 200 {
		t.Errorf("raw server saw %d requests, want 200", got)
	}
}

// TestNoTargetThere: nothing listening means nothing delivered, after the
// straggler wait, not a hang.
func TestNoTargetThere(t *testing.T) {
	pc, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := pc.LocalAddr().String()
	pc.Close()
	rep, err := Run(context.Background(), Config{
		Targets:  []Target{{Mode: "raw", Addr: addr}},
		Workload: Workload{Messages: 10, Interval: time.Millisecond, Wait: 50 * time.Millisecond},
	})
	if err != nil {
		t.Fatal(err)
	}
	r := rep.Results[0]
	if r.Sent != 10 || r.Delivered != 0 {
		t.Errorf("sent %d, delivered %d; want 10, 0", r.Sent, r.Delivered)
	}
	// No replies: no latency, no jitter, no first reply. Not zero.
	if r.Latency != nil || r.JitterMS != nil || r.FirstMS != nil {
		t.Errorf("no replies, yet latency %v, jitter %v, first reply %v; want nil", r.Latency, r.JitterMS, r.FirstMS)
	}
	var js, csv, tab bytes.Buffer
	if err := rep.WriteJSON(&js); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(js.String(), `"latency_ms": null`) || !strings.Contains(js.String(), `"jitter_ms": null`) {
		t.Errorf("JSON with no replies lacks null latency and jitter:\n%s", js.String())
	}
	rep.WriteCSV(&csv)
	row := strings.Split(strings.Split(csv.String(), "\n")[1], ",")
	if i := slices.Index(csvHeader, "latency_ms_p50"); row[i] != "" {
		t.Errorf("CSV latency_ms_p50 = %q with no replies, want empty", row[i])
	}
	rep.WriteTable(&tab)
	if !regexp.MustCompile(`(?m) +0 +0 +- +- +- +- +- +-$`).MatchString(tab.String()) {
		t.Errorf("table with no replies does not show - for its latencies:\n%s", tab.String())
	}
}

// TestRecordedConfigIsWhatRan: without a reliable-fec run, no FEC shards
// are recorded, even though --fec has a default.
func TestRecordedConfigIsWhatRan(t *testing.T) {
	l, _ := ParseLink("delay=1ms", 1)
	rep, err := Run(context.Background(), Config{Modes: []string{"raw", "kcp"}, Links: []Link{l},
		Workload: Workload{Messages: 5, Interval: time.Millisecond}})
	if err != nil {
		t.Fatal(err)
	}
	for _, ti := range rep.Config.Transports {
		if _, ok := ti.Settings["fec"]; ok {
			t.Errorf("recorded FEC for %s in a comparison without kcp-fec, want none", ti.Mode)
		}
	}
	if err := (&Config{Modes: []string{"kcp-fec"}, Settings: modes.Settings{KCP: reliable.Config{NoFEC: true}}}).Validate(); err == nil {
		t.Errorf("kcp-fec with FEC off validated; want a refusal")
	}
}

// TestDeadLinkStalls: over a link that loses everything, KCP's window fills
// and Send blocks; the run ends as stalled after the wait instead of
// hanging.
func TestDeadLinkStalls(t *testing.T) {
	l, err := ParseLink("loss=100%", 1)
	if err != nil {
		t.Fatal(err)
	}
	rep, err := Run(context.Background(), Config{
		Modes: []string{"kcp"}, Links: []Link{l},
		Workload: Workload{Messages: 1000, Interval: 0, Wait: 300 * time.Millisecond},
	})
	if err != nil {
		t.Fatal(err)
	}
	r := rep.Results[0]
	if !r.Stalled || r.Delivered != 0 || r.Sent >= 1000 {
		t.Errorf("dead link: stalled %v, sent %d, delivered %d; want stalled, fewer than 1000 sent, none delivered",
			r.Stalled, r.Sent, r.Delivered)
	}
}

// TestSlowPacingIsNotAStall: an interval longer than the straggler wait is
// pacing, not a stall.
func TestSlowPacingIsNotAStall(t *testing.T) {
	l, _ := ParseLink("delay=1ms", 1)
	rep, err := Run(context.Background(), Config{
		Modes: []string{"raw"}, Links: []Link{l},
		Workload: Workload{Messages: 3, Interval: 250 * time.Millisecond, Wait: 50 * time.Millisecond},
	})
	if err != nil {
		t.Fatal(err)
	}
	if r := rep.Results[0]; r.Stalled || r.Sent != 3 || r.Delivered != 3 {
		t.Errorf("3 greetings 250ms apart: stalled %v, sent %d, delivered %d; want not stalled, 3, 3", r.Stalled, r.Sent, r.Delivered)
	}
}

func TestCancel(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	l, _ := ParseLink("delay=5ms", 1)
	c := Config{Modes: []string{"raw", "kcp"}, Links: []Link{l}, Workload: Workload{Messages: 100000, Interval: time.Millisecond}}
	var sent int
	c.Progress = func(n int) {
		if sent += n; sent >= 100 {
			cancel()
		}
	}
	rep, err := Run(ctx, c)
	if err == nil || rep == nil || len(rep.Results) != 1 || rep.Results[0].Sent >= 100000 {
		t.Fatalf("Run cancelled after 100 sends = %v, %v; want the cancelled run reported with its error", rep, err)
	}
	if !rep.Results[0].Interrupted {
		t.Errorf("the cancelled run is not marked interrupted: its losses would read as the transport's")
	}
}

// TestHarnessAllocations: the harness allocates per run, never per
// message. Over the raw transport on its allocation-free path (plain UDP
// sockets on loopback, no link), 2000 more messages cost no more
// allocations, so any a run shows per message are the transports' or the
// link's.
func TestHarnessAllocations(t *testing.T) {
	srv, err := raw.Listen("127.0.0.1:0", message.Greet, &raw.ServerConfig{Logger: discard})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	mallocs := func(n int) uint64 {
		conn, err := raw.Dial(srv.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		w := Workload{Messages: n, Interval: 20 * time.Microsecond, Wait: 100 * time.Millisecond}
		var before, after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		rec := NewRecorder(n)
		if _, err := w.drive(context.Background(), conn, rec, driveOpts{}); err != nil {
			t.Fatal(err)
		}
		runtime.ReadMemStats(&after)
		return after.Mallocs - before.Mallocs
	}
	mallocs(100) // warm up one-time allocations
	small, large := mallocs(100), mallocs(2100)
	perMessage := (float64(large) - float64(small)) / 2000
	t.Logf("allocations: %d for 100 messages, %d for 2100: %.3f per message", small, large, perMessage)
	if perMessage > 0.05 {
		t.Errorf("the harness allocates %.2f times per message, want 0", perMessage)
	}
}

// TestProbeOncePerCleanLink: links that differ only in their losses share
// one connection probe per mode; a different delay, or jitter under
// another seed, is probed anew.
func TestProbeOncePerCleanLink(t *testing.T) {
	c := Config{probed: make(map[probeKey]*Connect)}
	spec := func(s string) link.Spec {
		sp, err := link.Parse(s)
		if err != nil {
			t.Fatal(err)
		}
		return sp
	}
	ctx := context.Background()
	first := c.probeConnect(ctx, "raw", spec("delay=2ms"))
	if first == nil {
		t.Fatal("no probe on a clean link")
	}
	if p := c.probeConnect(ctx, "raw", spec("loss=10%,delay=2ms")); p != first {
		t.Errorf("loss=10%%,delay=2ms probed anew (%+v), want the figure of delay=2ms (%+v)", p, first)
	}
	if p := c.probeConnect(ctx, "raw", spec("delay=2ms,seed=9")); p != first {
		t.Errorf("another seed with no jitter probed anew")
	}
	for _, s := range []string{"delay=3ms", "delay=2ms,jitter=1ms", "delay=2ms,jitter=1ms,seed=9"} {
		c.probeConnect(ctx, "raw", spec(s))
	}
	if len(c.probed) != 4 {
		t.Errorf("%d probes made, want 4 (delay 2ms, 3ms, and jitter under two seeds)", len(c.probed))
	}
}
