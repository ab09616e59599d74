package normalize

import (
	"math"
	"math/big"
	"testing"
)

// decimalInt agrees with exact big-number arithmetic on the value of the
// text: whole numbers in range convert, fractions in range are numBad,
// anything past the range is numOutRange.
func TestDecimalInt(t *testing.T) {
	cases := []string{
		"0", "-0", "1", "-1", "007", "1.0", "1.5", "-1.5", "1e3", "1E+3", "1e-3", "12e-1", "120e-1",
		"9223372036854775807", "9223372036854775808", "-9223372036854775808", "-9223372036854775809",
		"-9223372036854775808.5", "-9223372036854775807.5", "9223372036854775807.0", "9223372036854775807.01",
		"9007199254740993.0", "9007199254740993", "92233720368547758070e-1", "0.0000000000000000000000001",
		"1e400", "-1e400", "1e-400", "0e999999999999999", "18446744073709551616", "184467440737095516150",
		"0.92233720368547758075e19", "", "-", ".", "1.", ".5", "1e", "1e+", "NaN", "Infinity", "1x", "--1",
		"2147483647", "2147483648", "-2147483648", "-2147483649",
	}
	for _, c := range cases {
		for _, r := range [][2]int64{{math.MinInt64, math.MaxInt64}, {math.MinInt32, math.MaxInt32}} {
			got, res := decimalInt([]byte(c), r[0], r[1])
			want, wres := exactInt(c, r[0], r[1])
			if res != wres || res == numOK && got != want {
				t.Errorf("decimalInt(%q, %d..%d) = %d, %d; want %d, %d", c, r[0], r[1], got, res, want, wres)
			}
		}
	}
}

// exactInt is decimalInt by big.Rat.
func exactInt(s string, lo, hi int64) (int64, numResult) {
	if s == "" || s == "-" || s == "." || s == "1e" || s == "1e+" || s == "1x" || s == "--1" {
		return 0, numBad
	}
	r, ok := new(big.Rat).SetString(s)
	if !ok {
		return 0, numBad
	}
	if r.Cmp(new(big.Rat).SetInt64(lo)) < 0 || r.Cmp(new(big.Rat).SetInt64(hi)) > 0 {
		return 0, numOutRange
	}
	if !r.IsInt() {
		return 0, numBad
	}
	return r.Num().Int64(), numOK
}

// Numbers reach long columns exactly, on both paths.
func TestNumbersExact(t *testing.T) {
	for _, c := range []struct {
		text string
		want int64
	}{
		{"9007199254740993.0", 9007199254740993},
		{"-9223372036854775808", math.MinInt64},
		{"9223372036854775807", math.MaxInt64},
		{"92233720368547758.07e2", math.MaxInt64},
		{"1e3", 1000},
		{`"-9223372036854775808"`, math.MinInt64},
	} {
		for _, opts := range [][]Option{nil, {withoutFastPath()}} {
			n, col := newChecked(t, opts...)
			addString(n, col, `{"time":"2021-08-02T13:11:40Z","tenantId":"t1","category":"AdvancedHunting-DeviceProcessEvents","properties":{"ProcessId":`+c.text+`}}`)
			n.Flush(col.emit)
			if len(col.dead) != 0 || len(col.batches) != 1 {
				t.Fatalf("%s: dead %+v, %d batches", c.text, col.dead, len(col.batches))
			}
			if got := Int64s(col.batches[0].Record, "ProcessId").Value(0); got != c.want {
				t.Errorf("%s became %d, want %d", c.text, got, c.want)
			}
		}
	}
}
