package microsoft

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/stitch-xdr/stitch/connectors/execute"
)

// Credentials are an Entra ID application's: the directory (tenant) id, the
// application (client) id and a client secret. The secret is ClientSecret,
// or, when that is empty, read at every token request from the environment
// variable SecretEnv or the file SecretFile (its content, surrounding white
// space trimmed), so that a rotated secret is taken up without a restart
// and never sits in a config file or on a command line.
type Credentials struct {
	TenantID, ClientID, ClientSecret string
	SecretEnv, SecretFile            string
}

// Environment variables of the credentials (the names the Azure SDKs use).
const (
	EnvTenantID     = "AZURE_TENANT_ID"
	EnvClientID     = "AZURE_CLIENT_ID"
	EnvClientSecret = "AZURE_CLIENT_SECRET"
)

// CredentialsFromEnv reads the credentials from the environment, or says
// which variables are missing.
func CredentialsFromEnv() (Credentials, error) {
	c, set, err := EnvCredentials(os.Getenv)
	if err == nil && !set {
		err = fmt.Errorf("microsoft executor: set %s, %s and %s in the environment (an Entra ID application with the Defender for Endpoint and Graph permissions of the actions)", EnvTenantID, EnvClientID, EnvClientSecret)
	}
	return c, err
}

// EnvCredentials reads the credentials from the environment: set says
// whether any of the three variables is; an error names the ones missing
// when only some are (a half-configured fallback is a mistake, not none).
func EnvCredentials(getenv func(string) string) (c Credentials, set bool, err error) {
	c = Credentials{TenantID: getenv(EnvTenantID), ClientID: getenv(EnvClientID), ClientSecret: getenv(EnvClientSecret)}
	var missing []string
	for _, v := range []struct{ name, val string }{{EnvTenantID, c.TenantID}, {EnvClientID, c.ClientID}, {EnvClientSecret, c.ClientSecret}} {
		if v.val == "" {
			missing = append(missing, v.name)
		}
	}
	switch len(missing) {
	case 3:
		return Credentials{}, false, nil
	case 0:
		return c, true, nil
	}
	return c, true, fmt.Errorf("microsoft executor: set %s in the environment (an Entra ID application with the Defender for Endpoint and Graph permissions of the actions)", strings.Join(missing, ", "))
}

// complete says whether the credentials name an application and a place
// for its secret (not whether the secret is there).
func (c Credentials) complete() bool {
	return c.TenantID != "" && c.ClientID != "" && (c.ClientSecret != "" || c.SecretEnv != "" || c.SecretFile != "")
}

// resolved is c with its secret read from where it is kept.
func (c Credentials) resolved() (Credentials, error) {
	switch {
	case c.ClientSecret != "":
		return c, nil
	case c.SecretEnv != "":
		if c.ClientSecret = os.Getenv(c.SecretEnv); c.ClientSecret == "" {
			return c, fmt.Errorf("the client secret of application %s (directory %s) is read from the environment variable %s, which is not set", c.ClientID, c.TenantID, c.SecretEnv)
		}
	case c.SecretFile != "":
		b, err := os.ReadFile(c.SecretFile)
		if err != nil {
			return c, fmt.Errorf("the client secret of application %s (directory %s) cannot be read: %v", c.ClientID, c.TenantID, err)
		}
		if c.ClientSecret = strings.TrimSpace(string(b)); c.ClientSecret == "" {
			return c, fmt.Errorf("the client secret file %s of application %s (directory %s) is empty", c.SecretFile, c.ClientID, c.TenantID)
		}
	default:
		return c, fmt.Errorf("application %s (directory %s) has no client secret", c.ClientID, c.TenantID)
	}
	return c, nil
}

// credentials are the ones acting for a stitch tenant, their secret read:
// the tenant's own, else the default set; an error says why there are none.
func (e *Executor) credentials(tenant string) (Credentials, error) {
	c, ok := e.Tenants[tenant]
	if !ok {
		if !e.Credentials.complete() {
			return c, fmt.Errorf("no Microsoft credentials for stitch tenant %q: give it an Entra ID application in respond.microsoft_tenants, or set %s, %s and %s for every tenant not listed there",
				tenant, EnvTenantID, EnvClientID, EnvClientSecret)
		}
		c = e.Credentials
	}
	c, err := c.resolved()
	if err != nil {
		return c, fmt.Errorf("stitch tenant %q: %w", tenant, err)
	}
	return c, nil
}

// Check says, for each credential set whose secret cannot be read now, why:
// the actions of those tenants will fail with that reason until it can.
func (e *Executor) Check() []error {
	var errs []error
	for tenant, c := range e.Tenants {
		if _, err := c.resolved(); err != nil {
			errs = append(errs, fmt.Errorf("stitch tenant %q: %w", tenant, err))
		}
	}
	if e.Credentials.complete() {
		if _, err := e.Credentials.resolved(); err != nil {
			errs = append(errs, err)
		}
	}
	return errs
}

type token struct {
	value   string
	expires time.Time
}

// tokenKey is the cache key of a token: one per credential set and API.
type tokenKey struct{ directory, client, scope string }

func keyOf(c Credentials, scope string) tokenKey { return tokenKey{c.TenantID, c.ClientID, scope} }

// permanentError is a token request the identity platform refused (bad
// credentials, a missing consent): retrying cannot help.
type permanentError struct {
	status int
	msg    string
}

func (p permanentError) Error() string { return fmt.Sprintf("HTTP %d: %s", p.status, p.msg) }

// token is a cached access token of credentials c for scope, fetched with
// the client credentials grant when absent or within a minute of expiry.
func (e *Executor) token(ctx context.Context, client *http.Client, c Credentials, scope string) (string, error) {
	key := keyOf(c, scope)
	e.mu.Lock()
	t, ok := e.tokens[key]
	e.mu.Unlock()
	if ok && time.Until(t.expires) > time.Minute {
		return t.value, nil
	}
	form := url.Values{"grant_type": {"client_credentials"}, "client_id": {c.ClientID}, "client_secret": {c.ClientSecret}, "scope": {scope}}
	u := base(e.LoginURL, DefaultLoginURL) + "/" + url.PathEscape(c.TenantID) + "/oauth2/v2.0/token"
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u, strings.NewReader(form.Encode()))
	if err != nil {
		return "", err
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	resp, err := client.Do(req)
	if err != nil {
		return "", fmt.Errorf("token: %w", err)
	}
	defer resp.Body.Close()
	var got struct {
		AccessToken string `json:"access_token"`
		ExpiresIn   int64  `json:"expires_in"`
		Error       string `json:"error"`
		Description string `json:"error_description"`
	}
	derr := json.NewDecoder(http.MaxBytesReader(nil, resp.Body, 1<<20)).Decode(&got)
	switch {
	case resp.StatusCode != http.StatusOK && execute.Permanent(resp.StatusCode):
		return "", permanentError{resp.StatusCode, "token: " + got.Error + ": " + got.Description}
	case resp.StatusCode != http.StatusOK:
		return "", fmt.Errorf("token: HTTP %d: %s", resp.StatusCode, got.Error)
	case derr != nil || got.AccessToken == "":
		return "", fmt.Errorf("token: an answer without an access token (%v)", derr)
	}
	e.mu.Lock()
	if e.tokens == nil {
		e.tokens = map[tokenKey]token{}
	}
	e.tokens[key] = token{got.AccessToken, time.Now().Add(time.Duration(got.ExpiresIn) * time.Second)}
	e.mu.Unlock()
	return got.AccessToken, nil
}

// tokenAnswer is token as an attempt's answer when there is none: a
// refusal by the identity platform is final, anything else is retried.
func (e *Executor) tokenAnswer(ctx context.Context, client *http.Client, c Credentials, scope string) (string, execute.Answer) {
	tok, err := e.token(ctx, client, c, scope)
	if err != nil {
		if perm, ok := err.(permanentError); ok {
			return "", execute.Answer{Status: perm.status, Msg: perm.msg}
		}
		return "", execute.Answer{Err: err}
	}
	return tok, execute.Answer{}
}

func (e *Executor) forget(c Credentials, scope string) {
	e.mu.Lock()
	delete(e.tokens, keyOf(c, scope))
	e.mu.Unlock()
}
