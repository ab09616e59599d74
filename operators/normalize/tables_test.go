package normalize

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/apache/arrow/go/v17/arrow"
)

// TestTables normalizes one streaming-API record per advanced-hunting table
// (testdata/tables/<Table>.json) and reads every property back through the
// accessors, checking the column's Arrow type and value.
func TestTables(t *testing.T) {
	files, _ := filepath.Glob("testdata/tables/*.json")
	if len(files) != 20 {
		t.Fatalf("want one record per table (20), found %d", len(files))
	}
	for _, f := range files {
		table := strings.TrimSuffix(filepath.Base(f), ".json")
		t.Run(table, func(t *testing.T) {
			raw, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			var rec struct {
				TenantID   string                     `json:"tenantId"`
				Properties map[string]json.RawMessage `json:"properties"`
			}
			if err := json.Unmarshal(raw, &rec); err != nil {
				t.Fatal(err)
			}
			n, c := newChecked(t)
			addString(n, c, string(raw))
			n.Flush(c.emit)
			if len(c.dead) > 0 || len(c.batches) != 1 {
				t.Fatalf("dead %+v, batches %d", c.dead, len(c.batches))
			}
			b := c.batches[0]
			if b.Table != table || b.Tenant != rec.TenantID || b.Record.NumRows() != 1 {
				t.Fatalf("batch %s/%s with %d rows", b.Table, b.Tenant, b.Record.NumRows())
			}
			if !b.Record.Schema().Equal(Schema(table)) {
				t.Errorf("record schema differs from Schema(%s)", table)
			}
			for col, v := range rec.Properties {
				checkCell(t, b.Record, col, v)
			}
		})
	}
}

func checkCell(t *testing.T, rec arrow.Record, col string, raw json.RawMessage) {
	t.Helper()
	f, ok := rec.Schema().FieldsByName(col)
	if !ok {
		t.Errorf("%s: no column", col)
		return
	}
	var v any
	d := json.NewDecoder(bytes.NewReader(raw))
	d.UseNumber()
	if err := d.Decode(&v); err != nil {
		t.Fatal(err)
	}
	if v == nil {
		if !Strings(rec, col).IsNull(0) && !Int64s(rec, col).IsNull(0) && !Times(rec, col).IsNull(0) && !Bools(rec, col).IsNull(0) {
			t.Errorf("%s: null input not null", col)
		}
		return
	}
	typ, _ := f[0].Metadata.GetValue(MetaColumnType)
	switch typ {
	case "long", "int":
		want, err := strconv.ParseInt(strings.Trim(string(raw), `"`), 10, 64)
		if err != nil {
			t.Fatalf("%s: test data %s", col, raw)
		}
		if got := Int64s(rec, col); got.IsNull(0) || got.Value(0) != want {
			t.Errorf("%s (%s, %s): got %d, want %d", col, typ, f[0].Type, got.Value(0), want)
		}
	case "bool":
		want := strings.EqualFold(strings.Trim(string(raw), `"`), "true") || string(raw) == "1"
		if got := Bools(rec, col); got.IsNull(0) || got.Value(0) != want {
			t.Errorf("%s: got %v, want %v from %s", col, got.Value(0), want, raw)
		}
	case "datetime":
		want := refTime(t, v.(string))
		if got := Times(rec, col); got.IsNull(0) || !got.Value(0).Equal(want) {
			t.Errorf("%s: got %v, want %v", col, got.Value(0), want)
		}
	case "dynamic":
		got := Strings(rec, col).Value(0)
		if s, ok := v.(string); ok {
			if got != s {
				t.Errorf("%s: string kept as %q, want %q", col, got, s)
			}
			return
		}
		if !jsonEqual(got, string(raw)) {
			t.Errorf("%s: JSON text %s, want %s", col, got, raw)
		}
	default:
		want, ok := v.(string)
		if !ok {
			want = string(raw)
		}
		if got := Strings(rec, col); got.IsNull(0) || got.Value(0) != want {
			t.Errorf("%s (%s): got %q, want %q", col, f[0].Type, got.Value(0), want)
		}
	}
}

// refTime parses with the standard library, independently of parseTime.
func refTime(t *testing.T, s string) time.Time {
	for _, layout := range []string{time.RFC3339Nano, "2006-01-02 15:04:05.999999999", "2006-01-02T15:04:05.999999999"} {
		if tm, err := time.Parse(layout, s); err == nil {
			return tm.Truncate(time.Microsecond)
		}
	}
	t.Fatalf("test data time %q", s)
	return time.Time{}
}

func jsonEqual(a, b string) bool {
	var x, y any
	if json.Unmarshal([]byte(a), &x) != nil || json.Unmarshal([]byte(b), &y) != nil {
		return false
	}
	xa, _ := json.Marshal(x)
	ya, _ := json.Marshal(y)
	return bytes.Equal(xa, ya)
}
