package link

import (
	"context"
	"fmt"
	"strings"
	"time"
)

// Step is one change in a Schedule: from At on, the link has Spec, or is
// cut in both directions when Outage is set.
type Step struct {
	At     time.Duration
	Spec   Spec
	Outage bool
}

// ParseSchedule reads "OFFSET:SPEC;OFFSET:SPEC;…", such as
// "0s:loss=1%;10s:loss=30%;20s:outage;25s:loss=1%". Each SPEC is link
// grammar applied on top of base (so flags given beside a schedule hold at
// every step), or the word outage. Offsets count from the start and must
// increase.
func ParseSchedule(s string, base Spec) ([]Step, error) {
	var steps []Step
	for _, part := range strings.Split(s, ";") {
		part = strings.TrimSpace(part)
		at, rest, ok := strings.Cut(part, ":")
		d, err := time.ParseDuration(strings.TrimSpace(at))
		if !ok || err != nil || d < 0 {
			return nil, fmt.Errorf("link: schedule step %q: want OFFSET:SPEC such as 10s:loss=30%% or 20s:outage", part)
		}
		if len(steps) > 0 && d <= steps[len(steps)-1].At {
			return nil, fmt.Errorf("link: schedule step %q: offsets must increase (after %v)", part, steps[len(steps)-1].At)
		}
		step := Step{At: d, Spec: base}
		if strings.TrimSpace(rest) == "outage" {
			step.Outage = true
		} else if err := step.Spec.Apply(rest); err != nil {
			return nil, fmt.Errorf("link: schedule step %q: %w", part, nested{err})
		}
		step.Spec.Seed = base.Seed
		steps = append(steps, step)
	}
	return steps, nil
}

// String writes st as ParseSchedule reads it, such as "10s:loss=30%,seed=1"
// or "20s:outage".
func (st Step) String() string {
	if st.Outage {
		return st.At.String() + ":outage"
	}
	return st.At.String() + ":" + st.Spec.String()
}

// RunSchedule applies each step at its offset from now, until the last
// step or ctx's end. Each step is one atomic change of the whole link.
// applied, when not nil, is called with each step once it has taken
// effect, from RunSchedule's goroutine.
func (l *Link) RunSchedule(ctx context.Context, steps []Step, applied func(Step)) {
	start := time.Now()
	timer := time.NewTimer(0)
	defer timer.Stop()
	for _, st := range steps {
		timer.Reset(time.Until(start.Add(st.At)))
		select {
		case <-ctx.Done():
			return
		case <-timer.C:
		}
		if st.Outage {
			l.SetOutage(true)
		} else {
			l.Set(st.Spec)
		}
		if applied != nil {
			applied(st)
		}
	}
}
