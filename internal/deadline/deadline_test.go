package deadline

import (
	"context"
	"errors"
	"os"
	"testing"
	"time"
)

func TestWatchSetsDeadlineAndCancels(t *testing.T) {
	var got []time.Time
	set := func(t time.Time) error { got = append(got, t); return nil }

	stop := Watch(context.Background(), set)
	stop()
	if len(got) != 1 || !got[0].IsZero() {
		t.Errorf("Background: deadlines set = %v, want one zero", got)
	}

	got = nil
	dl := time.Now().Add(time.Hour)
	ctx, cancel := context.WithDeadline(context.Background(), dl)
	stop = Watch(ctx, set)
	cancel()
	stop() // waits for the callback, so got is complete
	if len(got) != 2 || !got[0].Equal(dl) || !got[1].Equal(past) {
		t.Errorf("cancelled: deadlines set = %v, want %v then the past", got, dl)
	}

	got = nil
	ctx, cancel = context.WithCancel(context.Background())
	defer cancel()
	stop = Watch(ctx, set)
	stop()
	if len(got) != 1 || time.Until(got[0]) < 50*365*24*time.Hour {
		t.Errorf("cancellable without deadline: deadlines set = %v, want one far in the future", got)
	}
}

func TestErr(t *testing.T) {
	sockErr := errors.New("socket said no")
	if err := Err(context.Background(), sockErr); err != sockErr {
		t.Errorf("Err with live ctx = %v, want the socket error unchanged", err)
	}
	ctx, cancel := context.WithDeadline(context.Background(), time.Unix(1, 0))
	defer cancel()
	if err := Err(ctx, sockErr); !errors.Is(err, os.ErrDeadlineExceeded) || !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Err past deadline = %v, want both deadline errors", err)
	}
	// The socket's timer may fire just before the context's.
	early, cancel3 := context.WithDeadline(context.Background(), time.Now())
	defer cancel3()
	if err := Err(context.WithoutCancel(early), os.ErrDeadlineExceeded); errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Err on a ctx with no deadline = %v, want the socket error alone", err)
	}
	if err := Err(withDeadlineNotYetDone{early}, os.ErrDeadlineExceeded); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Err on a socket timeout at ctx's deadline = %v, want context.DeadlineExceeded too", err)
	}
	cause := errors.New("bored")
	ctx2, cancel2 := context.WithCancelCause(context.Background())
	cancel2(cause)
	if err := Err(ctx2, sockErr); !errors.Is(err, cause) || errors.Is(err, os.ErrDeadlineExceeded) {
		t.Errorf("Err after cancel = %v, want the cause only", err)
	}
}

// withDeadlineNotYetDone reports a passed deadline but not yet Err, as a
// context does in the instant before its timer fires.
type withDeadlineNotYetDone struct{ context.Context }

func (withDeadlineNotYetDone) Err() error { return nil }
