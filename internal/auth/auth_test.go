package auth

import (
	"strings"
	"testing"
)

// Roles grant what docs/API.md says, and scopes narrow by tenant and by
// device group (patterns, case-insensitive; no device is in any group).
func TestRolesAndScopes(t *testing.T) {
	want := map[string]string{Viewer: "read", Analyst: "read update hunt", Responder: "read approve", Admin: "read update hunt approve"}
	for role, perms := range want {
		p := &Principal{Role: role}
		var got []string
		for _, perm := range []Permission{Read, Update, Hunt, Approve} {
			if p.Can(perm) {
				got = append(got, string(perm))
			}
		}
		if strings.Join(got, " ") != perms {
			t.Errorf("%s may %v, want %s", role, got, perms)
		}
	}
	var tokens []Token
	var secrets []string
	for _, spec := range []struct {
		name    string
		tenants []string
		groups  []string
	}{{"a", []string{"t1"}, nil}, {"all", []string{AllTenants}, nil}, {"ws", []string{"t1"}, []string{"workstations"}}} {
		secret, tok, err := NewToken(spec.name, Viewer, spec.tenants, spec.groups)
		if err != nil {
			t.Fatal(err)
		}
		tokens, secrets = append(tokens, tok), append(secrets, secret)
	}
	ts, err := NewTokens(tokens, []DeviceGroup{{Name: "workstations", Devices: []string{"WS-*"}}})
	if err != nil {
		t.Fatal(err)
	}
	a, all, ws := ts.Lookup(secrets[0]), ts.Lookup(secrets[1]), ts.Lookup(secrets[2])
	switch {
	case a == nil || all == nil || ws == nil:
		t.Fatal("a token is not found")
	case !a.SeesTenant("t1") || a.SeesTenant("t2") || !all.SeesTenant("t2"):
		t.Error("tenant scope")
	case a.DeviceScoped() || !a.SeesDevice("srv-1") || !a.SeesAnyDevice(nil):
		t.Error("a token with no groups sees every device")
	case !ws.SeesDevice("ws-0153") || ws.SeesDevice("srv-1") || ws.SeesDevice("") || ws.SeesAnyDevice(nil) || !ws.SeesAnyDevice([]string{"srv-1", "ws-7"}):
		t.Error("device-group scope")
	}
	if err := Validate(append(tokens, tokens[0]), nil); err == nil || !strings.Contains(err.Error(), "used twice") || !strings.Contains(err.Error(), "workstations") {
		t.Errorf("duplicate name and unknown group: %v", err)
	}
}
