package english

import "testing"

func TestCount(t *testing.T) {
	for _, c := range []struct {
		got, want string
	}{
		{Count(1, "incident"), "1 incident"},
		{Count(0, "incident"), "0 incidents"},
		{Count(2, "incident"), "2 incidents"},
		{Count(int64(1), "dead letter"), "1 dead letter"},
		{Count(int64(3), "dead letter"), "3 dead letters"},
		{Count(1, "match"), "1 match"},
		{Count(2, "match"), "2 matches"},
		{Count(2, "query"), "2 queries"},
		{Count(2, "day"), "2 days"},
		{Count(2, "box"), "2 boxes"},
		{Count(2, "incident version"), "2 incident versions"},
		{Count(1, "child", "children"), "1 child"},
		{Count(5, "child", "children"), "5 children"},
		{Count(-1, "row"), "-1 rows"},
		{Count(uint64(1), "Parquet row"), "1 Parquet row"},
	} {
		if c.got != c.want {
			t.Errorf("got %q, want %q", c.got, c.want)
		}
	}
}
