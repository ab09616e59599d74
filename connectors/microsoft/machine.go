package microsoft

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/stitch-xdr/stitch/connectors/execute"
	"github.com/stitch-xdr/stitch/operators/respond"
)

// Statuses of a Defender machine action.
const (
	MachinePending    = "Pending"
	MachineInProgress = "InProgress"
	MachineSucceeded  = "Succeeded"
	MachineFailed     = "Failed"
	MachineTimeOut    = "TimeOut"
	MachineCancelled  = "Cancelled"
)

// machineAction is what Defender answers about a machine action (the
// MachineAction resource type). Times stay strings: they are only
// compared, and their precision varies.
type machineAction struct {
	ID                    string `json:"id"`
	Type                  string `json:"type"`
	Status                string `json:"status"`
	MachineID             string `json:"machineId"`
	Requestor             string `json:"requestor"`
	RequestorComment      string `json:"requestorComment"`
	CancellationRequestor string `json:"cancellationRequestor"`
	CancellationComment   string `json:"cancellationComment"`
	Created               string `json:"creationDateTimeUtc"`
	LastUpdate            string `json:"lastUpdateDateTimeUtc"`
	RelatedFileInfo       *struct {
		FileIdentifier     string `json:"fileIdentifier"`
		FileIdentifierType string `json:"fileIdentifierType"`
	} `json:"relatedFileInfo"`
}

func active(status string) bool { return status == MachinePending || status == MachineInProgress }

// startMachine posts a machine action, unless one of this stitch action is
// there already, and reports it sent with its id (or how it ended, when it
// already did). Each attempt looks first, so that an attempt retried after
// an answer that never came does not start it twice.
func (e *Executor) startMachine(ctx context.Context, a *respond.Action, creds Credentials, c call, body []byte) (execute.Report, error) {
	client := execute.Client(e.Client)
	var got *machineAction
	out, err := e.Retry.Do(ctx, name, a, func(ctx context.Context, _ time.Time) execute.Answer {
		tok, ans := e.tokenAnswer(ctx, client, creds, c.scope)
		if tok == "" {
			return ans
		}
		list, ans := e.machineActions(ctx, client, creds, tok, c, a.IdempotencyKey)
		if !ans.OK() {
			return ans
		}
		if got = newest(list, func(m *machineAction) bool { return strings.HasPrefix(m.RequestorComment, commentPrefix(a.ID)) }); got != nil {
			return execute.Answer{Status: http.StatusOK, Done: true} // started before: follow it
		}
		ans, b := e.do(ctx, client, c.method, c.url, body, tok, a.IdempotencyKey)
		switch {
		case ans.OK():
			var m machineAction
			if err := json.Unmarshal(b, &m); err != nil || m.ID == "" {
				// Tried again: the look before the post finds it if
				// Defender did start it.
				return execute.Answer{Status: http.StatusBadGateway, Msg: fmt.Sprintf("Defender answered HTTP %d without a machine action id (%v): %s", ans.Status, err, ans.Msg)}
			}
			got = &m
		case ans.Status == http.StatusBadRequest && strings.Contains(ans.Msg, "ActiveRequestAlreadyExists"):
			// The same kind of action is under way on the device: its
			// outcome is this action's.
			list, lans := e.machineActions(ctx, client, creds, tok, c, a.IdempotencyKey)
			if !lans.OK() {
				return lans
			}
			if got = newest(list, func(m *machineAction) bool { return active(m.Status) && sameFile(m, c) }); got == nil {
				return execute.Answer{Status: http.StatusServiceUnavailable, Msg: "Defender answered ActiveRequestAlreadyExists but lists no active " + c.machine + " action on the device: " + ans.Msg}
			}
		case ans.Status == http.StatusUnauthorized:
			e.forget(creds, c.scope)
			ans.Status = http.StatusServiceUnavailable
			return ans
		default:
			return ans
		}
		return execute.Answer{Status: http.StatusCreated, Done: true}
	})
	if err != nil || out.Status != respond.StatusSucceeded || got == nil {
		return execute.Report{Outcome: out}, err
	}
	p := execute.Pending{TenantID: a.TenantID, ActionID: a.ID, Type: a.Type, IdempotencyKey: a.IdempotencyKey, ExternalID: got.ID, Sent: out.Time}
	return e.judge(&p, got, out.Time), nil
}

// machineActions lists the machine actions of c's type on c's device.
func (e *Executor) machineActions(ctx context.Context, client *http.Client, creds Credentials, tok string, c call, requestID string) ([]machineAction, execute.Answer) {
	q := url.Values{"$filter": {"machineId eq " + odataString(c.device) + " and type eq " + odataString(c.machine)}}
	u := base(e.DefenderURL, DefaultDefenderURL) + "/api/machineactions?" + q.Encode()
	ans, b := e.do(ctx, client, http.MethodGet, u, nil, tok, requestID)
	if ans.Status == http.StatusUnauthorized {
		e.forget(creds, c.scope)
		ans.Status = http.StatusServiceUnavailable
	}
	if !ans.OK() {
		return nil, ans
	}
	var list struct {
		Value []machineAction `json:"value"`
	}
	if err := json.Unmarshal(b, &list); err != nil {
		return nil, execute.Answer{Status: http.StatusBadGateway, Msg: "machine actions list: " + err.Error()}
	}
	return list.Value, ans
}

// newest is the most recently created machine action that ok accepts.
func newest(list []machineAction, ok func(*machineAction) bool) *machineAction {
	var best *machineAction
	for i := range list {
		if m := &list[i]; m.ID != "" && ok(m) && (best == nil || m.Created > best.Created) {
			best = m
		}
	}
	return best
}

// sameFile says whether m may be the machine action of c: for
// StopAndQuarantineFile, one of the same file (when Defender says which).
func sameFile(m *machineAction, c call) bool {
	return c.sha1 == "" || m.RelatedFileInfo == nil || m.RelatedFileInfo.FileIdentifier == "" ||
		strings.EqualFold(m.RelatedFileInfo.FileIdentifier, c.sha1)
}

// judge is the report of a followed machine action Defender answered m
// about at now: final once it ended, else sent (failed past the timeout).
func (e *Executor) judge(p *execute.Pending, m *machineAction, now time.Time) execute.Report {
	rep := execute.Report{Outcome: respond.Outcome{TenantID: p.TenantID, ActionID: p.ActionID, Executor: name, Time: now.UTC()}, ExternalID: p.ExternalID}
	if m.ID != "" {
		rep.ExternalID, p.ExternalID = m.ID, m.ID
	}
	p.Status = m.Status
	what := fmt.Sprintf("Defender machine action %s (%s)", rep.ExternalID, cmpOr(m.Type, p.Type))
	switch m.Status {
	case MachineSucceeded:
		rep.Status = respond.StatusSucceeded
	case MachineFailed, MachineTimeOut:
		rep.Status, rep.Error = respond.StatusFailed, what+" ended "+m.Status
	case MachineCancelled:
		rep.Status, rep.Error = respond.StatusFailed, what+" was cancelled"
		if m.CancellationRequestor != "" {
			rep.Error += " by " + m.CancellationRequestor
		}
		if m.CancellationComment != "" {
			rep.Error += ": " + m.CancellationComment
		}
	default:
		rep.Status = respond.StatusSent
		if e.Follow.Expired(p.Sent, now) {
			rep.Status = respond.StatusFailed
			rep.Error = fmt.Sprintf("%s still %s %s after it was sent: stitch stopped following it (it may still run in Defender)",
				what, cmpOr(m.Status, "unknown"), e.Follow.TimeoutOf())
		}
	}
	return rep
}

func cmpOr(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

// Poll looks once at the machine action of a sent action: sent while
// Defender says it is Pending or InProgress (or cannot say now), succeeded
// or failed (with Defender's status, and who cancelled it and why) once it
// ended, failed when it is still unfinished past Follow.Timeout or when
// Defender does not know it. p.Status is Defender's status when last seen.
// Only a done ctx is an error.
func (e *Executor) Poll(ctx context.Context, p *execute.Pending, now time.Time) (execute.Report, error) {
	rep := execute.Report{Outcome: respond.Outcome{TenantID: p.TenantID, ActionID: p.ActionID, Executor: name, Time: now.UTC()}, ExternalID: p.ExternalID}
	fail := func(reason string) (execute.Report, error) {
		rep.Status = respond.StatusFailed
		rep.Error = fmt.Sprintf("following Defender machine action %s: %s", p.ExternalID, reason)
		return rep, nil
	}
	transient := func(reason string) (execute.Report, error) {
		if err := ctx.Err(); err != nil {
			return rep, err
		}
		if e.Follow.Expired(p.Sent, now) {
			return fail(fmt.Sprintf("still %s %s after it was sent, and the last look failed: %s (it may still run in Defender)", cmpOr(p.Status, "unknown"), e.Follow.TimeoutOf(), reason))
		}
		rep.Status, rep.Error = respond.StatusSent, ""
		return rep, nil
	}
	creds, err := e.credentials(p.TenantID)
	if err != nil {
		return fail(err.Error())
	}
	client := execute.Client(e.Client)
	tok, err := e.token(ctx, client, creds, defenderScope)
	if err != nil {
		if perm := (permanentError{}); errors.As(err, &perm) {
			return fail(perm.Error())
		}
		return transient(err.Error())
	}
	u := base(e.DefenderURL, DefaultDefenderURL) + "/api/machineactions/" + url.PathEscape(p.ExternalID)
	ans, b := e.do(ctx, client, http.MethodGet, u, nil, tok, p.IdempotencyKey)
	switch {
	case ans.Err != nil:
		return transient(ans.Reason())
	case ans.Status == http.StatusUnauthorized:
		e.forget(creds, defenderScope)
		return transient(ans.Reason())
	case ans.Status == http.StatusNotFound:
		return fail("Defender has no such machine action: " + ans.Reason())
	case execute.Permanent(ans.Status):
		return fail(ans.Reason())
	case !ans.OK():
		return transient(ans.Reason())
	}
	var m machineAction
	if err := json.Unmarshal(b, &m); err != nil {
		return transient("an answer that is not a machine action: " + err.Error())
	}
	if m.ID != "" && !strings.EqualFold(m.ID, p.ExternalID) {
		return fail(fmt.Sprintf("Defender answered about machine action %s instead", m.ID))
	}
	return e.judge(p, &m, now), nil
}

// Resume finds the machine action of a sent action that nothing recorded
// as followed (a follower that lost its state): reported as Start would,
// with ok false when the action is not a machine action or Defender lists
// none of it (another executor sent it), or when Defender could not be
// asked (the reason in Error). Nothing is ever posted. Only a done ctx is
// an error.
func (e *Executor) Resume(ctx context.Context, a *respond.Action) (rep execute.Report, ok bool, err error) {
	c, err := e.request(a)
	if err != nil || c.machine == "" {
		return rep, false, nil
	}
	creds, err := e.credentials(a.TenantID)
	if err != nil {
		rep.Error = err.Error()
		return rep, false, nil
	}
	client := execute.Client(e.Client)
	var got *machineAction
	ans, err := e.Retry.Try(ctx, func(ctx context.Context, _ time.Time) execute.Answer {
		tok, ans := e.tokenAnswer(ctx, client, creds, c.scope)
		if tok == "" {
			return ans
		}
		list, ans := e.machineActions(ctx, client, creds, tok, c, a.IdempotencyKey)
		got = newest(list, func(m *machineAction) bool { return strings.HasPrefix(m.RequestorComment, commentPrefix(a.ID)) })
		return ans
	})
	switch {
	case err != nil:
		return rep, false, err
	case !ans.OK():
		rep.Error = "looking for the machine action of sent action " + a.ID + ": " + ans.Reason()
		return rep, false, nil
	case got == nil:
		return rep, false, nil
	}
	now := e.now()
	p := execute.Pending{TenantID: a.TenantID, ActionID: a.ID, Type: a.Type, IdempotencyKey: a.IdempotencyKey, ExternalID: got.ID, Sent: now}
	return e.judge(&p, got, now), true, nil
}
