package link

import (
	"strings"
	"testing"
	"time"
)

func TestParse(t *testing.T) {
	spec, err := Parse("loss=10%,delay=20ms,jitter=5ms,reorder=1%,dup=0.1%,corrupt=0.1%,rate=10mbit,queue=100,mtu=1400,seed=7")
	if err != nil {
		t.Fatal(err)
	}
	want := Params{Loss: 0.1, Delay: 20 * time.Millisecond, Jitter: 5 * time.Millisecond, Reorder: 0.01,
		Dup: 0.001, Corrupt: 0.001, Rate: 10e6, Queue: 100, MTU: 1400}
	if spec.Up != want || spec.Down != want || spec.Seed != 7 {
		t.Errorf("Parse = %+v, want both directions %+v and seed 7", spec, want)
	}

	spec, err = Parse("delay=10ms,up:loss=5%,down:rate=1mbit,burst=1%/30%")
	if err != nil {
		t.Fatal(err)
	}
	if spec.Up.Loss != 0.05 || spec.Down.Loss != 0 || spec.Down.Rate != 1e6 || spec.Up.Rate != 0 ||
		spec.Up.Burst != (GE{P: 0.01, R: 0.3, LossBad: 1}) || spec.Down.Delay != 10*time.Millisecond || spec.Seed != DefaultSeed {
		t.Errorf("per-direction Parse = %+v", spec)
	}

	spec, err = Parse("delay=1s,limit=10,up:limit-bytes=4MiB,down:limit-bytes=1000")
	if err != nil || spec.Up.Limit != 10 || spec.Down.Limit != 10 || spec.Up.LimitBytes != 4<<20 || spec.Down.LimitBytes != 1000 {
		t.Errorf("limits = %+v, %v", spec, err)
	}

	spec, err = Parse("lte,loss=5%")
	if err != nil || spec.Up.Loss != 0.05 || spec.Up.Rate != 5e6 || spec.Down.Rate != 20e6 {
		t.Errorf("preset with override = %+v, %v", spec, err)
	}
}

// TestParseNetemModels: the netem models read as netem's spellings mean,
// with iproute2's defaults for what is left out.
func TestParseNetemModels(t *testing.T) {
	for _, tt := range []struct {
		in   string
		want Params
	}{
		{"burst=1%", Params{Burst: GE{P: 0.01, R: 0.99, LossBad: 1}}},
		{"burst=1%/30%", Params{Burst: GE{P: 0.01, R: 0.3, LossBad: 1}}},
		{"loss=10%/25%", Params{Loss: 0.1, LossCorr: 0.25}},
		{"loss=10%/0%", Params{Loss: 0.1}},
		{"loss=0%/25%", Params{}},
		{"loss=100%/25%", Params{Loss: 1}},
		{"dup=1%/50%,corrupt=2%/10%,delay=1ms,reorder=3%/99.5%", Params{Dup: 0.01, DupCorr: 0.5, Corrupt: 0.02, CorruptCorr: 0.1,
			Delay: time.Millisecond, Reorder: 0.03, ReorderCorr: 0.995}},
		{"loss-state=5%", Params{State: FourState{P13: 0.05, P31: 0.95, P23: 1}}},
		{"loss-state=5%/30%/10%/40%/1%", Params{State: FourState{P13: 0.05, P31: 0.3, P32: 0.1, P23: 0.4, P14: 0.01}}},
		{"loss-state=0%/100%/0%/100%/3%", Params{State: FourState{P31: 1, P23: 1, P14: 0.03}}},
		{"loss-state=0%", Params{}},
		{"delay=20ms,jitter=5ms/25%", Params{Delay: 20 * time.Millisecond, Jitter: 5 * time.Millisecond, JitterCorr: 0.25}},
		{"jitter=0s/25%", Params{}},
		{"rate=1mbit,overhead=-4,cellsize=48/5", Params{Rate: 1e6, Overhead: -4, CellSize: 48, CellOverhead: 5}},
		{"rate=1mbit,cellsize=53", Params{Rate: 1e6, CellSize: 53}},
		{"slot=5ms", Params{Slot: Slot{Min: 5 * time.Millisecond, Max: 5 * time.Millisecond}}},
		{"slot=0s/10ms,slot-packets=32,slot-bytes=64KiB", Params{Slot: Slot{Max: 10 * time.Millisecond, Packets: 32, Bytes: 64 << 10}}},
	} {
		spec, err := Parse(tt.in)
		if err != nil || spec.Up != tt.want || spec.Down != tt.want {
			t.Errorf("Parse(%q) = %+v, %v; want both directions %+v", tt.in, spec, err, tt.want)
		}
	}
}

func TestParseErrors(t *testing.T) {
	tests := []struct{ in, want string }{
		{"loss=120%", `loss="120%": want a percentage from 0% to 100%`},
		{"loss=10", `loss="10": want a percentage`},
		{"delay=-5ms", `delay="-5ms": want a duration of zero or more`},
		{"rate=0", `rate="0": want a positive rate with kbit, mbit or gbit`},
		{"rate=0mbit", `rate="0mbit"`},
		{"rate=10mbps", `rate="10mbps"`},
		{"bogus=1", `unknown key "bogus"; keys: loss, burst, loss-state, delay`},
		{"wan", `"wan" is neither KEY=VALUE nor a preset; presets: 3g, intercontinental, lan`},
		{"reorder=5%", "reorder=5% needs a delay"},
		{"burst=1%/2%/3%/4%/5%", `burst="1%/2%/3%/4%/5%": want P[/R`},
		{"burst=100%", "R above 0%"},
		{"loss=10%/100%", `loss="10%/100%": want a correlation from 0% to below 100%`},
		{"dup=1%/x", `dup="1%/x": want a correlation`},
		{"corrupt=1%/2%/3%", `corrupt="1%/2%/3%"`},
		{"reorder=x/2%", `reorder="x/2%": want a percentage`},
		{"loss-state=1%/2%/3%/4%/5%/6%", `loss-state="1%/2%/3%/4%/5%/6%": want P13`},
		{"loss-state=60%/50%/0%/100%/50%", "P13 + P14 at most 100%"},
		{"loss-state=5%/60%/50%", "P31 + P32 at most 100%"},
		{"loss-state=100%", "a P31 above 0%"},
		{"loss-state=5%/30%/10%/0%", "a P23 above 0%"},
		{"loss-state=5%%", `loss-state="5%%"`},
		{"jitter=5ms/100%", `jitter="5ms/100%": want a correlation`},
		{"overhead=14", "overhead and cellsize shape the rate"},
		{"rate=1mbit,overhead=1.5", `overhead="1.5": want a whole number of bytes from -65535 to 65535`},
		{"rate=1mbit,overhead=70000", `overhead="70000"`},
		{"rate=1mbit,cellsize=0", `cellsize="0": want a cell size from 1 to 65535`},
		{"rate=1mbit,cellsize=48/x", `cellsize="48/x": want a whole number of bytes`},
		{"up:rate=1mbit,cellsize=48", "down: overhead and cellsize shape the rate"},
		{"slot=0s", `slot="0s": want a slot length or a range MIN/MAX`},
		{"slot=10ms/5ms", `slot="10ms/5ms"`},
		{"slot=-1ms/5ms", `slot="-1ms/5ms"`},
		{"slot=5", `slot="5"`},
		{"slot-packets=4", "slot-packets and slot-bytes bound a slot; they need slot="},
		{"slot=1ms,slot-bytes=0", `slot-bytes="0"`},
		{"jitter=5/25%", `jitter="5/25%": want a duration`},
		{"burst=1%/0%", "R above 0%"},
		{"queue=0", `queue="0": want a whole number of at least 1`},
		{"mtu=big", `mtu="big"`},
		{"up:seed=3", "seed is for the whole link"},
		{"dist=cauchy", `dist="cauchy": want one of uniform, normal, pareto`},
		{"loss=1%,,delay=1ms", "empty item"},
		{"dist=pareto", "dist=pareto needs a jitter"},
		{"order=shuffle", `order="shuffle": want one of keep, netem`},
		{"rate=1.5bit", `rate="1.5bit"`},
		{"rate=0.0001kbit", `rate="0.0001kbit"`},
		{"loss=-1%", `loss="-1%"`},
		{"loss=NaN%", `loss="NaN%"`},
		{"limit=0", `limit="0": want a whole number of at least 1`},
		{"limit-bytes=0", `limit-bytes="0": want a positive byte count`},
		{"limit-bytes=64XB", `limit-bytes="64XB"`},
		{"limit-bytes=1.5MiB", `limit-bytes="1.5MiB"`},
		{"limit-bytes=9999999999GiB", `limit-bytes="9999999999GiB"`},
	}
	for _, tt := range tests {
		_, err := Parse(tt.in)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("Parse(%q) error = %v, want it to contain %q", tt.in, err, tt.want)
		}
	}
}

func TestPresetsParse(t *testing.T) {
	for _, name := range PresetNames() {
		p := Presets[name]
		if p.About == "" || p.Source == "" {
			t.Errorf("preset %s lacks About or Source", name)
		}
		spec, err := Parse(name)
		if err != nil {
			t.Errorf("Parse(%q) = %v", name, err)
			continue
		}
		if spec.Up.Delay == 0 {
			t.Errorf("preset %s has no delay", name)
		}
	}
	for _, want := range []string{"lan", "wifi", "lossy-wifi", "lte", "3g", "satellite", "intercontinental"} {
		if _, ok := Presets[want]; !ok {
			t.Errorf("preset %q missing", want)
		}
	}
}

func TestStringRoundTrips(t *testing.T) {
	for _, s := range []string{"", "loss=10%", "lte", "lossy-wifi,seed=9", "up:delay=1ms,down:dist=pareto,down:jitter=2ms,down:delay=3ms",
		"rate=1.5mbit,queue=7,mtu=576,dup=0.25%,corrupt=1e-05%", "delay=1s,limit=10,up:limit-bytes=3000",
		"burst=3%", "loss=10%/25%,dup=1%/2%,corrupt=3%/4%,delay=1ms,reorder=5%/6%", "up:loss-state=5%,down:loss-state=1%/2%/3%/4%/5%",
		"delay=20ms,jitter=5ms/25%,dist=normal", "jitter=1ms,dist=paretonormal", "jitter=1ms,dist=testdata/three.dist,up:dist=normal",
		"rate=1mbit,overhead=-4,cellsize=48/5", "lte,overhead=14,up:cellsize=53",
		"slot=5ms", "slot=1ms/10ms,slot-packets=4,slot-bytes=1500", "up:slot=0s/1s"} {
		spec, err := Parse(s)
		if err != nil {
			t.Fatal(err)
		}
		again, err := Parse(spec.String())
		if err != nil || again != spec {
			t.Errorf("Parse(%q).String() = %q, which parses to %+v, %v; want %+v", s, spec.String(), again, err, spec)
		}
	}
}

// TestStringAsWritten: numbers print as a person wrote them, not as the
// nearest double's long expansion, and rates in their largest whole unit.
func TestStringAsWritten(t *testing.T) {
	for in, want := range map[string]string{
		"loss=0.0001%":                 "loss=0.0001%",
		"loss=0.1%":                    "loss=0.1%",
		"loss=33.3%,dup=7%":            "loss=33.3%,dup=7%",
		"rate=10Mbit":                  "rate=10mbit",
		"rate=1.5MBIT":                 "rate=1500kbit",
		"rate=2000kbit":                "rate=2mbit",
		"rate=1.001kbit":               "rate=1.001kbit",
		"rate=1gbit":                   "rate=1gbit",
		"limit-bytes=65536":            "limit-bytes=64KiB",
		"limit-bytes=64mib":            "limit-bytes=64MiB",
		"limit-bytes=1025":             "limit-bytes=1025B",
		"limit-bytes=4MB":              "limit-bytes=4MB",
		"limit-bytes=2GIB":             "limit-bytes=2GiB",
		"limit=5,delay=1ms":            "delay=1ms,limit=5",
		"burst=1%":                     "burst=1%/99%/100%/0%",
		"loss=10%/25%":                 "loss=10%/25%",
		"loss=10%/0%":                  "loss=10%",
		"loss-state=5%":                "loss-state=5%/95%/0%/100%/0%",
		"delay=1ms,jitter=2000us/1.5%": "delay=1ms,jitter=2ms/1.5%",
		"delay=20ms,jitter=5ms,order=netem,dist=pareto": "delay=20ms,jitter=5ms,dist=pareto,order=netem",
	} {
		spec, err := Parse(in)
		if err != nil {
			t.Errorf("Parse(%q) = %v", in, err)
			continue
		}
		if got := strings.TrimSuffix(spec.String(), ",seed=1"); got != want {
			t.Errorf("Parse(%q).String() = %q, want %q", in, got, want)
		}
	}
}

// FuzzParse: whatever parses must print back to itself.
func FuzzParse(f *testing.F) {
	for _, s := range []string{"loss=10%", "lte,loss=5%", "up:rate=1kbit,down:burst=1%/2%/3%/4%", "delay=1ms,reorder=2%", "seed=18446744073709551615",
		"delay=10s,limit=1000,limit-bytes=64MiB", "up:limit-bytes=1536,down:limit=1", "limit-bytes=8GiB", "limit-bytes=+7kib",
		"burst=2%", "loss=10%/25%", "dup=1%/99.9%,corrupt=0.5%/1e-3%", "delay=1ms,reorder=5%/50%", "loss=0%/30%", "loss=100%/30%",
		"loss-state=5%", "loss-state=5%/30%/10%/40%/1%", "down:loss-state=0%/0%/0%/0%/50%", "loss-state=100%/0%/100%",
		"delay=1s,jitter=1ms/50%", "jitter=0s/10%", "delay=1ms,jitter=1ns/99.99%,dist=pareto",
		"jitter=1ms,dist=paretonormal", "up:jitter=1ms,up:dist=testdata/three.dist", "jitter=1ms,dist=testdata/missing.dist",
		"rate=1mbit,overhead=-14,cellsize=48/-5", "rate=1kbit,cellsize=65535/65535,overhead=65535", "overhead=1", "rate=1mbit,cellsize=1/0",
		"slot=1ms", "slot=0s/5ms,slot-packets=1,slot-bytes=1", "down:slot=3ms/3ms", "slot-bytes=5"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		spec, err := Parse(s)
		if err != nil {
			return
		}
		again, err := Parse(spec.String())
		if err != nil || again != spec {
			t.Errorf("Parse(%q) = %+v; its String %q parses to %+v, %v", s, spec, spec.String(), again, err)
		}
	})
}

// TestValidateModels: a Spec built in Go with a newer model's number out
// of range is refused, as the grammar refuses it.
func TestValidateModels(t *testing.T) {
	for _, p := range []Params{
		{JitterCorr: 1, Jitter: time.Millisecond},
		{LossCorr: -0.1},
		{State: FourState{P13: 1.5}},
		{State: FourState{P13: 0.6, P14: 0.6}},
		{Slot: Slot{Min: 2 * time.Millisecond, Max: time.Millisecond}},
		{Slot: Slot{Min: -time.Millisecond, Max: time.Millisecond}},
		{Slot: Slot{Max: time.Millisecond, Packets: -1}},
		{Rate: 1e6, CellSize: -1},
	} {
		spec := Spec{Up: p, Down: p}
		if err := spec.Validate(); err == nil {
			t.Errorf("Validate(%+v) = nil, want an error", p)
		}
	}
}
