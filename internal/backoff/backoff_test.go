package backoff

import (
	"bytes"
	"errors"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/udplab/udplab/internal/leakcheck"
)

func TestMain(m *testing.M) { leakcheck.VerifyTestMain(m) }

func TestNext(t *testing.T) {
	var b Backoff
	want := []time.Duration{5, 10, 20, 40, 80, 160, 320, 640, 1000, 1000}
	for i, w := range want {
		if got := b.Next(); got != w*time.Millisecond {
			t.Errorf("wait %d = %v, want %v", i, got, w*time.Millisecond)
		}
	}
	b.Reset()
	if got := b.Next(); got != first {
		t.Errorf("after Reset: %v, want %v", got, first)
	}
}

func TestWait(t *testing.T) {
	if !Wait(time.Millisecond, nil) {
		t.Error("Wait with nothing to stop it = false")
	}
	done := make(chan struct{})
	close(done)
	if Wait(time.Hour, done) {
		t.Error("Wait with done closed = true")
	}
}

// TestRetry: a failure is logged with its wait, and a closed done ends the
// loop instead of waiting.
func TestRetry(t *testing.T) {
	var logged bytes.Buffer
	log := slog.New(slog.NewTextHandler(&logged, nil))
	done := make(chan struct{})
	close(done)
	var b Backoff
	if b.Retry(log, "x: read failed", errors.New("boom"), done, "addr", "a") {
		t.Error("Retry went on after done closed")
	}
	if got := logged.String(); !strings.Contains(got, `msg="x: read failed" addr=a err=boom retry_in=5ms`) {
		t.Errorf("logged %q", got)
	}
}
