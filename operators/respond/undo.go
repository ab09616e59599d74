package respond

import (
	"fmt"
	"slices"
	"strings"

	"github.com/stitch-xdr/stitch/state"
)

// Undo: an analyst takes back an action that was carried out (or approved
// to be), for the action types that can be reversed: a released device, a
// lifted app restriction, an unblocked indicator. The undo is a decision
// record like an approval (stitch actions undo): it is appended to the
// original action's approvals, whose history is never edited, and it
// decides the reversing action, approved at once by the analyst who asked,
// on the same target and linked to the same incident, so that executors
// carry it out and the ledger keeps it exactly once. Undoing a
// BlockIndicator of a file or an address also ends its block on sight for
// that incident.

// DecisionUndo is the decision of `stitch actions undo`.
const DecisionUndo = "undo"

// Reversing action types.
const (
	UnblockIndicator     = "UnblockIndicator"
	RemoveAppRestriction = "RemoveAppRestriction"
)

// Reverses maps each reversible action type to the type that undoes it.
var Reverses = map[string]string{
	IsolateDevice:        ReleaseDevice,
	RestrictAppExecution: RemoveAppRestriction,
	BlockIndicator:       UnblockIndicator,
}

// undo applies an undo decision.
func (r *Responder) undo(res *Result, d *Decision) error {
	problem := func(format string, args ...any) error {
		res.Problems = append(res.Problems, Problem{Type: "undo", Error: fmt.Sprintf(format, args...)})
		return nil
	}
	key := append(state.TenantKey(nil, spaceAction, d.TenantID), d.ActionID...)
	var a Action
	ok, err := r.get(key, &a)
	switch {
	case err != nil:
		return err
	case !ok:
		return problem("undo of action %s: no such action in the ledger of tenant %s", d.ActionID, d.TenantID)
	}
	rev, reversible := Reverses[a.Type]
	if !reversible {
		return problem("action %s is %s, which cannot be undone (reversible: %s)", a.ID, a.Type, strings.Join(ReversibleTypes(), ", "))
	}
	if a.Status != StatusApproved && a.Status != StatusSent && a.Status != StatusSucceeded {
		return problem("action %s is %s: nothing was done to undo (a pending action is rejected instead)", a.ID, a.Status)
	}
	ap := Approval{Decision: DecisionUndo, By: d.By, Comment: d.Comment, Time: d.Time}
	if err := r.update(res, d.TenantID, d.ActionID, "undo", func(a *Action) (bool, error) {
		if slices.Contains(a.Approvals, ap) {
			return false, nil // the same record again
		}
		a.Approvals = append(a.Approvals, ap)
		if d.Time.After(a.LastUpdateDateTime) {
			a.LastUpdateDateTime = d.Time
		}
		return true, nil
	}); err != nil {
		return err
	}
	dec := decision{tenant: a.TenantID, incident: a.IncidentID, typ: rev, playbook: DecisionUndo, alerts: a.Alerts,
		created: d.Time, updated: d.Time, target: a.Target, approvedBy: &Approval{Decision: StatusApproved, By: d.By, Comment: d.Comment, Time: d.Time}}
	if _, err := r.record(res, &dec, "undo of "+a.ID+" asked by "+d.By); err != nil {
		return err
	}
	if a.Type == BlockIndicator && isNetwork(a.Target.IndicatorType) {
		// The address is no longer blocked on sight for this incident.
		return r.unblockNet(a.TenantID, a.Target.IndicatorType, a.Target.Indicator, a.IncidentID)
	}
	if a.Type == BlockIndicator && a.Target.Indicator != "" {
		// The file is no longer blocked on sight for this incident.
		return r.deletePrefix(state.AppendString(hashKey(spaceBlock, a.TenantID, strings.ToLower(a.Target.Indicator)), a.IncidentID))
	}
	return nil
}

// ReversibleTypes are the action types an undo can reverse, sorted.
func ReversibleTypes() []string {
	var out []string
	for t := range Reverses {
		out = append(out, t)
	}
	slices.Sort(out)
	return out
}
