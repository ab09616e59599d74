package query

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/apache/arrow/go/v17/arrow/memory"

	"github.com/stitch-xdr/stitch/connectors/parquet"
	"github.com/stitch-xdr/stitch/connectors/parquet/parquettest"
)

// TestTenantSeesOnlyItsRowsAndColumns: --tenant reads only the tenant's
// directory, so another tenant's rows and the columns only it sends stay
// out of its views (read_parquet unions the schemas of the files it reads);
// a tenant whose id had to be hashed is found by its id or by the hashed
// form; a table the tenant has no files in is empty, not an error.
func TestTenantSeesOnlyItsRowsAndColumns(t *testing.T) {
	long := strings.Repeat("L", 10000)
	dir := t.TempDir()
	w, err := parquet.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	at := time.Date(2024, 5, 1, 10, 0, 0, 0, time.UTC)
	for i, c := range []struct {
		tenant, table string
		extra         []string
		rows          int
	}{
		{"t1", "DeviceProcessEvents", []string{"OnlyT1"}, 3},
		{"t1", "DeviceNetworkEvents", nil, 1},
		{"t2", "DeviceProcessEvents", nil, 2},
		{long, "DeviceProcessEvents", nil, 4},
		{"a/b", "DeviceProcessEvents", nil, 5},
	} {
		var rows []parquettest.Row
		for j := range c.rows {
			rows = append(rows, parquettest.Row{Time: at, ID: int64(i*100 + j)})
		}
		b := parquettest.Batch(memory.DefaultAllocator, parquettest.Schema(c.table, c.extra...), c.tenant, rows)
		if err := w.Write(parquet.Source{Topic: "in", Offset: int64(i)}, b); err != nil {
			t.Fatal(err)
		}
		b.Release()
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	count := func(tenant, table string) string {
		t.Helper()
		res, err := Run(context.Background(), dir, "SELECT count(*) FROM "+table, Tenant(tenant))
		if err != nil {
			return "error: " + err.Error()
		}
		return fmt.Sprint(res.Rows[0][0])
	}
	for _, c := range []struct{ tenant, table, want string }{
		{"t1", "DeviceProcessEvents", "3"},
		{"t2", "DeviceProcessEvents", "2"},
		{long, "DeviceProcessEvents", "4"},
		{parquet.TenantElement(long), "DeviceProcessEvents", "4"},
		{"a/b", "DeviceProcessEvents", "5"},
		{"t2", "DeviceNetworkEvents", "0"},
		{"nobody", "DeviceProcessEvents", "0"},
	} {
		if got := count(c.tenant, c.table); got != c.want {
			t.Errorf("tenant %.12q %s: count %s, want %s", c.tenant, c.table, got, c.want)
		}
	}
	columns := func(tenant, table string) string {
		t.Helper()
		res, err := Run(context.Background(), dir, "DESCRIBE "+table, Tenant(tenant))
		if err != nil {
			t.Fatalf("describe as %s: %v", tenant, err)
		}
		var names []string
		for _, r := range res.Rows {
			names = append(names, fmt.Sprint(r[0]))
		}
		return strings.Join(names, ",")
	}
	if got := columns("t1", "DeviceProcessEvents"); !strings.Contains(got, "OnlyT1") {
		t.Errorf("t1 lost its own column: %s", got)
	}
	for _, tn := range []string{"t2", "nobody"} {
		got := columns(tn, "DeviceProcessEvents")
		if strings.Contains(got, "OnlyT1") {
			t.Errorf("%s sees t1's column: %s", tn, got)
		}
		if !strings.Contains(got, "ProcessId") || !strings.Contains(got, "tenant") {
			t.Errorf("%s: columns %s", tn, got)
		}
	}
}

// A tenant whose id is, character for character, another tenant's hashed
// form (an id the writer had to hash) and that has no rows yet: Tenant,
// the operator's stitch hunt --tenant, takes it as the hashed form and
// finds the other tenant's rows, as it is documented to; TenantID, what
// the API scopes a token's tenant with, takes it as the id it is and
// finds nothing, so a token of that tenant never reads the other's rows.
func TestTenantIDIsNeverAHashedForm(t *testing.T) {
	long := strings.Repeat("L", 10000)
	dir := t.TempDir()
	w, err := parquet.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	b := parquettest.Batch(memory.DefaultAllocator, parquettest.Schema("DeviceProcessEvents"), long,
		[]parquettest.Row{{Time: time.Date(2024, 5, 1, 10, 0, 0, 0, time.UTC), ID: 1}})
	if err := w.Write(parquet.Source{Topic: "in"}, b); err != nil {
		t.Fatal(err)
	}
	b.Release()
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	lookalike := parquet.TenantElement(long)
	for _, c := range []struct {
		name string
		opt  Option
		want string
	}{
		{"Tenant(hashed form)", Tenant(lookalike), "1"},
		{"TenantID(hashed form)", TenantID(lookalike), "0"},
		{"TenantID(the long id)", TenantID(long), "1"},
	} {
		res, err := Run(context.Background(), dir, "SELECT count(*) FROM DeviceProcessEvents", c.opt)
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		if got := fmt.Sprint(res.Rows[0][0]); got != c.want {
			t.Errorf("%s: %s rows, want %s", c.name, got, c.want)
		}
	}
}
