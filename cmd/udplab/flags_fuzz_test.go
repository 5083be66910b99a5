package main

import (
	"slices"
	"strings"
	"testing"

	"github.com/udplab/udplab/compare"
	"github.com/udplab/udplab/internal/cliflag"
	"github.com/udplab/udplab/link"
	"github.com/udplab/udplab/modes"
)

// FuzzTargetValue: what --target accepts names each mode once, by its
// name, at an address CheckAddr accepts, and written back as MODE=ADDR,...
// it sets the same targets.
func FuzzTargetValue(f *testing.F) {
	for _, s := range []string{"raw=127.0.0.1:6000,kcp=127.0.0.1:6001", "raw=[::1]:1", "raw=a:1,raw=b:2",
		"nope=127.0.0.1:1", "raw=", "raw", "=", "raw=127.0.0.1:1=2", "raw=127.0.0.1:1,", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		var ts []compare.Target
		if err := (targetValue{&ts}).Set(s); err != nil {
			return
		}
		items := make([]string, len(ts))
		var seen []string
		for i, tg := range ts {
			if !slices.Contains(modes.Names(), tg.Mode) || slices.Contains(seen, tg.Mode) || cliflag.CheckAddr(tg.Addr) != nil {
				t.Fatalf("--target %q = %+v", s, ts)
			}
			seen = append(seen, tg.Mode)
			items[i] = tg.Mode + "=" + tg.Addr
		}
		var again []compare.Target
		if err := (targetValue{&again}).Set(strings.Join(items, ",")); err != nil || !slices.Equal(again, ts) {
			t.Fatalf("--target %q = %+v; written back as %q it sets %+v, %v", s, ts, strings.Join(items, ","), again, err)
		}
	})
}

// FuzzSpecValue: what --up or --down accepts is link grammar for that
// direction alone: it leaves the other direction perfect.
func FuzzSpecValue(f *testing.F) {
	for _, s := range []string{"loss=1%", "delay=20ms,rate=1mbit", "lte", "seed=1", "up:loss=1%", "", " , ", "loss=1%,,delay=1ms"} {
		f.Add(s, true)
		f.Add(s, false)
	}
	f.Fuzz(func(t *testing.T, s string, up bool) {
		dir := map[bool]string{true: "up", false: "down"}[up]
		var got string
		if err := (specValue{dir, &got}).Set(s); err != nil {
			return
		}
		var spec link.Spec
		if err := spec.Apply(prefixed(dir+":", got)); err != nil {
			t.Fatalf("--%s %q accepted, but applies as %v", dir, s, err)
		}
		if other := map[bool]link.Params{true: spec.Down, false: spec.Up}[up]; other != (link.Params{}) {
			t.Fatalf("--%s %q changes the other direction: %+v", dir, s, other)
		}
	})
}
