package httpapi

import (
	"fmt"
	"net/http"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/stitch-xdr/stitch/internal/auth"
	"github.com/stitch-xdr/stitch/internal/view"
	"github.com/stitch-xdr/stitch/operators/respond"
)

var actionStatuses = []string{respond.StatusPending, respond.StatusApproved, respond.StatusRejected, respond.StatusSent,
	respond.StatusSucceeded, respond.StatusFailed, respond.StatusExpired}

func (a *API) listActions(w http.ResponseWriter, r *http.Request, p *auth.Principal) error {
	var f view.ActionFilter
	var err error
	if f.Statuses, err = list(r, "status", actionStatuses); err != nil {
		return err
	}
	if f.Tenants, err = list(r, "tenant", nil); err != nil {
		return err
	}
	if f.Types, err = list(r, "type", respond.Types); err != nil {
		return err
	}
	if f.Incident = r.URL.Query().Get("incident"); f.Incident != "" {
		if err := checkID("incident", f.Incident); err != nil {
			return err
		}
	}
	pg, err := page(r, 50)
	if err != nil {
		return err
	}
	if pg.Sort != "" {
		return errBadRequest("actions are listed the most recently changed first; sort is not taken")
	}
	res, err := a.View.ListActions(p, f, pg)
	if err != nil {
		return errBadRequest("%v", err)
	}
	return writeJSON(w, http.StatusOK, res)
}

func (a *API) getAction(w http.ResponseWriter, r *http.Request, p *auth.Principal) error {
	act, err := a.action(r, p)
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, map[string]any{"action": act})
}

func (a *API) action(r *http.Request, p *auth.Principal) (view.ActionView, error) {
	id := r.PathValue("id")
	if err := checkID("action id", id); err != nil {
		return view.ActionView{}, err
	}
	act, ok := a.View.Action(p, id)
	if !ok {
		return act, errNotFound("no action %s in your tenants", id)
	}
	return act, nil
}

func (a *API) approve(w http.ResponseWriter, r *http.Request, p *auth.Principal) error {
	return a.decide(w, r, p, respond.StatusApproved)
}

func (a *API) reject(w http.ResponseWriter, r *http.Request, p *auth.Principal) error {
	return a.decide(w, r, p, respond.StatusRejected)
}

// decide records a decision on an action as 'stitch actions approve|reject'
// does: a respond.Decision on the approvals topic, keyed like the action,
// which the respond stage applies and answers with the action's new
// version.
func (a *API) decide(w http.ResponseWriter, r *http.Request, p *auth.Principal, decision string) error {
	act, err := a.action(r, p)
	if err != nil {
		return err
	}
	var body struct {
		Comment string `json:"comment"`
	}
	if err := decodeBody(r, &body, true); err != nil {
		return err
	}
	if len(body.Comment) > maxComment || !utf8.ValidString(body.Comment) {
		return errBadRequest("comment is longer than %d bytes or not UTF-8", maxComment)
	}
	// The respond stage approves only a pending action, and rejects a
	// pending one or one approved but not yet carried out.
	if act.Status != respond.StatusPending && !(decision == respond.StatusRejected && act.Status == respond.StatusApproved) {
		return &apiError{http.StatusConflict, "conflict", fmt.Sprintf("action %s is %s: only a pending action can be %s", act.ID, act.Status, decision)}
	}
	d := respond.Decision{TenantID: act.TenantID, ActionID: act.ID, Decision: decision, By: p.Name, Comment: strings.TrimSpace(body.Comment), Time: time.Now().UTC()}
	if err := d.Validate(); err != nil {
		return errBadRequest("%v", err)
	}
	if err := a.Record(r.Context(), a.Approvals, act.RecordKey(), &d); err != nil {
		return &apiError{http.StatusServiceUnavailable, "unavailable", fmt.Sprintf("record the decision on %s: %v", a.Approvals, err)}
	}
	a.Log.Info("audit: action decided", "action", act.ID, "tenant", act.TenantID, "decision", decision, "by", p.Name)
	return writeJSON(w, http.StatusAccepted, map[string]any{"decision": d, "action": act})
}
