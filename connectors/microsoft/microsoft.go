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
// Indicators and Graph calls end when they are answered. A machine action
// does not: Defender accepts it (HTTP 201, the machine action with its id)
// and the device carries it out later, seconds later or, offline, days
// later. Such an action is reported sent with the machine action's id
// (execute.Report.ExternalID) and followed with
//
//	GET {mde}/api/machineactions/{id}
//
// (Poll), with backoff (execute.Follow), until its status is Succeeded
// (succeeded) or Failed, TimeOut or Cancelled (failed, with that reason),
// or the follow timeout passes (failed: still Pending or InProgress).
//
// Calling twice never acts twice: Graph's user updates, session revocation
// and risk confirmation are idempotent, an indicator is created or updated
// by its value, and a machine action is posted only after
//
//	GET {mde}/api/machineactions?$filter=machineId eq '{id}' and type eq '{type}'
//
// found none of this stitch action (its Comment starts "stitch <action id>:"),
// so that an attempt retried after an answer that never came, or a run that
// stopped between the call and recording it, follows the machine action it
// already started. When Defender answers ActiveRequestAlreadyExists (the
// same kind of action is under way on the device), that one is followed.
//
// Credentials are per stitch tenant (Executor.Tenants, an Entra ID
// application in the customer's directory), else the default set (the
// AZURE_* environment); a tenant with neither fails its actions with that
// reason. Tokens are cached per application and API.
package microsoft

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
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

// name is the executor's name in outcomes.
const name = "microsoft"

// Executor calls Defender for Endpoint and Graph.
type Executor struct {
	// Credentials act for every stitch tenant not in Tenants (the AZURE_*
	// environment); incomplete: none, and such a tenant's actions fail.
	Credentials Credentials
	// Tenants are the Entra ID applications of single stitch tenants, by
	// stitch tenant id.
	Tenants map[string]Credentials
	// DefenderURL, GraphURL and LoginURL are the services' base URLs
	// (empty: the public cloud's).
	DefenderURL, GraphURL, LoginURL string
	Client                          *http.Client
	// Retry is the policy of each call; Follow that of looking at a sent
	// machine action again.
	Retry  execute.Retry
	Follow execute.Follow

	mu     sync.Mutex
	tokens map[tokenKey]token
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
	// machine is the type of the machine action the call starts (Isolate,
	// StopAndQuarantineFile, ...), on device; empty: the call ends when it
	// is answered.
	machine, device, sha1 string
}

// Execute carries out an approved action and waits until it ended: a
// machine action is followed (Poll, sleeping per Follow) until Defender
// says it ended or the follow timeout passed. A caller that keeps state
// across restarts uses Start and Poll instead, so as not to wait in one
// call. Only a done ctx is an error.
func (e *Executor) Execute(ctx context.Context, a *respond.Action) (respond.Outcome, error) {
	rep, err := e.Start(ctx, a)
	if err != nil || rep.Final() {
		return rep.Outcome, err
	}
	p := execute.PendingOf(a, rep)
	for n := 0; ; n++ {
		if err := e.Retry.Wait(ctx, e.Follow.Wait(n)); err != nil {
			return rep.Outcome, err
		}
		if rep, err = e.Poll(ctx, &p, e.now()); err != nil || rep.Final() {
			return rep.Outcome, err
		}
	}
}

// Start carries out an approved action (see execute.Retry.Do for how a
// call's outcome is decided). A machine action Defender took on comes back
// sent, with its id in ExternalID, to be followed with Poll; every other
// outcome is final. An action that no API call can express (a device
// action without a device id, a file without a SHA-1, which Defender's
// StopAndQuarantineFile requires), or of a tenant without credentials,
// fails at once with the reason. Only a done ctx is an error.
func (e *Executor) Start(ctx context.Context, a *respond.Action) (execute.Report, error) {
	if a.Status != respond.StatusApproved {
		return execute.Report{}, fmt.Errorf("%s: action %s is %s, not approved", name, a.ID, a.Status)
	}
	c, err := e.request(a)
	var body []byte
	if err == nil && c.body != nil {
		body, err = json.Marshal(c.body)
	}
	var creds Credentials
	if err == nil {
		creds, err = e.credentials(a.TenantID)
	}
	if err != nil {
		return execute.Report{Outcome: e.Retry.Failed(name, a, err.Error())}, nil
	}
	if c.machine != "" {
		return e.startMachine(ctx, a, creds, c, body)
	}
	client := execute.Client(e.Client)
	out, err := e.Retry.Do(ctx, name, a, func(ctx context.Context, _ time.Time) execute.Answer {
		tok, ans := e.tokenAnswer(ctx, client, creds, c.scope)
		if tok == "" {
			return ans
		}
		ans = e.send(ctx, client, c, body, tok, a.IdempotencyKey)
		if ans.Status == http.StatusUnauthorized {
			e.forget(creds, c.scope) // a revoked or expired token: fetch a new one next time
			ans.Status = http.StatusServiceUnavailable
		}
		return ans
	})
	return execute.Report{Outcome: out}, err
}

func (e *Executor) now() time.Time {
	if e.Retry.Now != nil {
		return e.Retry.Now()
	}
	return time.Now()
}

// do makes one request and reads its answer: the status, the start of the
// body (for a reason) and the body (at most 4 MiB).
func (e *Executor) do(ctx context.Context, client *http.Client, method, u string, body []byte, tok, requestID string) (execute.Answer, []byte) {
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
	if requestID != "" {
		req.Header.Set("client-request-id", requestID)
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

// send makes a call that ends when answered. A DELETE of indicators by
// filter is two steps, as the API deletes by indicator id only: list the
// indicators of the value, then delete each (none left is done).
func (e *Executor) send(ctx context.Context, client *http.Client, c call, body []byte, tok, requestID string) execute.Answer {
	base, _, lookup := strings.Cut(c.url, "?")
	if c.method != http.MethodDelete || !lookup {
		ans, _ := e.do(ctx, client, c.method, c.url, body, tok, requestID)
		return ans
	}
	ans, list := e.do(ctx, client, http.MethodGet, c.url, nil, tok, requestID)
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
		ans, _ = e.do(ctx, client, http.MethodDelete, base+"/"+url.PathEscape(id), nil, tok, requestID)
		switch {
		case ans.Status == http.StatusNotFound:
			continue // gone meanwhile
		case ans.Err != nil || ans.Status < 200 || ans.Status >= 300:
			return ans // tried again: the list is read anew
		}
	}
	return execute.Answer{Status: http.StatusNoContent, Done: true}
}

// comment is the Comment of an action's machine action, also how a machine
// action is known for stitch's (commentPrefix).
func comment(a *respond.Action) string {
	return fmt.Sprintf("%s%s (incident %s)", commentPrefix(a.ID), a.Reason, a.IncidentID)
}

func commentPrefix(actionID string) string { return "stitch " + actionID + ": " }

// request builds the API call of an action.
func (e *Executor) request(a *respond.Action) (call, error) {
	mde := base(e.DefenderURL, DefaultDefenderURL)
	graph := base(e.GraphURL, DefaultGraphURL) + "/v1.0"
	t := a.Target
	comment := comment(a)
	machine := func(verb, typ string, body map[string]any) (call, error) {
		if t.DeviceID == "" {
			return call{}, fmt.Errorf("%s needs the device's Defender machine id (device %q has none)", a.Type, t.DeviceName)
		}
		body["Comment"] = comment
		return call{scope: defenderScope, method: http.MethodPost, url: mde + "/api/machines/" + url.PathEscape(t.DeviceID) + "/" + verb, body: body,
			machine: typ, device: t.DeviceID, sha1: t.SHA1}, nil
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
		return machine("isolate", "Isolate", map[string]any{"IsolationType": "Full"})
	case respond.ReleaseDevice:
		return machine("unisolate", "Unisolate", map[string]any{})
	case respond.CollectInvestigationPackage:
		return machine("collectInvestigationPackage", "CollectInvestigationPackage", map[string]any{})
	case respond.RunAntivirusScan:
		return machine("runAntiVirusScan", "RunAntiVirusScan", map[string]any{"ScanType": "Quick"})
	case respond.RestrictAppExecution:
		return machine("restrictCodeExecution", "RestrictCodeExecution", map[string]any{})
	case respond.RemoveAppRestriction:
		return machine("unrestrictCodeExecution", "UnrestrictCodeExecution", map[string]any{})
	case respond.UnblockIndicator:
		if t.Indicator == "" {
			return call{}, fmt.Errorf("%s needs the indicator", a.Type)
		}
		q := url.Values{"$filter": {"indicatorValue eq " + odataString(t.Indicator)}}
		return call{scope: defenderScope, method: http.MethodDelete, url: mde + "/api/indicators?" + q.Encode()}, nil
	case respond.StopAndQuarantineFile:
		if t.SHA1 == "" {
			return call{}, fmt.Errorf("%s needs the file's SHA-1, which Defender's API requires (the action has SHA-256 %q only)", a.Type, t.SHA256)
		}
		return machine("StopAndQuarantineFile", "StopAndQuarantineFile", map[string]any{"Sha1": t.SHA1})
	case respond.BlockIndicator:
		if t.Indicator == "" || t.IndicatorType == "" {
			return call{}, fmt.Errorf("%s needs an indicator and its type", a.Type)
		}
		action := "Block"
		if strings.HasPrefix(t.IndicatorType, "File") {
			action = "BlockAndRemediate"
		}
		return call{scope: defenderScope, method: http.MethodPost, url: mde + "/api/indicators", body: map[string]any{
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
			return call{scope: graphScope, method: http.MethodPatch, url: u, body: map[string]any{"accountEnabled": false}}, nil
		case respond.ForcePasswordReset:
			return call{scope: graphScope, method: http.MethodPatch, url: u, body: map[string]any{"passwordProfile": map[string]any{"forceChangePasswordNextSignIn": true}}}, nil
		}
		return call{scope: graphScope, method: http.MethodPost, url: u + "/revokeSignInSessions"}, nil
	case respond.MarkUserCompromised:
		if t.AccountObjectID == "" {
			return call{}, fmt.Errorf("%s needs the account's object id (Graph's riskyUsers takes no UPN)", a.Type)
		}
		return call{scope: graphScope, method: http.MethodPost, url: graph + "/identityProtection/riskyUsers/confirmCompromised",
			body: map[string]any{"userIds": []string{t.AccountObjectID}}}, nil
	case respond.SoftDeleteEmail:
		if t.NetworkMessageID == "" || t.Recipient == "" {
			return call{}, fmt.Errorf("%s needs a network message id and a recipient", a.Type)
		}
		return call{scope: graphScope, method: http.MethodPost, url: graph + "/security/collaboration/analyzedEmails/remediate", body: map[string]any{
			"displayName": "stitch " + a.ID, "description": comment, "severity": "high", "action": "softDelete",
			"remediateSendersCopy": false,
			"analyzedEmails":       []map[string]string{{"networkMessageId": t.NetworkMessageID, "recipientEmailAddress": t.Recipient}},
		}}, nil
	}
	return call{}, fmt.Errorf("no Microsoft API carries out %s", a.Type)
}

// odataString is s as an OData string literal.
func odataString(s string) string { return "'" + strings.ReplaceAll(s, "'", "''") + "'" }

func base(u, def string) string {
	if u == "" {
		u = def
	}
	return strings.TrimRight(u, "/")
}
