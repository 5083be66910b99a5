package main

import (
	"bytes"
	"context"
	"encoding/json"
	"math"
	"os"
	"regexp"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/udplab/udplab/compare"
	"github.com/udplab/udplab/fec"
)

// compareJSON runs udplab compare in process with --format json and
// returns the decoded document.
func compareJSON(t *testing.T, args ...string) map[string]any {
	t.Helper()
	var out, errb bytes.Buffer
	args = append([]string{"compare", "--format", "json"}, args...)
	if code := run(context.Background(), args, &stdio{strings.NewReader(""), &out, &errb}); code != 0 {
		t.Fatalf("udplab %s: exit %d\n%s", strings.Join(args, " "), code, errb.String())
	}
	var doc map[string]any
	if err := json.Unmarshal(out.Bytes(), &doc); err != nil {
		t.Fatalf("output is not JSON: %v\n%s", err, out.String())
	}
	return doc
}

// TestCompareEndToEnd checks the figures the README promises for
// loss=10%,delay=20ms (10% loss each way, a 40 ms round trip), read from
// --format json: raw delivers about 0.9·0.9 = 81% at a median near 40 ms
// and spends exactly its payload on the wire; kcp, kcp-fec, tcp and quic
// deliver all 1000 greetings, once (all but quic in order), for more
// bytes, with retransmissions counted, and FEC repairs some losses. fec's
// figures are TestCompareFECOnly's.
func TestCompareEndToEnd(t *testing.T) {
	if testing.Short() {
		t.Skip("five runs of 1000 round trips")
	}
	// Mostly waiting on the link's delays: it overlaps the scripts and
	// TestCompareFECOnly (fec counts its own figures, not kcp-go's
	// process-wide ones, which this test's kcp runs read).
	t.Parallel()
	doc := compareJSON(t, "--link", "loss=10%,delay=20ms", "--modes", "raw,kcp,kcp-fec,tcp,quic",
		"--messages", "1000", "--interval", "2ms", "--quiet")
	results := doc["results"].([]any)
	if len(results) != 5 {
		t.Fatalf("got %d results, want 5 (raw, kcp, kcp-fec, tcp, quic)", len(results))
	}
	byMode := map[string]map[string]any{}
	for _, r := range results {
		m := r.(map[string]any)
		byMode[m["mode"].(string)] = m
	}
	num := func(m map[string]any, key string) float64 { return m[key].(float64) }
	lat := func(m map[string]any, key string) float64 { return m["latency_ms"].(map[string]any)[key].(float64) }

	r := byMode["raw"]
	// 3σ of a binomial(1000, 0.81): ±3.7%.
	sigma := math.Sqrt(0.81 * 0.19 / 1000)
	if d := num(r, "delivered") / 1000; math.Abs(d-0.81) > 3*sigma {
		t.Errorf("raw delivered %.1f%%, want 81%% ± %.1f%%", 100*d, 300*sigma)
	}
	if p50 := lat(r, "p50"); p50 < 38 || p50 > 43 {
		t.Errorf("raw median round trip %.1f ms, want near 40 ms", p50)
	}
	if num(r, "wire_bytes") != num(r, "payload_bytes") || num(r, "overhead") != 1 {
		t.Errorf("raw wire %v bytes for %v payload (overhead %v), want equal (1.00)", num(r, "wire_bytes"), num(r, "payload_bytes"), num(r, "overhead"))
	}
	if num(r, "retransmissions") != 0 || num(r, "fec_recovered") != 0 {
		t.Errorf("raw counted retransmissions %v, FEC %v; want 0", num(r, "retransmissions"), num(r, "fec_recovered"))
	}
	for _, mode := range []string{"kcp", "kcp-fec", "tcp", "quic"} {
		m := byMode[mode]
		inOrder := num(m, "in_order")
		if mode == "quic" {
			inOrder = 1000 // a stream a request: order is not promised
		}
		if num(m, "sent") != 1000 || num(m, "delivered") != 1000 || inOrder != 1000 || num(m, "duplicates") != 0 {
			t.Errorf("%s: sent %v, delivered %v, in order %v, duplicates %v; want 1000, 1000, 1000, 0",
				mode, num(m, "sent"), num(m, "delivered"), num(m, "in_order"), num(m, "duplicates"))
		}
		if num(m, "overhead") <= 1.5 || num(m, "wire_bytes") <= num(r, "wire_bytes") {
			t.Errorf("%s: overhead %.2f, want a measurable byte cost over raw", mode, num(m, "overhead"))
		}
		if num(m, "retransmissions") == 0 {
			t.Errorf("%s: no retransmissions counted over 10%% loss", mode)
		}
	}
	if got := num(byMode["kcp-fec"], "fec_recovered"); got == 0 {
		t.Errorf("kcp-fec: no FEC recoveries over 10%% loss")
	}
	if got := num(byMode["kcp"], "fec_recovered"); got != 0 {
		t.Errorf("kcp (no FEC): %v FEC recoveries, want 0", got)
	}
	// TCP's every segment and ACK crosses the same link: it delivers all,
	// in order, but a lost segment waits for a retransmission behind which
	// the later ones queue, so its tail is longer than raw's.
	tcp := byMode["tcp"]
	if lat(tcp, "p99") <= lat(r, "p99") {
		t.Errorf("tcp p99 %.1f ms, raw's %.1f ms: want tcp's above", lat(tcp, "p99"), lat(r, "p99"))
	}
	if per := num(tcp, "wire_bytes_with_headers") / num(tcp, "wire_packets"); per < 40 {
		t.Errorf("tcp: %.1f bytes a packet with headers, want at least IP's and TCP's 40", per)
	}
	if h := num(tcp, "header_bytes"); h < 40 {
		t.Errorf("tcp: header_bytes %v, want at least 40", h)
	}
	// The handshake is a round trip of the link, before the first request.
	for _, mode := range []string{"tcp", "quic"} {
		if c := num(byMode[mode], "connect_ms"); c < 40 {
			t.Errorf("%s: connect_ms %.1f, want at least the link's 40 ms round trip", mode, c)
		}
	}
	// A lost QUIC packet delays only the streams it carried, so replies
	// overtake one another.
	if q := num(byMode["quic"], "in_order"); q >= 1000 {
		t.Errorf("quic: %v of 1000 in order over 10%% loss, want some out of order", q)
	}
}

// TestCompareFECOnly checks fec on loss=10%,delay=20ms at one greeting
// every 5 ms: parity alone rebuilds most losses, so it delivers at least
// 95% (a greeting is lost when a datagram and its group's parity are), with
// no retransmission, and a rebuilt greeting waits at most the flush
// timeout, so its p99 is under 2 × (round trip + flush) unless the run was
// noisy (the link itself late: a busy host).
func TestCompareFECOnly(t *testing.T) {
	if testing.Short() {
		t.Skip("1000 round trips at 5 ms")
	}
	t.Parallel() // see TestCompareEndToEnd
	doc := compareJSON(t, "--link", "loss=10%,delay=20ms", "--modes", "fec",
		"--messages", "1000", "--interval", "5ms", "--quiet")
	m := doc["results"].([]any)[0].(map[string]any)
	num := func(key string) float64 { return m[key].(float64) }
	if d := num("delivered"); d < 950 || num("sent") != 1000 {
		t.Errorf("fec delivered %v of %v, want at least 950 of 1000", d, num("sent"))
	}
	if r := num("retransmissions"); r != 0 {
		t.Errorf("fec: %v retransmissions, want 0", r)
	}
	if num("fec_recovered") == 0 {
		t.Error("fec: nothing rebuilt over 10% loss")
	}
	lost := m["lost"].(map[string]any)
	if u := lost["unrepaired"].(float64); u != 1000-num("delivered")-lost["late"].(float64)-lost["refused"].(float64) {
		t.Errorf("fec: unrepaired %v does not account for the %v not delivered", u, 1000-num("delivered"))
	}
	bound := 2 * (40 + float64(fec.DefaultFlush.Milliseconds())) // ms: round trip and the default flush
	if p99 := m["latency_ms"].(map[string]any)["p99"].(float64); p99 >= bound {
		if m["noisy"] == true {
			t.Logf("fec p99 %.1f ms on a noisy run (the link late): bound %.0f ms not checked", p99, bound)
		} else {
			t.Errorf("fec p99 %.1f ms, want under %.0f ms", p99, bound)
		}
	}
}

// TestCompareJSONDocumented checks the JSON against the README: every
// field it documents is in the output, and every field in the output is
// documented.
func TestCompareJSONDocumented(t *testing.T) {
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	greet := compareJSON(t, "--link", "delay=1ms", "--modes", "raw,reliable-fec", "--messages", "20", "--interval", "1ms", "--repeat", "2")
	bulk := compareJSON(t, "--workload", "bulk", "--bytes", "20kB", "--link", "rate=10mbit,delay=1ms", "--modes", "tcp", "--competing", "kcp")
	checkDocumented(t, string(readme), greet, true, "config", "results", "summaries")
	checkDocumented(t, string(readme), bulk, false, "config", "results")
	sessions := compareJSON(t, "--workload", "sessions", "--sessions", "3", "--idle-hold", "10ms", "--modes", "raw,tcp")
	checkDocumented(t, string(readme), sessions, false, "config", "results")
}

// checkDocumented checks that the README documents every field of doc in
// each part and, when all, that doc has every field the README documents,
// but those it says are omitted. The competing flow's fields are the bulk
// flow's; a null whose fields are documented is documented.
func checkDocumented(t *testing.T, readme string, doc map[string]any, all bool, parts ...string) {
	t.Helper()
	for _, part := range parts {
		documented := readmeFields(t, readme, part)
		var obj map[string]any
		if part == "config" {
			obj = doc["config"].(map[string]any)
		} else {
			obj = doc[part].([]any)[0].(map[string]any)
		}
		got := map[string]bool{}
		flatten("", obj, got)
		for f, optional := range documented {
			if all && !got[f] && !optional {
				t.Errorf("README documents %s field %q; the JSON has no such field", part, f)
			}
		}
		var undocumented []string
		for f := range got {
			if !isDocumented(documented, f) {
				undocumented = append(undocumented, f)
			}
		}
		sort.Strings(undocumented)
		for _, f := range undocumented {
			t.Errorf("JSON %s field %q is not in the README's list", part, f)
		}
	}
}

func isDocumented(documented map[string]bool, f string) bool {
	if rest, ok := strings.CutPrefix(f, "competing."); ok {
		f = "bulk." + rest
	}
	if _, ok := documented[f]; ok {
		return true
	}
	for d := range documented {
		if strings.HasPrefix(d, f+".") {
			return true
		}
	}
	return false
}

// readmeFields returns the backquoted names in the first column of the
// README's table between <!-- json:PART --> and <!-- /json:PART -->, each
// mapped to whether it is optional: its row says when it is "omitted".
func readmeFields(t *testing.T, readme, part string) map[string]bool {
	t.Helper()
	_, rest, ok := strings.Cut(readme, "<!-- json:"+part+" -->")
	block, _, ok2 := strings.Cut(rest, "<!-- /json:"+part+" -->")
	if !ok || !ok2 {
		t.Fatalf("README has no <!-- json:%s --> block", part)
	}
	fields := map[string]bool{}
	re := regexp.MustCompile("(?m)^\\| `([a-z_.0-9]+)`(.*)$")
	for _, m := range re.FindAllStringSubmatch(block, -1) {
		fields[m[1]] = strings.Contains(m[2], "omitted")
	}
	if len(fields) == 0 {
		t.Fatalf("README's json:%s block lists no fields", part)
	}
	return fields
}

// flatten records obj's keys, nested objects' as parent.child; arrays of
// objects record their elements' keys as parent.child too.
func flatten(prefix string, obj map[string]any, out map[string]bool) {
	for k, v := range obj {
		name := prefix + k
		switch v := v.(type) {
		case map[string]any:
			flatten(name+".", v, out)
		case []any:
			out[name] = true
			for _, e := range v {
				if m, ok := e.(map[string]any); ok {
					flatten(name+".", m, out)
				}
			}
		default:
			out[name] = true
		}
	}
}

// TestProgressAppearsLate: no bar for a short comparison; once one has run
// for progressAfter, the bar shows the messages sent so far.
func TestProgressAppearsLate(t *testing.T) {
	var buf bytes.Buffer
	p := &progress{w: &buf, start: time.Now(), total: 1000}
	p.add(100)
	if buf.Len() != 0 || p.bar != nil {
		t.Fatalf("a bar after %v: %q", time.Since(p.start), buf.String())
	}
	p.start = time.Now().Add(-progressAfter)
	p.add(100)
	p.add(300)
	if p.bar == nil {
		t.Fatal("no bar after progressAfter")
	}
	if got := p.bar.State().CurrentNum; got != 500 {
		t.Errorf("bar at %d, want 500", got)
	}
	p.finish()
	if !strings.Contains(buf.String(), "comparing") {
		t.Errorf("bar output %q lacks its description", buf.String())
	}
}

// TestCompareInterrupted: a comparison stopped part way prints the runs it
// measured, the stopped one included, and exits 1.
func TestCompareInterrupted(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	var out, errb bytes.Buffer
	args := []string{"compare", "--link", "delay=1ms", "--modes", "raw,reliable", "--messages", "100000", "--interval", "1ms"}
	if code := run(ctx, args, &stdio{strings.NewReader(""), &out, &errb}); code != 1 {
		t.Fatalf("exit %d, want 1\n%s", code, errb.String())
	}
	if !strings.Contains(errb.String(), "interrupted during run 1 of 2") {
		t.Errorf("stderr %q does not say where it stopped", errb.String())
	}
	if !regexp.MustCompile(`(?m)^delay=1ms( \*)? +raw +\d+`).MatchString(out.String()) || strings.Contains(out.String(), "reliable  ") {
		t.Errorf("stdout does not hold just the stopped raw run:\n%s", out.String())
	}
}

// TestWarnRuns: a noisy run gets one line on stderr naming the run and the
// figure; a target with no replies is named for the exit status.
func TestWarnRuns(t *testing.T) {
	rep := &compare.Report{Results: []compare.Result{
		{Mode: "raw", Link: "delay=20ms", Seed: 3, Delivered: 10, Noisy: true, TimingError: &compare.TimingError{P99: 12.5}},
		{Mode: "kcp", Link: "delay=20ms", Seed: 3, Delivered: 10},
		{Mode: "raw", Link: "127.0.0.1:9", Delivered: 0},
	}}
	var b bytes.Buffer
	silent := warnRuns(&b, rep, true)
	lines := strings.Split(strings.TrimSpace(b.String()), "\n")
	if len(lines) != 1 || !strings.Contains(lines[0], "raw on delay=20ms (seed 3) is noisy") || !strings.Contains(lines[0], "12.50 ms or more past their time (p99 lateness") {
		t.Errorf("warnings = %q; want one line naming the noisy run and its 12.50 ms", b.String())
	}
	if silent != "127.0.0.1:9 (raw)" {
		t.Errorf("silent target = %q, want 127.0.0.1:9 (raw)", silent)
	}
}
