package link

import (
	"strings"
	"testing"
)

// FuzzParseSchedule holds ParseSchedule, which reads --schedule, to its
// own output: a schedule it accepts has increasing offsets from zero, keeps
// the base's seed at every step, and prints (Step.String, joined by ";")
// as a schedule that parses back to the same steps. What it refuses it
// refuses naming the step, under one "link:" prefix.
func FuzzParseSchedule(f *testing.F) {
	for _, s := range []string{
		"0s:loss=1%;10s:loss=30%;20s:outage;25s:loss=1%",
		"1s:outage;2s:delay=1ms",
		"0s:lte,loss=5%;1m:up:rate=1kbit,down:burst=1%/2%/3%/4%",
		"10s:loss=1%;5s:loss=2%",
		"1s:loss=200%",
		"-1s:outage",
		"1s:seed=5",
		"1s:",
		";",
		"0s:outage ; 1h0m0.000000001s : delay=1ms",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		base := Spec{Seed: 11}
		steps, err := ParseSchedule(s, base)
		if err != nil {
			if msg := err.Error(); !strings.HasPrefix(msg, "link: schedule step ") || strings.Count(msg, "link:") != 1 {
				t.Fatalf("ParseSchedule(%q) = %v, want an error naming the step under one link: prefix", s, err)
			}
			return
		}
		text := make([]string, len(steps))
		for i, st := range steps {
			if st.At < 0 || i > 0 && st.At <= steps[i-1].At || st.Spec.Seed != base.Seed {
				t.Fatalf("ParseSchedule(%q) step %d = %+v", s, i, st)
			}
			text[i] = st.String()
		}
		again, err := ParseSchedule(strings.Join(text, ";"), base)
		if err != nil || len(again) != len(steps) {
			t.Fatalf("ParseSchedule(%q) prints as %q, which parses to %v, %v", s, strings.Join(text, ";"), again, err)
		}
		for i := range steps {
			if again[i] != steps[i] {
				t.Fatalf("ParseSchedule(%q) step %d = %+v; printed as %q it parses to %+v", s, i, steps[i], text[i], again[i])
			}
		}
	})
}
