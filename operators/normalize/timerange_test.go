package normalize

import "testing"

// TestTimestampsOutsideYearsOneTo9999: an instant past 9999-12-31 UTC
// ("9999-12-31T23:30:00-01:00") landed under date=10000-01-01, which
// retention could not parse and JSON output could not write. It is
// dead-lettered as a bad timestamp; the last instants of 9999 are kept.
func TestTimestampsOutsideYearsOneTo9999(t *testing.T) {
	for _, c := range []struct {
		ts   string
		dead bool
	}{
		{"9999-12-31T23:30:00-01:00", true},
		{"0001-01-01T00:30:00+01:00", true},
		{"0000-06-01T00:00:00Z", true},
		{"9999-12-31T23:59:59.999999Z", false},
		{"9999-12-31T23:30:00+01:00", false},
		{"0001-01-01T00:00:00Z", false},
	} {
		n, col := newChecked(t)
		addString(n, col, `{"time":"2021-08-02T13:11:40Z","tenantId":"t1","category":"AdvancedHunting-DeviceProcessEvents","properties":{"Timestamp":"`+c.ts+`","ProcessId":1}}`)
		n.Flush(col.emit)
		if got := len(col.dead) == 1 && col.dead[0].Reason == ReasonBadTimestamp; got != c.dead {
			t.Errorf("%s: dead letters %v, want dead %v", c.ts, col.dead, c.dead)
		}
		if !c.dead && col.rows() != 1 {
			t.Errorf("%s: %d rows", c.ts, col.rows())
		}
	}
}
