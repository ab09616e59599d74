package state

import (
	"fmt"
	"strings"
	"testing"
)

// Changes reports a batch's point writes in order (what a changelog
// carries), and not its range deletions (bucket expiry, which every replica
// does by itself).
func TestBatchChangesInOrder(t *testing.T) {
	_, b := smallStore(t)
	inc := AppendString(TenantKey(nil, 'i', "t1"), "inc-1")
	sight := AppendString(BucketKey(nil, 'v', 7, "t2"), "sha256:ab")
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(b.Set(inc, []byte("v1")))
	must(b.Set(sight, nil))
	start, end := BucketRange('v', 0, 5)
	must(b.DeleteRange(start, end))
	must(b.Set(inc, []byte("v2")))
	must(b.Delete(inc))
	must(b.SetOffset("facts", 2, 99))

	var got []string
	must(b.Changes(func(del bool, k, v []byte) error {
		got = append(got, fmt.Sprintf("%v %q %q", del, k, v))
		return nil
	}))
	want := []string{
		fmt.Sprintf("false %q %q", inc, "v1"),
		fmt.Sprintf("false %q %q", sight, ""),
		fmt.Sprintf("false %q %q", inc, "v2"),
		fmt.Sprintf("true %q %q", inc, ""),
		fmt.Sprintf("false %q %q", OffsetKey("facts", 2), appendUint64(nil, 99)),
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("changes:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

func TestKeyTenant(t *testing.T) {
	for _, tc := range []struct {
		key          []byte
		tenant       string
		bucketed, ok bool
	}{
		{AppendString(TenantKey(nil, 'i', "contoso"), "inc"), "contoso", false, true},
		{AppendString(BucketKey(nil, 'x', -3, "fabrikam"), "e"), "fabrikam", true, true},
		{OffsetKey("facts", 1), "", false, false},
		{[]byte{'T', 'i'}, "", false, false},
		{[]byte("Wm\x00\x00\x00\x01"), "", false, false},
	} {
		tenant, bucketed, ok := KeyTenant(tc.key)
		if string(tenant) != tc.tenant || bucketed != tc.bucketed || ok != tc.ok {
			t.Errorf("KeyTenant(%q) = %q %v %v, want %q %v %v", tc.key, tenant, bucketed, ok, tc.tenant, tc.bucketed, tc.ok)
		}
	}
	if tp, ok := ParseOffsetKey(OffsetKey("stitch.facts", 5)); !ok || tp != (TopicPartition{"stitch.facts", 5}) {
		t.Errorf("ParseOffsetKey round trip: %v %v", tp, ok)
	}
}
