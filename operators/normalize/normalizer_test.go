package normalize

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func deviceRecord(tenant string, pid int) string {
	return fmt.Sprintf(`{"time":"2021-08-02T13:11:%02dZ","tenantId":%q,"category":"AdvancedHunting-DeviceProcessEvents","properties":{"DeviceName":"ws1","ProcessId":%d}}`, pid%60, tenant, pid)
}

func TestBatchByRows(t *testing.T) {
	n, c := newChecked(t, WithBatchRows(3))
	for i := 0; i < 7; i++ {
		addString(n, c, deviceRecord("t1", i))
	}
	addString(n, c, deviceRecord("t2", 99))
	if len(c.batches) != 2 {
		t.Fatalf("after 7 rows of t1 at 3 per batch: %d batches, want 2", len(c.batches))
	}
	b := c.batches[1]
	if b.Record.NumRows() != 3 || b.Tenant != "t1" || Int64s(b.Record, "ProcessId").Value(0) != 3 {
		t.Errorf("second batch: %d rows of %s starting at pid %d", b.Record.NumRows(), b.Tenant, Int64s(b.Record, "ProcessId").Value(0))
	}
	if !b.MinTime.Equal(time.Date(2021, 8, 2, 13, 11, 3, 0, time.UTC)) || !b.MaxTime.Equal(time.Date(2021, 8, 2, 13, 11, 5, 0, time.UTC)) {
		t.Errorf("MinTime/MaxTime %v %v", b.MinTime, b.MaxTime)
	}
	n.Flush(c.emit)
	if len(c.batches) != 4 || c.rows() != 8 {
		t.Fatalf("after Flush: %d batches, %d rows; want 4 batches (t1 rest, t2), 8 rows", len(c.batches), c.rows())
	}
	n.Flush(c.emit)
	if len(c.batches) != 4 {
		t.Error("flushing nothing emitted a batch")
	}
}

func TestBatchByBytes(t *testing.T) {
	rec := deviceRecord("t1", 1)
	n, c := newChecked(t, WithBatchBytes(int64(3*len(rec))))
	for i := 0; i < 5; i++ {
		addString(n, c, rec)
	}
	if len(c.batches) != 1 || c.batches[0].Record.NumRows() != 3 || c.batches[0].Bytes != int64(3*len(rec)) {
		t.Fatalf("want one batch of 3 rows and %d bytes, got %d batches", 3*len(rec), len(c.batches))
	}
}

func TestBatchByAge(t *testing.T) {
	now := time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)
	n, c := newChecked(t, WithBatchAge(time.Second), WithClock(func() time.Time { return now }))
	addString(n, c, deviceRecord("t1", 1))
	now = now.Add(600 * time.Millisecond)
	addString(n, c, deviceRecord("t2", 2))
	n.FlushDue(now, c.emit)
	if len(c.batches) != 0 {
		t.Fatal("flushed before the batch age")
	}
	now = now.Add(400 * time.Millisecond)
	n.FlushDue(now, c.emit)
	if len(c.batches) != 1 || c.batches[0].Tenant != "t1" {
		t.Fatalf("after 1s: %d batches, want t1's only", len(c.batches))
	}
	n.FlushDue(now.Add(time.Second), c.emit)
	if len(c.batches) != 2 {
		t.Fatalf("t2 not flushed once due")
	}
}

// TestSchemaEvolution: an undefined column is promoted to a utf8 column that
// later batches of its tenant carry, with a bumped schema version; another
// tenant's batches never get it (promotion is per tenant).
func TestSchemaEvolution(t *testing.T) {
	n, c := newChecked(t)
	addString(n, c, deviceRecord("t1", 1))
	n.Flush(c.emit)
	addString(n, c, deviceRecord("t2", 2))
	addString(n, c, `{"time":"2021-08-02T13:11:40Z","tenantId":"t1","category":"AdvancedHunting-DeviceProcessEvents","properties":{"ProcessId":3,"NewThing":{"a":[1,2]},"Flag":true}}`)
	addString(n, c, deviceRecord("t1", 4))
	n.Flush(c.emit)
	if len(c.batches) != 3 {
		t.Fatalf("%d batches", len(c.batches))
	}
	first := c.batches[0].Record
	if _, ok := first.Schema().FieldsByName("NewThing"); ok {
		t.Error("first batch has a column seen only later")
	}
	for _, b := range c.batches[1:] {
		v, _ := b.Record.Schema().Metadata().GetValue(MetaSchemaVersion)
		_, has := b.Record.Schema().FieldsByName("NewThing")
		switch b.Tenant {
		case "t1":
			if v != "3" {
				t.Errorf("t1: schema version %q, want 3 after two promotions", v)
			}
			col := Strings(b.Record, "NewThing")
			if col.Value(0) != `{"a":[1,2]}` || Strings(b.Record, "Flag").Value(0) != "true" || !col.IsNull(1) {
				t.Errorf("promoted values %q %q", col.Value(0), Strings(b.Record, "Flag").Value(0))
			}
		case "t2":
			if has || v != "1" {
				t.Errorf("t2 got t1's columns (schema version %q)", v)
			}
		}
	}
	if got := n.Schema("DeviceProcessEvents", "t1").NumFields(); got != Schema("DeviceProcessEvents").NumFields()+2 {
		t.Errorf("Normalizer schema of t1 has %d fields", got)
	}
	if got := n.Schema("DeviceProcessEvents", "t2").NumFields(); got != Schema("DeviceProcessEvents").NumFields() {
		t.Errorf("Normalizer schema of t2 has %d fields", got)
	}
}

// TestPromotionBudgetPerTenant: one tenant that invents keys fills its own
// budget of MaxExtraColumns, not another tenant's.
func TestPromotionBudgetPerTenant(t *testing.T) {
	n, c := newChecked(t)
	var sb strings.Builder
	for i := 0; i < MaxExtraColumns+2; i++ {
		fmt.Fprintf(&sb, `,"X%02d":"v%d"`, i, i)
	}
	addString(n, c, `{"time":"2021-08-02T13:11:40Z","tenantId":"noisy","category":"AdvancedHunting-AlertInfo","properties":{"AlertId":"a1"`+sb.String()+`}}`)
	addString(n, c, `{"time":"2021-08-02T13:11:40Z","tenantId":"quiet","category":"AdvancedHunting-AlertInfo","properties":{"AlertId":"a2","Mine":"m"}}`)
	n.Flush(c.emit)
	for _, b := range c.batches {
		names := map[string]bool{}
		for _, f := range b.Record.Schema().Fields() {
			names[f.Name] = true
		}
		switch b.Tenant {
		case "noisy":
			if !names[ExtraFieldsColumn] || names["Mine"] {
				t.Errorf("noisy: columns %v", b.Record.Schema())
			}
		case "quiet":
			if names["X00"] || names[ExtraFieldsColumn] || !names["Mine"] {
				t.Errorf("quiet: columns %v", b.Record.Schema())
			}
		}
	}
}

func TestExtraFieldsOverflow(t *testing.T) {
	n, c := newChecked(t)
	var sb strings.Builder
	for i := 0; i < MaxExtraColumns+2; i++ {
		fmt.Fprintf(&sb, `,"X%02d":"v%d"`, i, i)
	}
	addString(n, c, `{"time":"2021-08-02T13:11:40Z","tenantId":"t1","category":"AdvancedHunting-AlertInfo","properties":{"AlertId":"a1"`+sb.String()+`}}`)
	n.Flush(c.emit)
	rec := c.batches[0].Record
	if want := Schema("AlertInfo").NumFields() + MaxExtraColumns + 1; int(rec.NumCols()) != want {
		t.Fatalf("%d columns, want %d", rec.NumCols(), want)
	}
	if got := Strings(rec, ExtraFieldsColumn).Value(0); got != `{"X64":"v64","X65":"v65"}` {
		t.Errorf("ExtraFields %s", got)
	}
}

// TestExportSuffixes: ReportId_long / ReportId_string and friends land in
// their base column, and the one holding a value wins over the empty one.
func TestExportSuffixes(t *testing.T) {
	n, c := newChecked(t, WithImport("DeviceEvents"))
	addString(n, c, `{"Timestamp":"2021-08-02T13:11:39.7724491Z","ActionType":"LdapSearch","ReportId_long":113597,"ReportId_string":"","AdditionalFields_string":"{\"ScopeOfSearch\":\"Base\"}","AdditionalFields_dynamic":null,"UnrelatedEmpty":""}`)
	addString(n, c, `{"Timestamp":"2021-08-02T13:11:39Z","ReportId_string":"","ReportId_long":"7","AdditionalFields_dynamic":{"a":1},"AdditionalFields_string":""}`)
	n.Flush(c.emit)
	if len(c.dead) > 0 || len(c.batches) != 1 {
		t.Fatalf("dead %+v", c.dead)
	}
	rec := c.batches[0].Record
	if rid := Int64s(rec, "ReportId"); rid.Value(0) != 113597 || rid.Value(1) != 7 {
		t.Errorf("ReportId %d %d", rid.Value(0), rid.Value(1))
	}
	if af := Strings(rec, "AdditionalFields"); af.Value(0) != `{"ScopeOfSearch":"Base"}` || af.Value(1) != `{"a":1}` {
		t.Errorf("AdditionalFields %q %q", af.Value(0), af.Value(1))
	}
	if rec.NumCols() != int64(Schema("DeviceEvents").NumFields()) {
		t.Error("suffixed or empty export columns were promoted")
	}
	if c.batches[0].Tenant != DefaultTenant {
		t.Errorf("tenant %q", c.batches[0].Tenant)
	}
}

// TestGoldenSAMLImport normalizes the OTRF Golden SAML export (a union of
// three tables in one file) with table inference.
func TestGoldenSAMLImport(t *testing.T) {
	path := sharedData(t, "otrf/datasets/compound/GoldenSAMLADFSMailAccess/unzipped/Microsoft365DefenderEvents.json")
	n, c := newChecked(t, WithImport(""), WithDefaultTenant("simulandlabs"))
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		n.Add(Input{Topic: filepath.Base(path), Value: sc.Bytes()}, c.emit, c.deadL)
	}
	n.Flush(c.emit)
	if len(c.dead) > 0 {
		t.Fatalf("dead letters: %+v", c.dead)
	}
	s := n.Stats()
	want := map[string]int64{"DeviceEvents": 5, "IdentityDirectoryEvents": 2, "CloudAppEvents": 2}
	for table, cnt := range want {
		if s.Inferred[table] != cnt || s.Normalized[table] != cnt {
			t.Errorf("%s: inferred %d, normalized %d, want %d", table, s.Inferred[table], s.Normalized[table], cnt)
		}
	}
	checkStats(t, s)
	for _, b := range c.batches {
		rec := b.Record
		switch b.Table {
		case "DeviceEvents":
			if Strings(rec, "ActionType").Value(0) != "LdapSearch" || Int64s(rec, "ReportId").Value(0) != 113597 ||
				!strings.Contains(Strings(rec, "AdditionalFields").Value(0), "ScopeOfSearch") {
				t.Errorf("DeviceEvents row 0: %s %d", Strings(rec, "ActionType").Value(0), Int64s(rec, "ReportId").Value(0))
			}
		case "IdentityDirectoryEvents":
			if Strings(rec, "Protocol").Value(0) != "Drsr" || Int64s(rec, "DestinationPort").Value(0) != 49668 {
				t.Errorf("IdentityDirectoryEvents row 0 Protocol %q", Strings(rec, "Protocol").Value(0))
			}
		case "CloudAppEvents":
			if Strings(rec, "UserAgent").Value(0) != "Client=REST;;" || Bools(rec, "IsAdminOperation").IsNull(0) ||
				!strings.Contains(Strings(rec, "RawEventData").Value(0), "MailItemsAccessed") {
				t.Errorf("CloudAppEvents row 0: UserAgent %q", Strings(rec, "UserAgent").Value(0))
			}
			if Strings(rec, "Permissions").Value(1) != "User.Read Mail.ReadWrite" {
				t.Errorf("undefined export column not kept: %q", Strings(rec, "Permissions").Value(1))
			}
		}
		if got := Times(rec, "Timestamp"); got.IsNull(0) || got.Value(0).Year() != 2021 {
			t.Errorf("%s: Timestamp %v", b.Table, got.Value(0))
		}
	}
}

func TestParseTime(t *testing.T) {
	good := map[string]string{
		"2021-08-02T13:11:39.7724491Z":   "2021-08-02T13:11:39.772449Z",
		"2020-10-18 10:56:05.751":        "2020-10-18T10:56:05.751Z",
		"2021-08-02T13:32:07Z":           "2021-08-02T13:32:07Z",
		"2021-08-02T13:32:07":            "2021-08-02T13:32:07Z",
		"2021-08-02T15:32:07.5+02:00":    "2021-08-02T13:32:07.5Z",
		"2024-02-29T00:00:00.123456789Z": "2024-02-29T00:00:00.123456Z",
	}
	for in, want := range good {
		us, ok := parseTime([]byte(in))
		if got := time.UnixMicro(us).UTC().Format(time.RFC3339Nano); !ok || got != want {
			t.Errorf("parseTime(%q) = %s, %v; want %s", in, got, ok, want)
		}
	}
	for _, in := range []string{"", "2021-08-02", "2021-13-02T00:00:00Z", "2023-02-29T00:00:00Z", "2021-08-02T24:00:00Z", "2021-08-02T13:32:07.Z", "2021-08-02T13:32:07+2", "2021-08-02T13:32:07ZZ", "2021/08/02 13:32:07"} {
		if _, ok := parseTime([]byte(in)); ok {
			t.Errorf("parseTime(%q) accepted", in)
		}
	}
}

func TestJSONDepth(t *testing.T) {
	cases := map[string]int{
		`{"a":[1,{"b":2}]}`:      3,
		`{"a":"[[[[{{{{\"[[[["}`: 1,
		`{"a":"x\\","b":[[]]}`:   3,
	}
	cases[strings.Repeat("[", 35)+strings.Repeat("]", 35)] = 35
	for in, want := range cases {
		if got := jsonDepth([]byte(in), 0); got != want {
			t.Errorf("jsonDepth(%s) = %d, want %d", in, got, want)
		}
	}
}
