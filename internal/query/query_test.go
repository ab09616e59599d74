package query

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/apache/arrow/go/v17/arrow/memory"

	"github.com/stitch-xdr/stitch/connectors/parquet"
	"github.com/stitch-xdr/stitch/connectors/parquet/parquettest"
)

type input struct {
	table, tenant string
	extra         []string
	rows          []parquettest.Row
}

var base = time.Date(2024, 5, 1, 22, 0, 0, 0, time.UTC)

// fixture writes the inputs through the real writer and returns the dir.
func fixture(t *testing.T) (string, []input) {
	t.Helper()
	mem := memory.NewCheckedAllocator(memory.NewGoAllocator())
	defer mem.AssertSize(t, 0)
	var ins []input
	id := int64(0)
	for _, tenant := range []string{"t1", "t2"} {
		for _, table := range []string{"DeviceProcessEvents", "DeviceNetworkEvents"} {
			for batch := 0; batch < 2; batch++ {
				in := input{table: table, tenant: tenant}
				if batch == 1 && table == "DeviceProcessEvents" {
					in.extra = []string{"NewColumn"} // a newer schema version
				}
				for i := 0; i < 40; i++ {
					// 40 rows 5 minutes apart: across hours and midnight.
					in.rows = append(in.rows, parquettest.Row{Time: base.Add(time.Duration(batch*40+i) * 5 * time.Minute), ID: id})
					id++
				}
				ins = append(ins, in)
			}
		}
	}
	dir := t.TempDir()
	w, err := parquet.Open(dir, parquet.Allocator(mem))
	if err != nil {
		t.Fatal(err)
	}
	for i, in := range ins {
		b := parquettest.Batch(mem, parquettest.Schema(in.table, in.extra...), in.tenant, in.rows)
		err := w.Write(parquet.Source{Topic: "in", Offset: int64(i)}, b)
		b.Release()
		if err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return dir, ins
}

// expected computes, in Go from the inputs, the sorted "tenant|ReportId"
// keys a filter should return.
func expected(ins []input, table string, keep func(in input, r parquettest.Row) bool) []string {
	var out []string
	for _, in := range ins {
		if in.table != table {
			continue
		}
		for _, r := range in.rows {
			if keep(in, r) {
				out = append(out, fmt.Sprintf("%s|%d", in.tenant, r.ID))
			}
		}
	}
	sort.Strings(out)
	return out
}

func keys(t *testing.T, res *Result) []string {
	t.Helper()
	var out []string
	for _, r := range res.Rows {
		out = append(out, fmt.Sprintf("%v|%v", r[0], r[1]))
	}
	sort.Strings(out)
	return out
}

func TestQueryAnswersMatchInputs(t *testing.T) {
	dir, ins := fixture(t)
	ctx := context.Background()
	since := base.Add(3 * time.Hour)
	all := func(input, parquettest.Row) bool { return true }
	cases := []struct {
		name  string
		sql   string
		opts  []Option
		table string
		keep  func(input, parquettest.Row) bool
	}{
		{"all rows of a table", "SELECT tenant, ReportId FROM DeviceProcessEvents", nil, "DeviceProcessEvents", all},
		{"tenant pruning", "SELECT tenant, ReportId FROM DeviceNetworkEvents", []Option{Tenant("t2")}, "DeviceNetworkEvents",
			func(in input, _ parquettest.Row) bool { return in.tenant == "t2" }},
		{"since", "SELECT tenant, ReportId FROM DeviceProcessEvents", []Option{Since(since)}, "DeviceProcessEvents",
			func(_ input, r parquettest.Row) bool { return !r.Time.Before(since) }},
		{"filter on a string column", "SELECT tenant, ReportId FROM DeviceProcessEvents WHERE FileName LIKE 'FileName-1%'", nil, "DeviceProcessEvents",
			func(_ input, r parquettest.Row) bool {
				return strings.HasPrefix(fmt.Sprintf("FileName-%d", r.ID), "FileName-1")
			}},
		{"filter on a dictionary column", "SELECT tenant, ReportId FROM DeviceProcessEvents WHERE ActionType = 'ActionType2'", nil, "DeviceProcessEvents",
			func(_ input, r parquettest.Row) bool { return r.ID%3 == 2 }},
		{"new column is null in old files", "SELECT tenant, ReportId FROM DeviceProcessEvents WHERE NewColumn IS NOT NULL", nil, "DeviceProcessEvents",
			func(in input, _ parquettest.Row) bool { return len(in.extra) > 0 }},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			res, err := Run(ctx, dir, c.sql, c.opts...)
			if err != nil {
				t.Fatal(err)
			}
			got, want := keys(t, res), expected(ins, c.table, c.keep)
			if strings.Join(got, ",") != strings.Join(want, ",") {
				t.Errorf("got %d rows, want %d\n got %v\nwant %v", len(got), len(want), got, want)
			}
		})
	}
}

func TestQueryTypesAndLimit(t *testing.T) {
	dir, _ := fixture(t)
	res, err := Run(context.Background(), dir,
		"SELECT Timestamp, ReportId, ProcessId, IsProcessRemoteSession, ActionType, FileName FROM DeviceProcessEvents ORDER BY ReportId", Limit(7))
	if err != nil {
		t.Fatal(err)
	}
	if !res.Truncated || len(res.Rows) != 7 {
		t.Errorf("limit 7: %d rows, truncated=%v", len(res.Rows), res.Truncated)
	}
	want := []string{"TIMESTAMPTZ", "BIGINT", "BIGINT", "BOOLEAN", "VARCHAR", "VARCHAR"}
	if strings.Join(res.Types, ",") != strings.Join(want, ",") {
		t.Errorf("types %v, want %v", res.Types, want)
	}
	r := res.Rows[0]
	if ts, ok := r[0].(time.Time); !ok || !ts.Equal(base) {
		t.Errorf("first Timestamp %v (%T), want %v", r[0], r[0], base)
	}
	if r[1] != int64(0) || r[3] != true || r[4] != "ActionType0" || r[5] != "FileName-0" {
		t.Errorf("first row %v", r)
	}
}

func TestQueryErrors(t *testing.T) {
	dir, _ := fixture(t)
	if _, err := Run(context.Background(), dir, "SELECT * FROM NoSuchTable"); err == nil {
		t.Error("query of a table without files succeeded")
	}
	if _, err := Run(context.Background(), dir, "SELEC 1"); err == nil {
		t.Error("syntax error accepted")
	}
}

func TestKQLQueryMatchesInputs(t *testing.T) {
	dir, ins := fixture(t)
	res, err := Run(context.Background(), dir,
		"DeviceProcessEvents\n| where ActionType =~ 'actiontype1' and FileName startswith 'filename-'\n| summarize n = count() by tenant\n| sort by tenant asc",
		In(KQL))
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]int64{}
	for _, k := range expected(ins, "DeviceProcessEvents", func(_ input, r parquettest.Row) bool { return r.ID%3 == 1 }) {
		want[strings.Split(k, "|")[0]]++
	}
	got := map[string]int64{}
	for _, r := range res.Rows {
		got[r[0].(string)] = r[1].(int64)
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("got %v, want %v (SQL %s)", got, want, res.SQL)
	}
}
