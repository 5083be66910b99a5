package link

import (
	"strconv"
	"strings"
)

// The grammar reads and writes numbers in decimal, shifting the point
// rather than multiplying, so that what a person writes comes back as
// written: "0.0001%" is the double nearest to 0.000001, exactly as if 1e-06
// had been typed, and it prints as 0.0001% again, where f·100 would give
// 9.999999999999999e-05.

// maxExponent bounds a written exponent: beyond it no double is left to
// tell apart, and shifting it could overflow.
const maxExponent = 1000

// parseDecimal reads num, a non-negative decimal such as 12.5 or 1e-05,
// times 10^shift, rounded once to the nearest double. It accepts no sign,
// hexadecimal, infinity or NaN.
func parseDecimal(num string, shift int) (float64, bool) {
	mant, exp := num, 0
	if i := strings.IndexAny(num, "eE"); i >= 0 {
		e, err := strconv.Atoi(num[i+1:])
		if err != nil || e < -maxExponent || e > maxExponent {
			return 0, false
		}
		mant, exp = num[:i], e
	}
	digits := strings.Replace(mant, ".", "", 1)
	if digits == "" || strings.Trim(digits, "0123456789") != "" {
		return 0, false
	}
	f, err := strconv.ParseFloat(mant+"e"+strconv.Itoa(exp+shift), 64)
	return f, err == nil
}

// formatDecimal writes f times 10^shift as the shortest decimal that
// parseDecimal reads back, with shift, to f itself.
func formatDecimal(f float64, shift int) string {
	if f == 0 {
		return "0"
	}
	s := strconv.FormatFloat(f, 'e', -1, 64) // d.ddde±XX: the shortest digits that give f back
	mant, e, _ := strings.Cut(s, "e")
	exp, _ := strconv.Atoi(e)
	digits := strings.Replace(mant, ".", "", 1)
	point := exp + 1 + shift
	if point < -20 || point > 40 {
		// Too far from the point to write out: keep the exponent.
		return mant + "e" + strconv.Itoa(point-1)
	}
	return placePoint(digits, point)
}

// placePoint writes digits with the decimal point after the first point
// of them (before them when point ≤ 0, padded with zeros when point is past
// them), with no zero after the point at the end.
func placePoint(digits string, point int) string {
	var s string
	switch {
	case point <= 0:
		s = "0." + strings.Repeat("0", -point) + digits
	case point >= len(digits):
		return digits + strings.Repeat("0", point-len(digits))
	default:
		s = digits[:point] + "." + digits[point:]
	}
	return strings.TrimRight(strings.TrimRight(s, "0"), ".")
}
