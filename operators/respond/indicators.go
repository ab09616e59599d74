package respond

import (
	"fmt"
	"strings"
	"time"

	"github.com/stitch-xdr/stitch/state"
)

// Indicator is an operator's custom indicator (stitch indicators add), as
// the indicators topic carries it: a file hash that stitch blocks on sight
// until it expires, as Defender's custom indicators work. Removed withdraws
// it. Matching starts at Time and ends at Expires (zero: never), by the
// event time of what is seen.
type Indicator struct {
	TenantID string    `json:"tenantId"`
	Type     string    `json:"indicatorType"` // FileSha256 or FileSha1
	Value    string    `json:"indicatorValue"`
	By       string    `json:"by"`
	Comment  string    `json:"comment,omitempty"`
	Time     time.Time `json:"time"`
	Expires  time.Time `json:"expirationDateTime,omitzero"`
	Removed  bool      `json:"removed,omitempty"`
}

// indicatorPlaybook names indicator blocks where a playbook would be.
const indicatorPlaybook = "indicator"

// ID is the indicator's id: one per tenant, type and value.
func (in *Indicator) ID() string {
	return "ind-" + ActionID(in.TenantID, "", in.Type, strings.ToLower(in.Value))[4:]
}

// Validate says what is wrong with an indicator, if anything.
func (in *Indicator) Validate() error {
	switch {
	case !state.ValidTenant(in.TenantID):
		return fmt.Errorf("an indicator needs a tenant")
	case in.Type != IndicatorSHA256 && in.Type != IndicatorSHA1:
		return fmt.Errorf("indicator type %q: stitch matches %s and %s indicators", in.Type, IndicatorSHA256, IndicatorSHA1)
	case in.Type == IndicatorSHA256 && !hexOf(in.Value, 64), in.Type == IndicatorSHA1 && !hexOf(in.Value, 40):
		return fmt.Errorf("%q is not a %s", in.Value, in.Type)
	case in.By == "":
		return fmt.Errorf("an indicator needs who set it (--by)")
	case !in.Expires.IsZero() && !in.Expires.After(in.Time):
		return fmt.Errorf("the indicator expires (%s) before it starts (%s)", in.Expires.Format(time.RFC3339), in.Time.Format(time.RFC3339))
	}
	return nil
}

func hexOf(s string, n int) bool {
	return len(s) == n && strings.Trim(strings.ToLower(s), "0123456789abcdef") == ""
}

// indicator applies an indicator record: a file hash blocked on sight for
// the indicator (its copies retained so far and to come get
// SoftDeleteEmail and StopAndQuarantineFile, until it expires), or the
// block withdrawn.
func (r *Responder) indicator(res *Result, in *Indicator) error {
	if err := in.Validate(); err != nil {
		res.Problems = append(res.Problems, Problem{Type: "indicator", Error: err.Error()})
		return nil
	}
	hash := strings.ToLower(in.Value)
	incident := in.ID() // the actions of an indicator are linked to it, not to an incident
	key := state.AppendString(state.AppendString(hashKey(spaceBlock, in.TenantID, hash), incident), indicatorPlaybook)
	if in.Removed {
		return r.store.Delete(key)
	}
	reason := fmt.Sprintf("custom indicator set by %s", in.By)
	if in.Comment != "" {
		reason += " (" + in.Comment + ")"
	}
	b := Block{Hash: hash, Incident: incident, Playbook: indicatorPlaybook, Reason: reason, Alerts: []string{},
		Types: []string{SoftDeleteEmail, StopAndQuarantineFile}, Time: in.Time, Last: in.Time, Expires: in.Expires,
		IsSHA1: in.Type == IndicatorSHA1}
	var cur Block
	if ok, err := r.get(key, &cur); err != nil || ok && cur.Expires.Equal(b.Expires) && cur.Reason == b.Reason && cur.Time.Equal(b.Time) {
		return err // the same indicator again
	}
	// Set again (a new expiry, a new comment): the new record replaces it.
	if err := r.store.Delete(key); err != nil {
		return err
	}
	if err := r.block(res, in.TenantID, &b); err != nil {
		return err
	}
	// The indicator itself, for executors to push to the products.
	d := decision{tenant: in.TenantID, incident: incident, typ: BlockIndicator, playbook: indicatorPlaybook,
		created: in.Time, updated: in.Time, target: Target{Indicator: hash, IndicatorType: in.Type}}
	return r.upsert(res, &d, reason)
}

// live says whether a block matches what was seen at t: not expired then.
func (b *Block) live(t time.Time) bool { return b.Expires.IsZero() || t.Before(b.Expires) }
