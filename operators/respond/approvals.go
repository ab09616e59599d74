package respond

import (
	"fmt"
	"slices"
	"time"

	"github.com/stitch-xdr/stitch/state"
)

// Decision is an analyst's approval or rejection of an action, as the
// approvals topic carries it (stitch actions approve|reject). It is
// appended to the action's history, which is never edited.
type Decision struct {
	TenantID string    `json:"tenantId"`
	ActionID string    `json:"actionId"`
	Decision string    `json:"decision"` // approved, rejected or undo (undo.go)
	By       string    `json:"by"`
	Comment  string    `json:"comment,omitempty"`
	Time     time.Time `json:"time"`
}

// Outcome is an executor's report on an action (the actions.results
// topic): sent, succeeded or failed, with the reason.
type Outcome struct {
	TenantID string    `json:"tenantId"`
	ActionID string    `json:"actionId"`
	Status   string    `json:"status"` // sent, succeeded or failed
	Executor string    `json:"executor,omitempty"`
	Error    string    `json:"error,omitempty"`
	Time     time.Time `json:"time"`
}

// Validate says what is wrong with a decision, if anything.
func (d *Decision) Validate() error {
	switch {
	case d.Decision != StatusApproved && d.Decision != StatusRejected && d.Decision != DecisionUndo:
		return fmt.Errorf("decision %q is not approved, rejected or undo", d.Decision)
	case d.ActionID == "" || !state.ValidTenant(d.TenantID):
		return fmt.Errorf("a decision needs an action id and its tenant")
	case d.By == "":
		return fmt.Errorf("a decision needs who made it (--by)")
	}
	return nil
}

// final statuses: nothing changes an action after them but a new decision
// of another incident.
func executed(status string) bool {
	return status == StatusSent || status == StatusSucceeded || status == StatusFailed || status == StatusExpired
}

// decide applies an analyst's decision: a pending (or automatically
// approved, not yet sent) action becomes approved or rejected, with the
// decision appended to its approvals. A decision on an unknown action, or
// on one already carried out, changes nothing and is reported.
func (r *Responder) decide(res *Result, d *Decision) error {
	if err := d.Validate(); err != nil {
		res.Problems = append(res.Problems, Problem{Type: "decision", Error: err.Error()})
		return nil
	}
	if d.Decision == DecisionUndo {
		return r.undo(res, d)
	}
	return r.update(res, d.TenantID, d.ActionID, "decision", func(a *Action) (bool, error) {
		ap := Approval{Decision: d.Decision, By: d.By, Comment: d.Comment, Time: d.Time}
		if slices.Contains(a.Approvals, ap) {
			return false, nil // the same record again
		}
		if executed(a.Status) {
			return false, fmt.Errorf("action %s is already %s", a.ID, a.Status)
		}
		a.Approvals = append(a.Approvals, ap)
		a.Status = d.Decision
		if d.Time.After(a.LastUpdateDateTime) {
			a.LastUpdateDateTime = d.Time
		}
		return true, nil
	})
}

// report applies an executor's outcome: an approved action becomes sent,
// then succeeded or failed (with the reason).
func (r *Responder) report(res *Result, o *Outcome) error {
	return r.update(res, o.TenantID, o.ActionID, "result", func(a *Action) (bool, error) {
		switch {
		case o.Status != StatusSent && o.Status != StatusSucceeded && o.Status != StatusFailed:
			return false, fmt.Errorf("result status %q is not sent, succeeded or failed", o.Status)
		case a.Status == o.Status && a.Error == o.Error:
			return false, nil
		case a.Status == StatusSucceeded || a.Status == StatusFailed:
			return false, fmt.Errorf("action %s already %s", a.ID, a.Status)
		case a.Status != StatusApproved && a.Status != StatusSent:
			return false, fmt.Errorf("action %s is %s, not approved: an executor may not act on it", a.ID, a.Status)
		}
		a.Status, a.Error = o.Status, o.Error
		if o.Time.After(a.LastUpdateDateTime) {
			a.LastUpdateDateTime = o.Time
		}
		return true, nil
	})
}

// update changes a recorded action by fn, a new version when fn says so.
func (r *Responder) update(res *Result, tenant, id, what string, fn func(*Action) (bool, error)) error {
	if !state.ValidTenant(tenant) || id == "" {
		res.Problems = append(res.Problems, Problem{Type: what, Error: fmt.Sprintf("%s without a tenant or action id", what)})
		return nil
	}
	key := append(state.TenantKey(nil, spaceAction, tenant), id...)
	var a Action
	ok, err := r.get(key, &a)
	if err != nil {
		return err
	}
	if !ok {
		res.Problems = append(res.Problems, Problem{Type: what, Error: fmt.Sprintf("no action %s in tenant %s", id, tenant)})
		return nil
	}
	changed, err := fn(&a)
	if err != nil {
		res.Problems = append(res.Problems, Problem{Type: what, Incident: a.IncidentID, Error: err.Error()})
		return nil
	}
	if !changed {
		return nil
	}
	a.Version++
	if err := r.put(key, &a); err != nil {
		return err
	}
	res.Actions = append(res.Actions, a)
	return nil
}
