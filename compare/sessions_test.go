package compare

import (
	"context"
	"encoding/json"
	"errors"
	"math"
	"os"
	"reflect"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/udplab/udplab/modes"
	"github.com/udplab/udplab/reliable"
)

// testSessions and testHold are small enough for -race on a busy machine,
// and n large enough that a kcp session's kilobytes stand far above the
// noise of a heap reading.
const (
	testSessions = 40
	testHold     = 100 * time.Millisecond
)

// quickChildExit keeps a race-detecting child from sleeping a second as
// it exits (the race runtime's atexit_sleep_ms), which each measurement
// would wait for. Other children ignore GORACE.
func quickChildExit(t *testing.T) {
	t.Setenv("GORACE", strings.TrimSpace(os.Getenv("GORACE")+" atexit_sleep_ms=0"))
}

// TestSessionsEveryMode holds testSessions sessions with every mode, then
// checks that raw's server, which keeps nothing per client, costs less
// heap per session than kcp's, which keeps a KCP session for each.
func TestSessionsEveryMode(t *testing.T) {
	quickChildExit(t)
	got := map[string]*SessionStats{}
	for _, name := range modes.Names() {
		var calls, last int
		st, err := measureSessions(t.Context(), name, modes.Settings{}, testSessions, testHold, func(opened int) {
			calls++
			last = opened
		})
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		got[name] = st
		js, _ := json.Marshal(st)
		t.Logf("%s", js)
		if st.Opened != testSessions || st.Held != testSessions || st.Failed != "" {
			t.Errorf("%s: opened %d, held %d of %d, failed %q; want all, and no failure", name, st.Opened, st.Held, testSessions, st.Failed)
		}
		if calls != testSessions || last != testSessions {
			t.Errorf("%s: progress called %d times, last with %d; want %d, ending with %d", name, calls, last, testSessions, testSessions)
		}
		if st.OpenS <= 0 || st.HoldS < testHold.Seconds() {
			t.Errorf("%s: open %gs, hold %gs; want some, and at least %v", name, st.OpenS, st.HoldS, testHold)
		}
		// The runtime shrinks idle stacks, so a mode without a goroutine
		// per session may show a little less stack than before it opened.
		if st.GoroutinesPerSession < 0 || (st.GoroutinesPerSession >= 1 && st.StackBytesPerSession <= 0) {
			t.Errorf("%s: %g goroutines, %g stack bytes per session; want no fewer goroutines than before, and stack for each", name, st.GoroutinesPerSession, st.StackBytesPerSession)
		}
		if cpu := st.IdleCPUPerSession; cpu != nil && *cpu < 0 {
			t.Errorf("%s: idle CPU per session %g; want no less than none", name, *cpu)
		}
	}
	raw, kcp := got["raw"], got["kcp"]
	if raw.HeapBytesPerSession >= kcp.HeapBytesPerSession {
		t.Errorf("heap per session: raw %.0f bytes, kcp %.0f; want raw's below", raw.HeapBytesPerSession, kcp.HeapBytesPerSession)
	}
	// tcp's server runs a goroutine per connection; raw's none, and
	// kcp's none while its sessions are idle.
	tcp := got["tcp"]
	if tcp.GoroutinesPerSession < 1 || raw.GoroutinesPerSession >= tcp.GoroutinesPerSession || kcp.GoroutinesPerSession >= 1 {
		t.Errorf("goroutines per session: raw %g, tcp %g, kcp %g; want tcp at least 1, raw and kcp below 1", raw.GoroutinesPerSession, tcp.GoroutinesPerSession, kcp.GoroutinesPerSession)
	}
}

// TestSessionsServerCap: a tcp server that keeps at most cap connections
// closes the ones beyond at once, so exactly cap sessions open, and Failed
// says why not all did.
func TestSessionsServerCap(t *testing.T) {
	quickChildExit(t)
	const limit = 10
	st, err := measureSessions(t.Context(), "tcp", modes.Settings{MaxSessions: limit}, 2*limit, 0, nil)
	if err != nil {
		t.Fatal(err)
	}
	if st.Opened != limit || st.Held != limit || st.Failed == "" {
		t.Errorf("opened %d, held %d of %d, failed %q; want %d, %d and a reason", st.Opened, st.Held, 2*limit, st.Failed, limit, limit)
	}
	if st.IdleCPUPerSession != nil {
		t.Errorf("idle CPU per session %g after no hold; want unknown", *st.IdleCPUPerSession)
	}
}

// TestSessionsCancel: cancelling the measurement once every session is
// open ends it with the cancel's cause, without the hour's hold; the child
// is stopped and every conversation closed (TestMain checks for leaks).
func TestSessionsCancel(t *testing.T) {
	quickChildExit(t)
	cause := errors.New("enough")
	ctx, cancel := context.WithCancelCause(t.Context())
	defer cancel(nil)
	_, err := measureSessions(ctx, "raw", modes.Settings{}, 4, time.Hour, func(opened int) {
		if opened == 4 {
			cancel(cause)
		}
	})
	if !errors.Is(err, cause) {
		t.Errorf("measureSessions cancelled = %v; want %v", err, cause)
	}
}

func TestSessionsRefuses(t *testing.T) {
	quickChildExit(t)
	for _, c := range []struct {
		mode string
		s    modes.Settings
		n    int
	}{
		{"carrier-pigeon", modes.Settings{}, 1},
		{"raw", modes.Settings{}, 0},
		{"kcp-fec", modes.Settings{KCP: reliable.Config{NoFEC: true}}, 1}, // the child refuses it
	} {
		if st, err := measureSessions(t.Context(), c.mode, c.s, c.n, 0, nil); err == nil {
			t.Errorf("measureSessions(%s, %d) = %+v; want an error", c.mode, c.n, st)
		}
	}
}

// TestSessionSpecRoundTrip: every setting reaches the child as the parent
// has it, but the loggers, which do not survive JSON and which the child's
// server does not use.
func TestSessionSpecRoundTrip(t *testing.T) {
	s := modes.Settings{
		KCP: reliable.Config{DataShards: 4, ParityShards: 2, Profile: "fast2", SendWindow: 64, ReceiveWindow: 256,
			MTU: 1200, Key: "k", Crypt: "aes", Idle: time.Minute, MaxSessions: 7, Logger: discard},
		FECFlush: time.Millisecond, QUIC: modes.QUICSettings{Cert: "c.pem", Key: "k.pem", Pin: "ab"},
		Idle: time.Hour, MaxSessions: 9, Logger: discard,
	}
	spec, err := specOf("kcp", s)
	if err != nil {
		t.Fatal(err)
	}
	var got sessionSpec
	if err := json.Unmarshal([]byte(spec), &got); err != nil {
		t.Fatal(err)
	}
	want := s
	want.Logger, want.KCP.Logger = nil, nil
	if got.Mode != "kcp" || !reflect.DeepEqual(got.Settings, want) {
		t.Errorf("specOf round trip = %s %+v; want kcp %+v", got.Mode, got.Settings, want)
	}
}

func TestTailBuffer(t *testing.T) {
	var b tailBuffer
	if q := b.quote(); q != "" {
		t.Errorf("empty quote() = %q; want none", q)
	}
	b.Write([]byte(strings.Repeat("x", stderrTail)))
	b.Write([]byte("panic: the end\n"))
	q := b.quote()
	if !strings.HasSuffix(q, "panic: the end") || len(q) != len(": ")+stderrTail-1 {
		t.Errorf("quote() = ...%q (%d bytes); want the last %d bytes, trimmed", q[max(0, len(q)-20):], len(q), stderrTail)
	}
}

// TestSessionsPerSession divides made-up readings: 100 sessions that
// added 1 MB of heap, 2 goroutines each, and used the CPU given during a
// 2-second hold, on a server with 2 cores.
func TestSessionsPerSession(t *testing.T) {
	f := func(v float64) *float64 { return &v }
	u := func(v uint64) *uint64 { return &v }
	for _, c := range []struct {
		name           string
		server, client float64 // CPU seconds during the hold
		machine        *float64
		want           bool
	}{
		{"idle", 0.2, 0.2, f(0.1), false},
		{"server short of its cores", 3.8, 0, f(0.95), true},
		{"machine busy", 0.2, 0.2, f(0.95), true},
		{"machine unknown, clients busy", 0.2, 1.9 * float64(runtime.NumCPU()), nil, true},
		{"machine unknown, idle", 0.2, 0.2, nil, false},
	} {
		st := SessionStats{Opened: 100, HoldS: 2, ServerGOMAXPROCS: 2, MachineCPUBusy: c.machine,
			Baseline:  SessionReading{HeapBytes: 1e6, Goroutines: 5, RSSBytes: u(3e6)},
			AfterOpen: SessionReading{ReadCPUS: f(1)},
			AfterHold: SessionReading{HeapBytes: 2e6, Goroutines: 205, CPUS: f(1 + c.server)},
		}
		st.perSession(time.Duration(c.client*float64(time.Second)), true)
		if st.HeapBytesPerSession != 1e4 || st.GoroutinesPerSession != 2 || st.RSSBytesPerSession != nil {
			t.Errorf("%s: heap %g, goroutines %g, RSS %v per session; want 10000, 2, unknown", c.name,
				st.HeapBytesPerSession, st.GoroutinesPerSession, st.RSSBytesPerSession)
		}
		if cpu, want := st.IdleCPUPerSession, c.server/2/100; cpu == nil || math.Abs(*cpu-want) > want*1e-9 {
			t.Errorf("%s: idle CPU per session %v; want %g", c.name, deref(cpu), want)
		}
		if st.CPUSaturated != c.want {
			t.Errorf("%s: saturated %v; want %v", c.name, st.CPUSaturated, c.want)
		}
	}
}

// deref is *p, or NaN for nil, for messages.
func deref(p *float64) float64 {
	if p == nil {
		return math.NaN()
	}
	return *p
}

// TestOpenWorkers: a mode whose server queues few handshaken connections
// for accepting opens no more than that at once; the others sessionWorkers.
func TestOpenWorkers(t *testing.T) {
	for _, tt := range []struct {
		traits modes.Traits
		want   int
	}{
		{modes.Traits{}, sessionWorkers},
		{modes.Traits{AcceptQueue: modes.QUICAcceptQueue}, modes.QUICAcceptQueue},
		{modes.Traits{AcceptQueue: 4 * sessionWorkers}, sessionWorkers},
	} {
		if got := openWorkers(tt.traits); got != tt.want {
			t.Errorf("openWorkers(AcceptQueue %d) = %d, want %d", tt.traits.AcceptQueue, got, tt.want)
		}
	}
	m, err := modes.Lookup("quic")
	if err != nil {
		t.Fatal(err)
	}
	tr, err := m.New(&modes.Settings{})
	if err != nil {
		t.Fatal(err)
	}
	if got := tr.Traits().AcceptQueue; got != modes.QUICAcceptQueue {
		t.Errorf("quic's AcceptQueue = %d, want %d", got, modes.QUICAcceptQueue)
	}
}
