package cliflag

import "testing"

func TestParseBytes(t *testing.T) {
	for _, c := range []struct {
		in   string
		want int64
	}{
		{"1000", 1000}, {"4MB", 4_000_000}, {"4mb", 4_000_000}, {"4M", 4_000_000}, {"512KiB", 512 << 10},
		{"2 GiB", 2 << 30}, {"1kB", 1000}, {"7B", 7}, {"3G", 3e9},
	} {
		if got, err := ParseBytes(c.in); err != nil || got != c.want {
			t.Errorf("ParseBytes(%q) = %d, %v; want %d", c.in, got, err, c.want)
		}
	}
	for _, bad := range []string{"", "MB", "-1", "1.5MB", "4XB", "99999999999GB"} {
		if got, err := ParseBytes(bad); err == nil {
			t.Errorf("ParseBytes(%q) = %d, want an error", bad, got)
		}
	}
	for _, n := range []int64{0, 7, 1000, 4_000_000, 1500, 3e9} {
		if got, err := ParseBytes(FormatBytes(n)); err != nil || got != n {
			t.Errorf("ParseBytes(FormatBytes(%d)) = %d, %v", n, got, err)
		}
	}
}
