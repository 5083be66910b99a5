package budget

import (
	"sync"
	"testing"

	"github.com/udplab/udplab/internal/leakcheck"
)

func TestMain(m *testing.M) { leakcheck.VerifyTestMain(m) }

func TestTakeGive(t *testing.T) {
	b := New(10)
	if !b.Take(6) || b.Take(5) || !b.Take(4) || b.Take(1) {
		t.Fatalf("takes of 6, 5, 4, 1 from 10: want yes, no, yes, no; left %d", b.Left())
	}
	b.Give(6)
	if b.Left() != 6 || !b.Take(6) {
		t.Errorf("after giving 6 back: left %d, want 6 to take", b.Left())
	}
	var unlimited *Bytes
	if !unlimited.Take(1 << 40) {
		t.Error("a nil budget refused a Take")
	}
	unlimited.Give(1)
}

// TestConcurrentTakes: many takers never take more than the budget.
func TestConcurrentTakes(t *testing.T) {
	b := New(1000)
	var wg sync.WaitGroup
	var mu sync.Mutex
	taken := 0
	for range 50 {
		wg.Go(func() {
			for range 100 {
				if b.Take(7) {
					mu.Lock()
					taken += 7
					mu.Unlock()
				}
			}
		})
	}
	wg.Wait()
	if taken > 1000 || int64(1000-taken) != b.Left() {
		t.Errorf("taken %d, left %d, from 1000", taken, b.Left())
	}
}
