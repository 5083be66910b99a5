package drain

import (
	"context"
	"errors"
	"sync"
	"testing"

	"github.com/udplab/udplab/internal/leakcheck"
)

func TestMain(m *testing.M) { leakcheck.VerifyTestMain(m) }

func TestWait(t *testing.T) {
	closed := make(chan struct{})
	close(closed)
	if err := Wait(context.Background(), closed, nil); err != nil {
		t.Errorf("Wait on a closed done = %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := Wait(ctx, make(chan struct{}), func() int64 { return 0 }); err != nil {
		t.Errorf("Wait with nothing pending = %v", err)
	}
	err := Wait(ctx, make(chan struct{}), func() int64 { return 3 })
	var cut *CutOff
	if !errors.As(err, &cut) || cut.Requests != 3 || !errors.Is(err, context.Canceled) {
		t.Errorf("Wait with 3 pending = %v, want a CutOff of 3 matching context.Canceled", err)
	}
}

func TestDone(t *testing.T) {
	var wg sync.WaitGroup
	release := make(chan struct{})
	wg.Go(func() { <-release })
	done := Done(&wg)
	select {
	case <-done:
		t.Fatal("done before the goroutine ended")
	default:
	}
	close(release)
	<-done
}
