package pipeline

import (
	"bytes"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stitch-xdr/stitch/connectors/microsoft"
)

// respond.microsoft_tenants is read from the config file as a list of
// entries, and every mistake in it is reported with the entry it is in.
func TestMicrosoftTenantsConfig(t *testing.T) {
	path := filepath.Join(t.TempDir(), "c.yaml")
	os.WriteFile(path, []byte(`respond:
  microsoft: true
  microsoft_poll_interval: 10s
  microsoft_tenants:
    - tenant: contoso
      azure_tenant_id: 72f988bf-86f1-41af-91ab-2d7cd011db47
      client_id: 0b9b9c5a-0000-4000-8000-000000000001
      client_secret_env: CONTOSO_CLIENT_SECRET
    - tenant: fabrikam
      azure_tenant_id: 3c1a2b4d-0000-4000-8000-000000000002
      client_id: 0b9b9c5a-0000-4000-8000-000000000002
      client_secret_file: /run/secrets/fabrikam
`), 0o644)
	cfg, err := Load(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	got := cfg.Respond.MicrosoftTenants
	if len(got) != 2 || got[0].ClientSecretEnv != "CONTOSO_CLIENT_SECRET" || got[1].ClientSecretFile != "/run/secrets/fabrikam" || got[1].Tenant != "fabrikam" {
		t.Fatalf("tenants %+v", got)
	}
	// A plain secret has no key: it never sits in a config file.
	os.WriteFile(path, []byte("respond:\n  microsoft_tenants:\n    - tenant: contoso\n      client_secret: hunter2\n"), 0o644)
	if _, err := Load(path); err == nil || strings.Contains(err.Error(), "hunter2") {
		t.Fatalf("a plain client_secret: %v", err)
	}

	cfg = Default()
	r := &cfg.Respond
	r.MicrosoftTenants = []MicrosoftTenant{
		{Tenant: "t1", AzureTenantID: "d", ClientID: "c", ClientSecretEnv: "E"},
		{Tenant: "t1", AzureTenantID: "d", ClientID: "c", ClientSecretFile: "f"},
		{AzureTenantID: "d", ClientID: "c", ClientSecretEnv: "E"},
		{Tenant: "t3", ClientSecretEnv: "E", ClientSecretFile: "f"},
		{Tenant: "t4", AzureTenantID: "d", ClientID: "c"},
	}
	r.MicrosoftPollInterval, r.MicrosoftPollMax, r.MicrosoftActionTimeout = Duration(10e9), Duration(5e9), 0
	err = cfg.Validate()
	for _, want := range []string{
		`respond.microsoft_tenants[1]: tenant "t1" is listed twice`,
		`respond.microsoft_tenants[2]: needs 'tenant'`,
		`respond.microsoft_tenants[3]: tenant "t3" needs 'azure_tenant_id' and 'client_id'`,
		`respond.microsoft_tenants[3]: tenant "t3" needs one of 'client_secret_env'`,
		`respond.microsoft_tenants[4]: tenant "t4" needs one of 'client_secret_env'`,
		`respond.microsoft_poll_max_interval: 5s is below respond.microsoft_poll_interval (10s)`,
		`respond.microsoft_action_timeout: 0s is out of range`,
	} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("validation %v; want %q", err, want)
		}
	}
}

// respond.microsoft_tenants cannot make one tenant act with another's
// secret: an entry that reads its secret from where another tenant's
// application's is read is refused, naming both; so is a secret file by a
// relative or unclean path (what it names depends on where stitch was
// started, or hides where it points). A multi-tenant application (one
// client_id, one secret, several directories) may share its secret.
func TestMicrosoftTenantsDoNotShareSecrets(t *testing.T) {
	cfg := Default()
	cfg.Respond.MicrosoftTenants = []MicrosoftTenant{
		{Tenant: "t1", AzureTenantID: "d1", ClientID: "app-1", ClientSecretFile: "/run/secrets/t1"},
		{Tenant: "t6", AzureTenantID: "d6", ClientID: "app-1", ClientSecretFile: "/run/secrets/t1"},
		{Tenant: "t2", AzureTenantID: "d2", ClientID: "app-2", ClientSecretFile: "/run/secrets/../secrets/t1"},
		{Tenant: "t3", AzureTenantID: "d3", ClientID: "app-3", ClientSecretEnv: "T1_SECRET"},
		{Tenant: "t4", AzureTenantID: "d4", ClientID: "app-4", ClientSecretEnv: "T1_SECRET"},
		{Tenant: "t5", AzureTenantID: "d5", ClientID: "app-5", ClientSecretFile: "secrets/t5"},
		{Tenant: "t7", AzureTenantID: "d7", ClientID: "app-7", ClientSecretFile: "/run/secrets/t7"},
	}
	err := cfg.Validate()
	for _, want := range []string{
		`respond.microsoft_tenants[2]: tenant "t2": client_secret_file "/run/secrets/../secrets/t1" is not a clean absolute path`,
		`respond.microsoft_tenants[2]: tenant "t2" reads the secret of tenant "t1"'s application (client_secret_file /run/secrets/../secrets/t1, as respond.microsoft_tenants[0])`,
		`respond.microsoft_tenants[4]: tenant "t4" reads the secret of tenant "t3"'s application (client_secret_env T1_SECRET, as respond.microsoft_tenants[3])`,
		`respond.microsoft_tenants[5]: tenant "t5": client_secret_file "secrets/t5" is not a clean absolute path`,
	} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("validation %v; want %q", err, want)
		}
	}
	for _, ok := range []string{"[0]", "[1]", "[3]", "[6]"} {
		if err != nil && strings.Contains(err.Error(), "respond.microsoft_tenants"+ok+":") {
			t.Errorf("entry %s refused: %v", ok, err)
		}
	}
}

// The executor of a config: the listed tenants' applications, the AZURE_*
// environment for the others; a half-set environment, or no credentials
// at all, refuse to start; a listed tenant whose secret is not there now
// is logged (its actions fail with the reason), not a refusal.
func TestMicrosoftExecutorOfTheConfig(t *testing.T) {
	for _, v := range []string{microsoft.EnvTenantID, microsoft.EnvClientID, microsoft.EnvClientSecret, "T1_SECRET"} {
		t.Setenv(v, "")
	}
	var logs bytes.Buffer
	log := slog.New(slog.NewTextHandler(&logs, nil))
	cfg := Default()
	if _, err := newMicrosoftExecutor(cfg, log); err == nil || !strings.Contains(err.Error(), "respond.microsoft_tenants") || !strings.Contains(err.Error(), microsoft.EnvTenantID) {
		t.Fatalf("no credentials: %v", err)
	}
	t.Setenv(microsoft.EnvTenantID, "dir-0")
	if _, err := newMicrosoftExecutor(cfg, log); err == nil || !strings.Contains(err.Error(), microsoft.EnvClientID+", "+microsoft.EnvClientSecret) {
		t.Fatalf("half-set environment: %v", err)
	}
	t.Setenv(microsoft.EnvTenantID, "")
	cfg.Respond.MicrosoftTenants = []MicrosoftTenant{{Tenant: "t1", AzureTenantID: "dir-1", ClientID: "app-1", ClientSecretEnv: "T1_SECRET"}}
	e, err := newMicrosoftExecutor(cfg, log)
	if err != nil {
		t.Fatal(err)
	}
	if c := e.Tenants["t1"]; c.TenantID != "dir-1" || c.ClientID != "app-1" || c.SecretEnv != "T1_SECRET" || c.ClientSecret != "" || e.Credentials.TenantID != "" {
		t.Fatalf("credentials %+v, default %+v", e.Tenants, e.Credentials)
	}
	if !strings.Contains(logs.String(), "T1_SECRET") {
		t.Errorf("a missing secret is not logged: %s", logs.String())
	}
	if e.Follow.Interval != cfg.Respond.MicrosoftPollInterval.D() || e.Follow.Timeout != cfg.Respond.MicrosoftActionTimeout.D() {
		t.Errorf("follow policy %+v", e.Follow)
	}
}
