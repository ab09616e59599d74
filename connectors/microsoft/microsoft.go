// Package microsoft is the Microsoft executor of automated response: it
// carries approved actions out through the documented APIs of Microsoft
// Defender for Endpoint (machine actions and indicators) and Microsoft
// Graph (users, sign-in sessions, risky users and email remediation),
// authenticated as an Entra ID application with the OAuth 2.0 client
// credentials grant, and says how each ended as an outcome for
// topics.action_results.
//
// Which call carries each action type:
//
//	IsolateDevice               POST {mde}/api/machines/{id}/isolate                {"Comment", "IsolationType": "Full"}
//	ReleaseDevice               POST {mde}/api/machines/{id}/unisolate              {"Comment"}
//	CollectInvestigationPackage POST {mde}/api/machines/{id}/collectInvestigationPackage {"Comment"}
//	RunAntivirusScan            POST {mde}/api/machines/{id}/runAntiVirusScan       {"Comment", "ScanType": "Quick"}
//	RestrictAppExecution        POST {mde}/api/machines/{id}/restrictCodeExecution  {"Comment"}
//	RemoveAppRestriction        POST {mde}/api/machines/{id}/unrestrictCodeExecution {"Comment"}
//	StopAndQuarantineFile       POST {mde}/api/machines/{id}/StopAndQuarantineFile  {"Comment", "Sha1"}
//	BlockIndicator              POST {mde}/api/indicators                           {"indicatorValue", "indicatorType", "action", "title", "description", "severity", "generateAlert"}
//	UnblockIndicator            GET {mde}/api/indicators?$filter=indicatorValue eq '{value}', then DELETE {mde}/api/indicators/{id} of each
//	DisableUser                 PATCH {graph}/v1.0/users/{id}                       {"accountEnabled": false}
//	ForcePasswordReset          PATCH {graph}/v1.0/users/{id}                       {"passwordProfile": {"forceChangePasswordNextSignIn": true}}
//	RevokeSessions              POST {graph}/v1.0/users/{id}/revokeSignInSessions
//	MarkUserCompromised         POST {graph}/v1.0/identityProtection/riskyUsers/confirmCompromised {"userIds": [id]}
//	SoftDeleteEmail             POST {graph}/v1.0/security/collaboration/analyzedEmails/remediate {"action": "softDelete", "analyzedEmails": [{"networkMessageId", "recipientEmailAddress"}], ...}
//
// Calling twice never acts twice: Graph's user updates, session revocation
// and risk confirmation are idempotent, an indicator is created or updated
// by its value, and a machine action Defender answers with
// ActiveRequestAlreadyExists (the same action is already under way) counts
// as carried out.
package microsoft

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/stitch-xdr/stitch/connectors/execute"
	"github.com/stitch-xdr/stitch/operators/respond"
)

// Default endpoints (the public cloud); sovereign clouds and regional
// Defender servers set their own.
const (
	DefaultDefenderURL = "https://api.securitycenter.microsoft.com"
	DefaultGraphURL    = "https://graph.microsoft.com"
	DefaultLoginURL    = "https://login.microsoftonline.com"
)

// Credentials are an Entra ID application's: the directory (tenant) id, the
// application (client) id and a client secret.
type Credentials struct {
	TenantID, ClientID, ClientSecret string
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
	c := Credentials{TenantID: os.Getenv(EnvTenantID), ClientID: os.Getenv(EnvClientID), ClientSecret: os.Getenv(EnvClientSecret)}
	var missing []string
	for _, v := range []struct{ name, val string }{{EnvTenantID, c.TenantID}, {EnvClientID, c.ClientID}, {EnvClientSecret, c.ClientSecret}} {
		if v.val == "" {
			missing = append(missing, v.name)
		}
	}
	if len(missing) > 0 {
		return c, fmt.Errorf("microsoft executor: set %s in the environment (an Entra ID application with the Defender for Endpoint and Graph permissions of the actions)", strings.Join(missing, ", "))
	}
	return c, nil
}

// Executor calls Defender for Endpoint and Graph.
type Executor struct {
	Credentials Credentials
	// DefenderURL, GraphURL and LoginURL are the services' base URLs
	// (empty: the public cloud's).
	DefenderURL, GraphURL, LoginURL string
	Client                          *http.Client
	Retry                           execute.Retry

	mu     sync.Mutex
	tokens map[string]token // by scope
}

type token struct {
	value   string
	expires time.Time
}

// Scopes of the two APIs.
const (
	defenderScope = "https://api.securitycenter.microsoft.com/.default"
	graphScope    = "https://graph.microsoft.com/.default"
)

// call is one API request an action becomes.
type call struct {
	scope, method, url string
	body               any
}

// Execute carries out an approved action (see execute.Retry.Do for how its
// outcome is decided). An action that no API call can express (a device
// action without a device id, a file without a SHA-1, which Defender's
// StopAndQuarantineFile requires) fails at once with the reason.
func (e *Executor) Execute(ctx context.Context, a *respond.Action) (respond.Outcome, error) {
	c, err := e.request(a)
	var body []byte
	if err == nil && c.body != nil {
		body, err = json.Marshal(c.body)
	}
	if err != nil {
		return e.Retry.Failed("microsoft", a, err.Error()), nil
	}
	client := execute.Client(e.Client)
	return e.Retry.Do(ctx, "microsoft", a, func(ctx context.Context, _ time.Time) execute.Answer {
		tok, err := e.token(ctx, client, c.scope)
		if err != nil {
			var perm permanentError
			if errors.As(err, &perm) {
				return execute.Answer{Status: perm.status, Msg: perm.msg}
			}
			return execute.Answer{Err: err}
		}
		ans := e.send(ctx, client, c, body, tok, a.IdempotencyKey)
		if ans.Status == http.StatusBadRequest && strings.Contains(ans.Msg, "ActiveRequestAlreadyExists") {
			ans.Done = true // the same machine action is already under way
		}
		if ans.Status == http.StatusUnauthorized {
			e.forget(c.scope) // a revoked or expired token: fetch a new one next time
			ans.Status = http.StatusServiceUnavailable
		}
		return ans
	})
}

// send makes the call. A DELETE of indicators by filter is two steps, as
// the API deletes by indicator id only: list the indicators of the value,
// then delete each (none left is done).
func (e *Executor) send(ctx context.Context, client *http.Client, c call, body []byte, tok, requestID string) execute.Answer {
	do := func(method, u string, body []byte) (execute.Answer, []byte) {
		req, err := http.NewRequestWithContext(ctx, method, u, bytes.NewReader(body))
		if err != nil {
			return execute.Answer{Err: err}, nil
		}
		req.Header.Set("Authorization", "Bearer "+tok)
		if body != nil {
			req.Header.Set("Content-Type", "application/json")
		}
		// Graph and Defender log it: the request of every attempt of one
		// action carries the same id, for support and audit.
		req.Header.Set("client-request-id", requestID)
		if method != http.MethodGet {
			return execute.Send(client, req), nil
		}
		resp, err := client.Do(req)
		if err != nil {
			return execute.Answer{Err: err}, nil
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(io.LimitReader(resp.Body, 4<<20))
		if err != nil {
			return execute.Answer{Err: err}, nil
		}
		return execute.Answer{Status: resp.StatusCode, Msg: strings.TrimSpace(string(b[:min(len(b), 512)]))}, b
	}
	base, _, lookup := strings.Cut(c.url, "?")
	if c.method != http.MethodDelete || !lookup {
		ans, _ := do(c.method, c.url, body)
		return ans
	}
	ans, list := do(http.MethodGet, c.url, nil)
	if ans.Err != nil || ans.Status != http.StatusOK {
		return ans
	}
	var found struct {
		Value []struct {
			ID json.RawMessage `json:"id"`
		} `json:"value"`
	}
	if err := json.Unmarshal(list, &found); err != nil {
		return execute.Answer{Status: http.StatusBadGateway, Msg: "indicators list: " + err.Error()}
	}
	for _, v := range found.Value {
		id := strings.Trim(string(v.ID), `"`)
		ans, _ = do(http.MethodDelete, base+"/"+url.PathEscape(id), nil)
		switch {
		case ans.Status == http.StatusNotFound:
			continue // gone meanwhile
		case ans.Err != nil || ans.Status < 200 || ans.Status >= 300:
			return ans // tried again: the list is read anew
		}
	}
	return execute.Answer{Status: http.StatusNoContent, Done: true}
}

// request builds the API call of an action.
func (e *Executor) request(a *respond.Action) (call, error) {
	mde := base(e.DefenderURL, DefaultDefenderURL)
	graph := base(e.GraphURL, DefaultGraphURL) + "/v1.0"
	t := a.Target
	comment := fmt.Sprintf("stitch %s: %s (incident %s)", a.ID, a.Reason, a.IncidentID)
	machine := func(verb string, body map[string]any) (call, error) {
		if t.DeviceID == "" {
			return call{}, fmt.Errorf("%s needs the device's Defender machine id (device %q has none)", a.Type, t.DeviceName)
		}
		body["Comment"] = comment
		return call{defenderScope, http.MethodPost, mde + "/api/machines/" + url.PathEscape(t.DeviceID) + "/" + verb, body}, nil
	}
	user := func() (string, error) {
		switch {
		case t.AccountObjectID != "":
			return t.AccountObjectID, nil
		case t.UPN != "":
			return t.UPN, nil
		}
		return "", fmt.Errorf("%s needs the account's object id or UPN (Graph does not take a SID)", a.Type)
	}
	switch a.Type {
	case respond.IsolateDevice:
		return machine("isolate", map[string]any{"IsolationType": "Full"})
	case respond.ReleaseDevice:
		return machine("unisolate", map[string]any{})
	case respond.CollectInvestigationPackage:
		return machine("collectInvestigationPackage", map[string]any{})
	case respond.RunAntivirusScan:
		return machine("runAntiVirusScan", map[string]any{"ScanType": "Quick"})
	case respond.RestrictAppExecution:
		return machine("restrictCodeExecution", map[string]any{})
	case respond.RemoveAppRestriction:
		return machine("unrestrictCodeExecution", map[string]any{})
	case respond.UnblockIndicator:
		if t.Indicator == "" {
			return call{}, fmt.Errorf("%s needs the indicator", a.Type)
		}
		q := url.Values{"$filter": {"indicatorValue eq '" + strings.ReplaceAll(t.Indicator, "'", "''") + "'"}}
		return call{defenderScope, http.MethodDelete, mde + "/api/indicators?" + q.Encode(), nil}, nil
	case respond.StopAndQuarantineFile:
		if t.SHA1 == "" {
			return call{}, fmt.Errorf("%s needs the file's SHA-1, which Defender's API requires (the action has SHA-256 %q only)", a.Type, t.SHA256)
		}
		return machine("StopAndQuarantineFile", map[string]any{"Sha1": t.SHA1})
	case respond.BlockIndicator:
		if t.Indicator == "" || t.IndicatorType == "" {
			return call{}, fmt.Errorf("%s needs an indicator and its type", a.Type)
		}
		action := "Block"
		if strings.HasPrefix(t.IndicatorType, "File") {
			action = "BlockAndRemediate"
		}
		return call{defenderScope, http.MethodPost, mde + "/api/indicators", map[string]any{
			"indicatorValue": t.Indicator, "indicatorType": t.IndicatorType, "action": action,
			"title": "stitch: " + a.Reason, "description": comment, "severity": "High", "generateAlert": true,
		}}, nil
	case respond.DisableUser, respond.ForcePasswordReset, respond.RevokeSessions:
		id, err := user()
		if err != nil {
			return call{}, err
		}
		u := graph + "/users/" + url.PathEscape(id)
		switch a.Type {
		case respond.DisableUser:
			return call{graphScope, http.MethodPatch, u, map[string]any{"accountEnabled": false}}, nil
		case respond.ForcePasswordReset:
			return call{graphScope, http.MethodPatch, u, map[string]any{"passwordProfile": map[string]any{"forceChangePasswordNextSignIn": true}}}, nil
		}
		return call{graphScope, http.MethodPost, u + "/revokeSignInSessions", nil}, nil
	case respond.MarkUserCompromised:
		if t.AccountObjectID == "" {
			return call{}, fmt.Errorf("%s needs the account's object id (Graph's riskyUsers takes no UPN)", a.Type)
		}
		return call{graphScope, http.MethodPost, graph + "/identityProtection/riskyUsers/confirmCompromised",
			map[string]any{"userIds": []string{t.AccountObjectID}}}, nil
	case respond.SoftDeleteEmail:
		if t.NetworkMessageID == "" || t.Recipient == "" {
			return call{}, fmt.Errorf("%s needs a network message id and a recipient", a.Type)
		}
		return call{graphScope, http.MethodPost, graph + "/security/collaboration/analyzedEmails/remediate", map[string]any{
			"displayName": "stitch " + a.ID, "description": comment, "severity": "high", "action": "softDelete",
			"remediateSendersCopy": false,
			"analyzedEmails":       []map[string]string{{"networkMessageId": t.NetworkMessageID, "recipientEmailAddress": t.Recipient}},
		}}, nil
	}
	return call{}, fmt.Errorf("no Microsoft API carries out %s", a.Type)
}

func base(u, def string) string {
	if u == "" {
		u = def
	}
	return strings.TrimRight(u, "/")
}

// permanentError is a token request the identity platform refused (bad
// credentials, a missing consent): retrying cannot help.
type permanentError struct {
	status int
	msg    string
}

func (p permanentError) Error() string { return fmt.Sprintf("HTTP %d: %s", p.status, p.msg) }

// token is a cached access token for scope, fetched with the client
// credentials grant when absent or within a minute of expiry.
func (e *Executor) token(ctx context.Context, client *http.Client, scope string) (string, error) {
	e.mu.Lock()
	t, ok := e.tokens[scope]
	e.mu.Unlock()
	if ok && time.Until(t.expires) > time.Minute {
		return t.value, nil
	}
	c := e.Credentials
	if c.TenantID == "" || c.ClientID == "" || c.ClientSecret == "" {
		return "", permanentError{http.StatusUnauthorized, "no credentials: set " + EnvTenantID + ", " + EnvClientID + " and " + EnvClientSecret}
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
		e.tokens = map[string]token{}
	}
	e.tokens[scope] = token{got.AccessToken, time.Now().Add(time.Duration(got.ExpiresIn) * time.Second)}
	e.mu.Unlock()
	return got.AccessToken, nil
}

func (e *Executor) forget(scope string) {
	e.mu.Lock()
	delete(e.tokens, scope)
	e.mu.Unlock()
}
