package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stitch-xdr/stitch/internal/appconfig"
	"github.com/stitch-xdr/stitch/internal/auth"
)

// The entry stitch token create prints is a config that loads, and the
// token it printed once is the one that entry admits, with its role and
// tenants; the token itself is nowhere in the entry.
func TestTokenCreatePrintsAnEntryThatAdmitsTheToken(t *testing.T) {
	var out bytes.Buffer
	if err := tokenCmd(context.Background(), []string{"create", "--role", "analyst", "--tenant", "t1", "--tenant", "t2", "--name", "alice"}, &out); err != nil {
		t.Fatal(err)
	}
	text := out.String()
	var token string
	for _, l := range strings.Split(text, "\n") {
		if l = strings.TrimSpace(l); strings.HasPrefix(l, "stx_") {
			token = l
		}
	}
	i := strings.Index(text, "auth:")
	if token == "" || i < 0 {
		t.Fatalf("no token or entry in:\n%s", text)
	}
	entry := text[i:]
	if strings.Contains(entry, token) {
		t.Fatalf("the entry holds the token:\n%s", entry)
	}
	path := filepath.Join(t.TempDir(), "stitch.yaml")
	if err := os.WriteFile(path, []byte(entry), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := appconfig.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	tokens, err := auth.NewTokens(cfg.Auth.Tokens, cfg.Auth.DeviceGroups)
	if err != nil {
		t.Fatal(err)
	}
	p := tokens.Lookup(token)
	if p == nil || p.Name != "alice" || p.Role != auth.Analyst || !p.SeesTenant("t2") || p.SeesTenant("t3") || !p.Can(auth.Hunt) || p.Can(auth.Approve) {
		t.Fatalf("principal %+v", p)
	}
	if tokens.Lookup(token+"x") != nil || tokens.Lookup("") != nil {
		t.Fatal("another token is admitted")
	}

	for _, args := range [][]string{{"create", "--role", "root", "--tenant", "t1"}, {"create", "--role", "viewer"}, {"list"}} {
		if err := tokenCmd(context.Background(), args, &out); err == nil {
			t.Errorf("%v accepted", args)
		}
	}
}

// A config with a bad token entry is refused with what is wrong, by entry.
func TestAuthConfigIsValidated(t *testing.T) {
	path := filepath.Join(t.TempDir(), "stitch.yaml")
	bad := "auth:\n  tokens:\n  - name: x\n    role: root\n    tenants: [t]\n    sha256: abc\n    device_groups: [nope]\n  device_groups:\n  - name: g\n"
	if err := os.WriteFile(path, []byte(bad), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := appconfig.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	err = cfg.Validate()
	for _, want := range []string{"auth.tokens[0] (x): role \"root\"", "sha256 is not 64 hex digits", "device group \"nope\"", "auth.device_groups[0] (g): no devices"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("validation %v: want %q", err, want)
		}
	}
}
