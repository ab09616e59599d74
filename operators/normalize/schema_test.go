package normalize

import (
	"testing"

	"github.com/apache/arrow/go/v17/arrow"
)

func TestSchemas(t *testing.T) {
	names := Tables()
	if len(names) != 20 {
		t.Fatalf("Tables() = %d tables, want 20", len(names))
	}
	total := 0
	for _, n := range names {
		s := Schema(n)
		if s == nil {
			t.Fatalf("Schema(%q) = nil", n)
		}
		total += s.NumFields()
		if v, _ := s.Metadata().GetValue(MetaTable); v != n {
			t.Errorf("%s: %s = %q", n, MetaTable, v)
		}
		f, ok := s.FieldsByName("Timestamp")
		if !ok || !arrow.TypeEqual(f[0].Type, timestampType) {
			t.Errorf("%s: Timestamp column missing or not timestamp[us, UTC]", n)
		}
		if got, ok := TableOf(CategoryPrefix + n); !ok || got != n {
			t.Errorf("TableOf(%q) = %q, %v", CategoryPrefix+n, got, ok)
		}
	}
	if total != 677 {
		t.Errorf("total columns %d, want 677", total)
	}
	if Schema("Nope") != nil {
		t.Error("Schema of unknown table not nil")
	}
	for _, c := range []string{"DeviceProcessEvents", "AdvancedHunting-Nope", "advancedhunting-DeviceInfo"} {
		if _, ok := TableOf(c); ok {
			t.Errorf("TableOf(%q) ok", c)
		}
	}
	check := func(table, col string, want arrow.DataType) {
		t.Helper()
		f, ok := Schema(table).FieldsByName(col)
		if !ok || !arrow.TypeEqual(f[0].Type, want) || !f[0].Nullable {
			t.Errorf("%s.%s: got %v, want nullable %v", table, col, f, want)
		}
	}
	check("DeviceProcessEvents", "ProcessId", arrow.PrimitiveTypes.Int64)
	check("DeviceProcessEvents", "ActionType", dictStringType)
	check("DeviceNetworkEvents", "RemotePort", arrow.PrimitiveTypes.Int32)
	check("DeviceInfo", "IsAzureADJoined", arrow.FixedWidthTypes.Boolean)
	check("CloudAppEvents", "RawEventData", arrow.BinaryTypes.String)
	check("CloudAppEvents", "CountryCode", dictStringType)
	check("IdentityDirectoryEvents", "ReportId", arrow.BinaryTypes.String)
}
