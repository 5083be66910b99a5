package cliflag

import (
	"math"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"
)

// FuzzParseBytes: a count ParseBytes accepts is not negative and prints
// (FormatBytes) as text that parses back to it; what it refuses it refuses
// naming the input.
func FuzzParseBytes(f *testing.F) {
	for _, s := range []string{"1000", "4MB", "4mb", "512KiB", "2 GiB", "7B", "", "MB", "-1", "1.5MB",
		"99999999999GB", "9223372036854775807", "9223372036854775807B", "8589934591GiB", " 1 kb ", "+5", "0x10"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		n, err := ParseBytes(s)
		if err != nil {
			if !strings.Contains(err.Error(), strconv.Quote(s)) {
				t.Fatalf("ParseBytes(%q) = %v, which does not name the input", s, err)
			}
			return
		}
		if n < 0 {
			t.Fatalf("ParseBytes(%q) = %d", s, n)
		}
		if again, err := ParseBytes(FormatBytes(n)); err != nil || again != n {
			t.Fatalf("ParseBytes(%q) = %d, printed %q, which parses to %d, %v", s, n, FormatBytes(n), again, err)
		}
	})
}

// FuzzCheckAddr: what CheckAddr accepts splits into a host and a port
// from 0 to 65535, and joins back into an address it accepts; an address
// flag keeps exactly what it accepted, and "off" only when allowed.
func FuzzCheckAddr(f *testing.F) {
	for _, s := range []string{"127.0.0.1:6000", "[::1]:6000", "localhost:0", ":6000", "off", "127.0.0.1",
		"127.0.0.1:65536", "127.0.0.1:-1", "[::1]", "::1:6000", "[fe80::1%eth0]:1", "a:b:c", "host:+1", "host: 1"} {
		f.Add(s, false)
		f.Add(s, true)
	}
	f.Fuzz(func(t *testing.T, s string, allowOff bool) {
		var got string
		err := addrValue{&got, allowOff}.Set(s)
		if check := CheckAddr(s); err == nil && check != nil && !(allowOff && s == "off") || err != nil && check == nil {
			t.Fatalf("Set(%q) with allowOff %v = %v, but CheckAddr = %v", s, allowOff, err, check)
		}
		if err != nil {
			return
		}
		if got != s {
			t.Fatalf("Set(%q) kept %q", s, got)
		}
		if s == "off" && allowOff {
			return
		}
		host, port, err := net.SplitHostPort(s)
		if p, perr := strconv.ParseUint(port, 10, 16); err != nil || perr != nil || p > math.MaxUint16 {
			t.Fatalf("CheckAddr(%q) accepted a port %q, %v", s, port, err)
		}
		if joined := net.JoinHostPort(host, port); CheckAddr(joined) != nil {
			t.Fatalf("CheckAddr(%q) accepted, but not %q rejoined from its parts", s, joined)
		}
	})
}

// FuzzValues sets each number, duration and boolean flag from the same
// text: whatever one accepts is within its bounds, and its String sets
// the same value again; whatever it refuses leaves the value alone.
func FuzzValues(f *testing.F) {
	for _, s := range []string{"0", "1", "-1", "10", "1s", "500ms", "-2s", "true", "false", "T", "1e3", "0x10",
		"9223372036854775807", "-9223372036854775808", "18446744073709551615", "18446744073709551616", "2562047h47m16.854775807s", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		for _, least := range []int{0, 1, math.MinInt} {
			n := 42
			v := intValue{&n, least, 1000}
			if err := v.Set(s); err != nil {
				if n != 42 {
					t.Fatalf("intValue.Set(%q) = %v and set %d", s, err, n)
				}
			} else if n < least || n > 1000 {
				t.Fatalf("intValue{%d, 1000}.Set(%q) = %d", least, s, n)
			}
			roundTrip(t, s, v, func() any { return n })
		}
		var u uint64 = 42
		roundTrip(t, s, uint64Value{&u}, func() any { return u })
		for _, least := range []time.Duration{0, 1, time.Second} {
			d := time.Duration(-42)
			v := durationValue{&d, least}
			if err := v.Set(s); err == nil && d < least {
				t.Fatalf("durationValue{%v}.Set(%q) = %v", least, s, d)
			}
			roundTrip(t, s, v, func() any { return d })
		}
		var b bool
		roundTrip(t, s, boolValue{&b}, func() any { return b })
	})
}

// roundTrip sets v from s and, if that worked, from v's String, and fails
// t unless both set the same value (read by get).
func roundTrip(t *testing.T, s string, v interface {
	Set(string) error
	String() string
}, get func() any) {
	t.Helper()
	if err := v.Set(s); err != nil {
		return
	}
	first, text := get(), v.String()
	if err := v.Set(text); err != nil || get() != first {
		t.Fatalf("%T.Set(%q) = %v; its String %q sets %v, %v", v, s, first, text, get(), err)
	}
}
