package parquet

import (
	"net/url"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// FuzzPartitionPath: whatever the tenant id and the event hour, a file's
// partition path is <Table>/tenant=<one element>/date=YYYY-MM-DD/hour=HH
// under the hunting dir: the element is one short, plain path element,
// stable, and either the id escaped (decoding back to it) or the hashed
// form.
//
//	go test ./connectors/parquet -run '^$' -fuzz FuzzPartitionPath -fuzztime 30s
func FuzzPartitionPath(f *testing.F) {
	for _, s := range []string{"t1", "a/b", "..", ".", "", "tenant=t1", strings.Repeat("%", 90), strings.Repeat("x", 300), "t\x00", "~0123", "\xff\xfe"} {
		f.Add(s, int64(0))
	}
	f.Add("t1", maxHour+1)
	f.Add("t1", minHour-1)
	f.Fuzz(func(t *testing.T, tenant string, hour int64) {
		e := TenantElement(tenant)
		if e == "" && tenant != "" || len(e) > MaxTenantElement || e != TenantElement(tenant) {
			t.Fatalf("TenantElement(%q) = %q", tenant, e)
		}
		if e == "." || e == ".." || strings.ContainsAny(e, "/\\\x00") || strings.HasPrefix(e, ".") {
			t.Fatalf("TenantElement(%q) = %q is not one plain path element", tenant, e)
		}
		if IsHashedTenant(e) {
			if !strings.Contains(e, "~") {
				t.Fatalf("hashed %q", e)
			}
		} else if got, err := url.PathUnescape(e); err != nil || got != tenant {
			t.Fatalf("TenantElement(%q) = %q decodes to %q (%v)", tenant, e, got, err)
		}
		h := clampHour(hour)
		at := time.Unix(h*3600, 0).UTC()
		rel := filepath.Join("DeviceEvents", "tenant="+e, "date="+at.Format("2006-01-02"), "hour="+at.Format("15"))
		if parts := strings.Split(filepath.Clean(rel), string(filepath.Separator)); len(parts) != 4 {
			t.Fatalf("%q is not 4 elements", rel)
		}
		if _, err := time.Parse("2006-01-02", at.Format("2006-01-02")); err != nil {
			t.Fatalf("hour %d: date= %s does not parse: %v", hour, at.Format("2006-01-02"), err)
		}
	})
}
