package respond

import (
	"fmt"
	"net/netip"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/stitch-xdr/stitch/state"
)

// Indicator is an operator's custom indicator (stitch indicators add), as
// the indicators topic carries it, as Defender's custom indicators work: a
// file hash that stitch blocks on sight until it expires, or an IP
// address, URL or domain. Each is a BlockIndicator action for executors to
// push to the products; removing it (Removed) is an UnblockIndicator.
// Matching starts at Time and ends at Expires (zero: never), by the event
// time of what is seen. The products enforce network indicators; stitch
// blocks them on sight too (network.go): a device that reaches one, an
// account that clicks one, a message that carries one raise an alert and
// get the playbooks' indicatorActions.
type Indicator struct {
	TenantID string    `json:"tenantId"`
	Type     string    `json:"indicatorType"` // FileSha256, FileSha1, IpAddress, Url or DomainName
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
	return "ind-" + ActionID(in.TenantID, "", in.Type, canonical(in.Type, in.Value))[4:]
}

// Validate says what is wrong with an indicator, if anything.
func (in *Indicator) Validate() error {
	switch {
	case !state.ValidTenant(in.TenantID):
		return fmt.Errorf("an indicator needs a tenant")
	case !slices.Contains(IndicatorTypes, in.Type):
		return fmt.Errorf("indicator type %q: one of %s", in.Type, strings.Join(IndicatorTypes, ", "))
	case !validIndicator(in.Type, in.Value):
		return fmt.Errorf("%q is not a valid %s", in.Value, in.Type)
	case in.By == "":
		return fmt.Errorf("an indicator needs who set it (--by)")
	case !in.Expires.IsZero() && !in.Expires.After(in.Time):
		return fmt.Errorf("the indicator expires (%s) before it starts (%s)", in.Expires.Format(time.RFC3339), in.Time.Format(time.RFC3339))
	}
	return nil
}

// IndicatorTypes are the custom indicator types.
var IndicatorTypes = []string{IndicatorSHA256, IndicatorSHA1, IndicatorIP, IndicatorURL, IndicatorDomain}

// fileIndicator says whether an indicator type is a file hash (blocked on
// sight by stitch, not only by the products).
func fileIndicator(typ string) bool { return typ == IndicatorSHA256 || typ == IndicatorSHA1 }

// validIndicator says whether value is an indicator of type typ.
func validIndicator(typ, value string) bool {
	switch typ {
	case IndicatorSHA256:
		return hexOf(value, 64)
	case IndicatorSHA1:
		return hexOf(value, 40)
	case IndicatorIP:
		_, err := netip.ParseAddr(value)
		return err == nil
	case IndicatorURL:
		u, err := url.Parse(value)
		return err == nil && (u.Scheme == "http" || u.Scheme == "https") && u.Host != "" && len(value) <= 2048
	case IndicatorDomain:
		return domainName.MatchString(value)
	}
	return false
}

// canonical is the form of an indicator's value stitch keys it by: hashes
// and domains in lower case, an IP address as netip writes it, a URL with
// its scheme and host in lower case (its path is case-sensitive).
func canonical(typ, value string) string {
	switch typ {
	case IndicatorIP:
		if a, err := netip.ParseAddr(value); err == nil {
			return a.String()
		}
	case IndicatorURL:
		if u, err := url.Parse(value); err == nil {
			u.Scheme, u.Host = strings.ToLower(u.Scheme), strings.ToLower(u.Host)
			return u.String()
		}
		return value
	}
	return strings.ToLower(value)
}

var domainName = regexp.MustCompile(`^(?i)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}$`)

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
	hash := canonical(in.Type, in.Value)
	incident := in.ID() // the actions of an indicator are linked to it, not to an incident
	key := state.AppendString(state.AppendString(hashKey(spaceBlock, in.TenantID, hash), incident), indicatorPlaybook)
	if !fileIndicator(in.Type) {
		mk, ok := matchKey(in.Type, hash)
		if !ok {
			res.Problems = append(res.Problems, Problem{Type: "indicator", Error: fmt.Sprintf("%q is not a valid %s", in.Value, in.Type)})
			return nil
		}
		key = netBlockKey(in.TenantID, mk, incident, indicatorPlaybook)
	}
	target := Target{Indicator: hash, IndicatorType: in.Type}
	if in.Removed {
		if err := r.store.Delete(key); err != nil {
			return err
		}
		return r.unblock(res, in, incident, target)
	}
	reason := fmt.Sprintf("custom indicator set by %s", in.By)
	if in.Comment != "" {
		reason += " (" + in.Comment + ")"
	}
	b := Block{Hash: hash, Incident: incident, Playbook: indicatorPlaybook, Reason: reason, Alerts: []string{},
		Types: []string{SoftDeleteEmail, StopAndQuarantineFile}, Time: in.Time, Last: in.Time, Expires: in.Expires,
		IsSHA1: in.Type == IndicatorSHA1}
	if !fileIndicator(in.Type) {
		// An address: blocked on sight with the playbooks' indicatorActions
		// (its alerts name it, having no incident to join).
		b.Hash, b.IsSHA1, b.Types, b.Indicator, b.IndicatorType = "", false, r.pb.indicatorActions(), hash, in.Type
		if e, ok := matchKey(in.Type, hash); ok && in.Type != IndicatorDomain {
			b.Entity = e
		}
	}
	var cur Block
	if ok, err := r.get(key, &cur); err != nil || ok && cur.Expires.Equal(b.Expires) && cur.Reason == b.Reason && cur.Time.Equal(b.Time) &&
		slices.Equal(cur.Types, b.Types) {
		return err // the same indicator again
	}
	// Set again (a new expiry, a new comment): the new record replaces it.
	if err := r.store.Delete(key); err != nil {
		return err
	}
	if fileIndicator(in.Type) {
		if err := r.block(res, in.TenantID, &b); err != nil {
			return err
		}
	} else if err := r.put(key, &b); err != nil {
		return err
	}
	// The indicator itself, for executors to push to the products.
	d := decision{tenant: in.TenantID, incident: incident, typ: BlockIndicator, playbook: indicatorPlaybook,
		created: in.Time, updated: in.Time, target: target}
	return r.upsert(res, &d, reason)
}

// unblock decides the UnblockIndicator of a removed indicator, approved by
// whoever removed it, when its BlockIndicator was decided: the products
// that were told to block it are told to stop.
func (r *Responder) unblock(res *Result, in *Indicator, incident string, target Target) error {
	tk, err := target.Key(BlockIndicator)
	if err != nil {
		return err
	}
	var blocked Action
	ok, err := r.get(append(state.TenantKey(nil, spaceAction, in.TenantID), ActionID(in.TenantID, incident, BlockIndicator, tk)...), &blocked)
	if err != nil || !ok {
		return err
	}
	d := decision{tenant: in.TenantID, incident: incident, typ: UnblockIndicator, playbook: indicatorPlaybook,
		created: in.Time, updated: in.Time, target: target, approvedBy: &Approval{Decision: StatusApproved, By: in.By, Comment: in.Comment, Time: in.Time}}
	return r.upsert(res, &d, fmt.Sprintf("custom indicator removed by %s", in.By))
}

// live says whether a block matches what was seen at t: not expired then.
func (b *Block) live(t time.Time) bool { return b.Expires.IsZero() || t.Before(b.Expires) }
