package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"regexp"
	"runtime/debug"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"

	"github.com/udplab/udplab/message"
	"github.com/udplab/udplab/modes"
)

// TestServeMetricsAndDrain runs serve in process with every listener and
// --metrics, greets the raw server, reads its count from /metrics, then
// ends serve as SIGTERM does, by cancelling its context: it drains every
// server, logs each one's summary, exits 0 and closes the endpoint.
func TestServeMetricsAndDrain(t *testing.T) {
	limitBefore := debug.SetMemoryLimit(-1)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	args := []string{"serve", "--metrics", "127.0.0.1:0", "--memory-limit", "512MiB", "--drain", "5s"}
	for _, m := range modes.All() {
		args = append(args, "--"+m.ListenFlag(), "127.0.0.1:0")
	}
	var errOut syncBuffer
	code := make(chan int, 1)
	go func() { code <- run(ctx, args, &stdio{strings.NewReader(""), io.Discard, &errOut}) }()

	url := waitLine(t, &errOut, `msg=starting memory_limit=512MiB memory_limit_from=--memory-limit drain=5s metrics=(http://\S+/metrics)`)[1]
	for _, m := range modes.All() {
		waitLine(t, &errOut, `msg=serving mode=`+m.Name+` `)
	}
	raw := waitLine(t, &errOut, `msg=serving mode=raw addr=(\S+)`)[1]
	const sent = 5
	c := dialTest(t, modes.Raw, raw)
	for i := range sent {
		rctx, rcancel := context.WithTimeout(context.Background(), 5*time.Second)
		_, err := message.RoundTrip(rctx, c, fmt.Appendf(nil, "n%d", i))
		rcancel()
		if err != nil {
			t.Fatalf("greeting %d: %v", i, err)
		}
	}

	fams, err := scrape(url)
	if err != nil {
		t.Fatal(err)
	}
	if got, ok := metricValue(fams, "udplab_server_requests_total", "raw", dto.MetricType_COUNTER); !ok || got != sent {
		t.Errorf(`udplab_server_requests_total{mode="raw"} = %v (found %v), want counter %d`, got, ok, sent)
	}
	if _, ok := metricValue(fams, "udplab_server_sessions", "kcp", dto.MetricType_GAUGE); !ok {
		t.Error(`no gauge udplab_server_sessions{mode="kcp"}`)
	}
	if _, ok := fams["go_goroutines"]; !ok {
		t.Error("no go_goroutines: the Go runtime's metrics are missing")
	}

	cancel()
	select {
	case got := <-code:
		if got != exitOK {
			t.Fatalf("serve exited %d, want 0; stderr:\n%s", got, errOut.String())
		}
	case <-time.After(30 * time.Second): // a bound on a hang, not a timing
		t.Fatalf("serve did not return after its context ended; stderr:\n%s", errOut.String())
	}
	for _, m := range modes.All() {
		wantLine(t, errOut.String(), `level=INFO msg=drained mode=`+m.Name+` cut_off=none`)
		wantLine(t, errOut.String(), `msg=summary mode=`+m.Name+` `)
	}
	wantLine(t, errOut.String(), fmt.Sprintf(`msg=summary mode=raw requests=%d replies=%d `, sent, sent))
	if _, err := scrape(url); err == nil {
		t.Error("the metrics endpoint still answers after serve returned")
	}
	if got := debug.SetMemoryLimit(-1); got != limitBefore {
		t.Errorf("memory limit after serve = %d, want %d as before", got, limitBefore)
	}
}

// waitLine waits, for at most 10s, for a line of buf matching expr, and
// returns its submatches.
func waitLine(t *testing.T, buf *syncBuffer, expr string) []string {
	t.Helper()
	re := regexp.MustCompile(`(?m)` + expr)
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		if m := re.FindStringSubmatch(buf.String()); m != nil {
			return m
		}
	}
	t.Fatalf("no line matching %q in:\n%s", expr, buf.String())
	return nil
}

func wantLine(t *testing.T, text, expr string) {
	t.Helper()
	if !regexp.MustCompile(`(?m)` + expr).MatchString(text) {
		t.Errorf("no line matching %q in:\n%s", expr, text)
	}
}

// fakeServer is a server with given counters and, with shutdown, a drain
// of its own.
type fakeServer struct {
	modes.Server
	stats    message.ServerStats
	drops    uint64
	known    bool
	summary  []any
	shutdown func(context.Context) error
}

func (f *fakeServer) Stats() message.ServerStats           { return f.stats }
func (f *fakeServer) SocketDrops() (uint64, bool)          { return f.drops, f.known }
func (f *fakeServer) Summary() []any                       { return f.summary }
func (f *fakeServer) Shutdown(ctx context.Context) error   { return f.shutdown(ctx) }
func (f *fakeServer) as(mode string) []listener            { return []listener{{mode, f}} }
func (f *fakeServer) withSummary(attrs ...any) *fakeServer { f.summary = attrs; return f }

// TestDrain: every server gets a live context with the drain's deadline;
// with --drain 0 it is over at once, and what a server cut off is logged
// before its summary.
func TestDrain(t *testing.T) {
	for _, tt := range []struct {
		d    time.Duration
		want string
	}{
		{time.Hour, `level=INFO msg=drained mode=x cut_off=none`},
		{0, `level=WARN msg=drained mode=x cut_off="3 requests cut off: context deadline exceeded"`},
	} {
		var live, deadline bool
		srv := &fakeServer{summary: []any{"sessions", 1}, shutdown: func(ctx context.Context) error {
			live = ctx.Err() == nil
			_, deadline = ctx.Deadline()
			if live {
				return nil
			}
			return fmt.Errorf("3 requests cut off: %w", ctx.Err())
		}}
		var buf bytes.Buffer
		drain(slog.New(slog.NewTextHandler(&buf, nil)), srv.as("x"), tt.d)
		if live != (tt.d > 0) || !deadline {
			t.Errorf("--drain %v: Shutdown's context live %v, with a deadline %v; want %v, true", tt.d, live, deadline, tt.d > 0)
		}
		wantLine(t, buf.String(), tt.want+`\n.*msg=summary mode=x requests=0 .* sessions=1 socket_drops=unknown$`)
	}
}

// TestMemoryLimit: --memory-limit takes sizes and off; the flag wins over
// GOMEMLIMIT, which wins over the default; serve puts back the limit it
// found.
func TestMemoryLimit(t *testing.T) {
	var n int64
	v := memoryLimitValue{&n}
	for _, tt := range []struct {
		in   string
		want int64 // 0: refused
	}{
		{"512MiB", 512 << 20}, {"2GB", 2e9}, {"off", noMemoryLimit}, {"16MiB", 16 << 20},
		{"0", 0}, {"1MiB", 0}, {"lots", 0}, {"-1GiB", 0},
	} {
		n = 0
		err := v.Set(tt.in)
		if (err == nil) != (tt.want != 0) || n != tt.want {
			t.Errorf("--memory-limit %s: %d, %v; want %d", tt.in, n, err, tt.want)
		}
	}
	before := debug.SetMemoryLimit(-1)
	for _, tt := range []struct {
		env      string
		explicit bool
		from     string
	}{
		{"", false, "default"}, {"", true, "--memory-limit"}, {"300MiB", true, "--memory-limit"}, {"300MiB", false, "GOMEMLIMIT"},
	} {
		t.Setenv("GOMEMLIMIT", tt.env)
		limit, from, restore := setMemoryLimit(64<<20, tt.explicit)
		inForce := debug.SetMemoryLimit(-1)
		restore()
		wantLimit := int64(64 << 20)
		if tt.from == "GOMEMLIMIT" {
			wantLimit = before // the runtime read GOMEMLIMIT when the process started
		}
		if from != tt.from || limit != wantLimit || inForce != wantLimit {
			t.Errorf("GOMEMLIMIT=%q, explicit %v: limit %d from %s, in force %d; want %d from %s", tt.env, tt.explicit, limit, from, inForce, wantLimit, tt.from)
		}
		if got := debug.SetMemoryLimit(-1); got != before {
			t.Errorf("after restore the limit is %d, want %d", got, before)
		}
	}
	for n, want := range map[int64]string{1 << 30: "1GiB", 512 << 20: "512MiB", 2e9: "1953125KiB", 1000: "1000B", noMemoryLimit: "off"} {
		if got := formatLimit(n); got != want {
			t.Errorf("formatLimit(%d) = %q, want %q", n, got, want)
		}
	}
}
