package link

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"testing/synctest"
	"time"
)

func TestParseSchedule(t *testing.T) {
	base, _ := Parse("delay=10ms,seed=5")
	steps, err := ParseSchedule("0s:loss=1%;10s:loss=30%;20s:outage;25s:up:loss=1%", base)
	if err != nil {
		t.Fatal(err)
	}
	if len(steps) != 4 || steps[1].At != 10*time.Second || steps[1].Spec.Up.Loss != 0.3 ||
		steps[1].Spec.Up.Delay != 10*time.Millisecond || !steps[2].Outage || steps[3].Spec.Down.Loss != 0 || steps[3].Spec.Seed != 5 {
		t.Errorf("steps = %+v", steps)
	}
	for in, want := range map[string]string{
		"10s:loss=1%;5s:loss=2%": "offsets must increase",
		"loss=1%":                "want OFFSET:SPEC",
		"1s:loss=200%":           `loss="200%"`,
		"-1s:outage":             "want OFFSET:SPEC",
	} {
		if _, err := ParseSchedule(in, base); err == nil || !strings.Contains(err.Error(), want) || strings.Count(err.Error(), "link:") != 1 {
			t.Errorf("ParseSchedule(%q) = %v, want %q after one link: prefix", in, err, want)
		}
	}
}

// TestScheduleChangesTheLink runs a schedule in virtual time: clean, then
// an outage, then clean again.
func TestScheduleChangesTheLink(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		p := newPair(t, "", nil)
		steps, err := ParseSchedule("1s:outage;2s:delay=1ms", Spec{Seed: 1})
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		start := time.Now()
		var applied []string
		done := make(chan struct{})
		go func() {
			defer close(done)
			p.link.RunSchedule(ctx, steps, func(st Step) {
				applied = append(applied, time.Since(start).String()+" "+st.String())
			})
		}()
		p.send(t, 0, 8) // before the outage
		time.Sleep(1500 * time.Millisecond)
		p.send(t, 1, 8) // during it
		time.Sleep(time.Second)
		p.send(t, 2, 8) // after
		settle()
		st := p.link.Stats(Up)
		if st.Delivered != 2 || st.OutageDrops != 1 {
			t.Errorf("stats = %v, want 2 delivered and 1 outage drop", st)
		}
		<-done
		if got, want := strings.Join(applied, "; "), "1s 1s:outage; 2s 2s:delay=1ms,seed=1"; got != want {
			t.Errorf("steps applied: %q, want %q", got, want)
		}
	})
}

// TestSetWhileTrafficFlows swaps the spec in one step while packets are
// in flight, as the API's spec change does: those in flight keep their
// fates (delivered after their delay), those written after the cut are
// all lost, and after the restore all delivered.
func TestSetWhileTrafficFlows(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		p := newPair(t, "delay=100ms", nil)
		spec := func(s string) Spec {
			t.Helper()
			sp, err := Parse(s)
			if err != nil {
				t.Fatal(err)
			}
			return sp
		}
		p.sendN(t, 10, 8) // in flight
		time.Sleep(50 * time.Millisecond)
		if err := p.link.Set(spec("loss=100%,delay=100ms")); err != nil {
			t.Fatal(err)
		}
		for i := 10; i < 20; i++ {
			p.send(t, i, 8)
		}
		if err := p.link.Set(spec("delay=100ms")); err != nil {
			t.Fatal(err)
		}
		for i := 20; i < 30; i++ {
			p.send(t, i, 8)
		}
		time.Sleep(time.Second)
		settle()
		var got []int
		for _, pk := range p.drain() {
			got = append(got, int(pk.b[3]))
		}
		want := []int{0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 20, 21, 22, 23, 24, 25, 26, 27, 28, 29}
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Errorf("delivered %v, want %v", got, want)
		}
		if st := p.link.Stats(Up); st.Lost != 10 || st.Delivered != 20 {
			t.Errorf("stats = %v, want 10 lost, 20 delivered", st)
		}
	})
}
