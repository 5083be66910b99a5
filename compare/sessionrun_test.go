package compare

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
)

// TestSessionsReport runs the sessions workload through Run, with a sweep
// of two counts, and checks what the report makes of it: a result per
// count and mode, the table, the trade-off's resources row, CSV and chart.
func TestSessionsReport(t *testing.T) {
	quickChildExit(t)
	rep, err := Run(context.Background(), Config{
		Modes:         []string{"raw", "kcp"},
		Workload:      Workload{Kind: KindSessions, IdleHold: testHold},
		SessionsSweep: []int{10, testSessions},
		Sweep:         "sessions",
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Results) != 4 {
		t.Fatalf("%d results, want 4: two counts, two modes", len(rep.Results))
	}
	for _, x := range rep.Results {
		s := x.Sessions
		if s == nil || s.Opened != s.Sessions || s.Failed != "" || x.SweepValue == "" {
			t.Fatalf("%s: sessions %+v, sweep value %q", x.Mode, s, x.SweepValue)
		}
	}
	if raw, kcp := rep.Results[2].Sessions, rep.Results[3].Sessions; raw.HeapBytesPerSession >= kcp.HeapBytesPerSession {
		t.Errorf("raw's server heap per session %.0f B, not below kcp's %.0f B", raw.HeapBytesPerSession, kcp.HeapBytesPerSession)
	}
	var text strings.Builder
	if err := rep.WriteTable(&text); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"Sessions: what each held", "loopback, 10 sessions", "The trade-off, measured with ", "10, then 40 conversations a mode", "resources ", "kB RSS"} {
		if !strings.Contains(text.String(), want) {
			t.Errorf("table lacks %q:\n%s", want, text.String())
		}
	}
	rows := csvRows(t, rep)
	if len(rows) != 5 || rows[1][len(csvHeader)-len(sessionsCSVHeader)] != "10" {
		t.Errorf("CSV: %d rows, first sessions cell %q", len(rows), rows[1][len(csvHeader)-len(sessionsCSVHeader)])
	}
	if err := rep.WriteChart(filepath.Join(t.TempDir(), "sessions.svg")); err != nil {
		t.Errorf("chart: %v", err)
	}
}
