package normalize

import (
	"testing"

	"github.com/stitch-xdr/stitch/state"
)

// The normalizer refuses (bad_tenant) exactly the tenants the correlation
// state cannot key, so none reaches it to be dropped there unseen.
func TestValidTenantIsTheState(t *testing.T) {
	for _, s := range []string{"", "t1", "\x00", "a\x00b", "t1\x00", "../x", "a/b", "\x01", "é"} {
		if got, want := validTenant([]byte(s)), state.ValidTenant(s); got != want {
			t.Errorf("validTenant(%q) = %v, state.ValidTenant %v", s, got, want)
		}
	}
}
