package logrl

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/udplab/udplab/internal/leakcheck"
)

func TestMain(m *testing.M) { leakcheck.VerifyTestMain(m) }

// newBuffered returns a Logger writing text lines without times to a
// buffer, at level.
func newBuffered(level slog.Level) (*Logger, *bytes.Buffer) {
	var buf bytes.Buffer
	h := slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: level, ReplaceAttr: func(_ []string, a slog.Attr) slog.Attr {
		if a.Key == slog.TimeKey {
			return slog.Attr{}
		}
		return a
	}})
	return New(slog.New(h), time.Second), &buf
}

func lines(b *bytes.Buffer) []string {
	s := strings.TrimSpace(b.String())
	if s == "" {
		return nil
	}
	return strings.Split(s, "\n")
}

// TestOneLinePerInterval: a burst of one kind writes one line; the next
// line after the interval carries the count of those suppressed.
func TestOneLinePerInterval(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		l, buf := newBuffered(slog.LevelInfo)
		err := errors.New("too many open files")
		for range 1000 {
			l.Warn("dial", "cannot dial", "err", err)
			l.Error("refused", "refused")
		}
		time.Sleep(999 * time.Millisecond)
		l.Warn("dial", "cannot dial", "err", err)
		time.Sleep(time.Millisecond)
		l.Warn("dial", "cannot dial", "err", err)
		want := []string{
			`level=WARN msg="cannot dial" err="too many open files"`,
			`level=ERROR msg=refused`,
			`level=WARN msg="cannot dial" err="too many open files" suppressed=1000`,
		}
		if got := lines(buf); strings.Join(got, "\n") != strings.Join(want, "\n") {
			t.Errorf("lines:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
		}
		buf.Reset()
		l.Flush()
		if got, want := lines(buf), []string{"level=ERROR msg=refused suppressed=999"}; strings.Join(got, "\n") != want[0] {
			t.Errorf("Flush wrote %q, want %q", got, want)
		}
	})
}

// TestDisabledLevelCountsNothing: lines below the handler's level are
// neither written nor counted.
func TestDisabledLevelCountsNothing(t *testing.T) {
	l, buf := newBuffered(slog.LevelInfo)
	l.Debug("k", "debug")
	l.Flush()
	if buf.Len() != 0 || len(l.kinds) != 0 {
		t.Errorf("debug with debug off wrote %q and tracked %d kinds", buf.String(), len(l.kinds))
	}
}

// TestKindsBounded: keys built from data share one entry past maxKinds.
func TestKindsBounded(t *testing.T) {
	l, buf := newBuffered(slog.LevelInfo)
	for i := range 1000 {
		l.Warn(fmt.Sprint("key", i), "line")
	}
	if len(l.kinds) > maxKinds+1 {
		t.Errorf("%d kinds tracked, want at most %d", len(l.kinds), maxKinds+1)
	}
	if n := len(lines(buf)); n != maxKinds+1 {
		t.Errorf("%d lines, want %d", n, maxKinds+1)
	}
}

// TestSuppressedAllocatesNothing locks in the cheap path a flood takes.
func TestSuppressedAllocatesNothing(t *testing.T) {
	l, _ := newBuffered(slog.LevelInfo)
	err := errors.New("boom")
	var addr fmt.Stringer = &strings.Builder{}
	l.Warn("k", "first", "err", err, "from", addr)
	allocs := testing.AllocsPerRun(1000, func() { l.Warn("k", "again", "err", err, "from", addr) })
	if allocs != 0 {
		t.Errorf("a suppressed line allocates %v times, want 0", allocs)
	}
}

// TestConcurrent: many goroutines logging one kind write one line and
// count the rest.
func TestConcurrent(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		l, buf := newBuffered(slog.LevelInfo)
		var wg sync.WaitGroup
		for range 8 {
			wg.Go(func() {
				for range 100 {
					l.Warn("k", "line")
				}
			})
		}
		wg.Wait()
		l.Flush()
		if got := lines(buf); len(got) != 2 || got[1] != "level=WARN msg=line suppressed=799" {
			t.Errorf("lines = %q, want one and a flush of 799", got)
		}
	})
}
