// Package respond decides automated response actions from incidents and
// the telemetry stitch holds, and keeps their ledger: which action was
// decided, on which target, for which incident, with which status. It has
// no Kafka in it: the pipeline's respond stage feeds it signals and
// produces the actions it returns inside the transaction that writes its
// ledger (pipeline/respond_stage.go).
package respond

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"slices"
	"strings"
	"time"
)

// Action types, as Microsoft 365 Defender names its response actions.
const (
	IsolateDevice               = "IsolateDevice"
	ReleaseDevice               = "ReleaseDevice"
	CollectInvestigationPackage = "CollectInvestigationPackage"
	RunAntivirusScan            = "RunAntivirusScan"
	RestrictAppExecution        = "RestrictAppExecution"
	StopAndQuarantineFile       = "StopAndQuarantineFile"
	BlockIndicator              = "BlockIndicator"
	SoftDeleteEmail             = "SoftDeleteEmail"
	DisableUser                 = "DisableUser"
	RevokeSessions              = "RevokeSessions"
	ForcePasswordReset          = "ForcePasswordReset"
	MarkUserCompromised         = "MarkUserCompromised"
)

// PlaybookTypes are the action types a playbook may decide, in a stable
// order.
var PlaybookTypes = []string{IsolateDevice, ReleaseDevice, CollectInvestigationPackage, RunAntivirusScan, RestrictAppExecution,
	StopAndQuarantineFile, BlockIndicator, SoftDeleteEmail, DisableUser, RevokeSessions, ForcePasswordReset, MarkUserCompromised}

// Types are every action type: a playbook's, and those only an undo
// decides (undo.go).
var Types = append(slices.Clip(PlaybookTypes), UnblockIndicator, RemoveAppRestriction)

// Entity types an action acts on (automation scopes name them).
const (
	EntityDevice    = "device"
	EntityFile      = "file"
	EntityMail      = "mail"
	EntityUser      = "user"
	EntityIndicator = "indicator"
)

// EntityType is the kind of target an action type takes.
func EntityType(actionType string) string {
	switch actionType {
	case IsolateDevice, ReleaseDevice, CollectInvestigationPackage, RunAntivirusScan, RestrictAppExecution, RemoveAppRestriction:
		return EntityDevice
	case StopAndQuarantineFile:
		return EntityFile
	case BlockIndicator, UnblockIndicator:
		return EntityIndicator
	case SoftDeleteEmail:
		return EntityMail
	case DisableUser, RevokeSessions, ForcePasswordReset, MarkUserCompromised:
		return EntityUser
	}
	return ""
}

// Statuses of an action.
const (
	StatusPending   = "pending" // awaiting approval (semi), or recommended only (none)
	StatusApproved  = "approved"
	StatusRejected  = "rejected"
	StatusSent      = "sent"
	StatusSucceeded = "succeeded"
	StatusFailed    = "failed"
	StatusExpired   = "expired"
)

// Automation levels, as Microsoft 365 Defender's automation levels.
const (
	LevelFull = "full" // approved at once
	LevelSemi = "semi" // pending until an analyst approves
	LevelNone = "none" // recommended only: pending unless approved
)

// Indicator types of BlockIndicator, as Defender for Endpoint names them.
const (
	IndicatorSHA256 = "FileSha256"
	IndicatorSHA1   = "FileSha1"
	IndicatorIP     = "IpAddress"
	IndicatorURL    = "Url"
	IndicatorDomain = "DomainName"
)

// Target is what an action acts on; which fields are set depends on the
// type (a device, a file on a device, a message copy, an account, an
// indicator).
type Target struct {
	DeviceID         string `json:"deviceId,omitempty"`
	DeviceName       string `json:"deviceName,omitempty"`
	SHA256           string `json:"sha256,omitempty"`
	SHA1             string `json:"sha1,omitempty"`
	NetworkMessageID string `json:"networkMessageId,omitempty"`
	Recipient        string `json:"recipient,omitempty"`
	AccountObjectID  string `json:"accountObjectId,omitempty"`
	UPN              string `json:"upn,omitempty"`
	SID              string `json:"sid,omitempty"`
	Indicator        string `json:"indicator,omitempty"`
	IndicatorType    string `json:"indicatorType,omitempty"`
}

// Key is the target's identity for an action type, or an error saying why
// no action of that type can be built on it (a device action without a
// device id): such an action is reported, never emitted half-filled.
func (t Target) Key(actionType string) (string, error) {
	switch EntityType(actionType) {
	case EntityDevice:
		if t.DeviceID == "" {
			return "", fmt.Errorf("%s needs a device id (device %q has none)", actionType, t.DeviceName)
		}
		return "device:" + strings.ToLower(t.DeviceID), nil
	case EntityFile:
		h := t.hash()
		if t.DeviceID == "" || h == "" {
			return "", fmt.Errorf("%s needs a device id and a file hash (device %q, file %q)", actionType, t.DeviceID+t.DeviceName, h)
		}
		return "device:" + strings.ToLower(t.DeviceID) + "/file:" + h, nil
	case EntityMail:
		if t.NetworkMessageID == "" || t.Recipient == "" {
			return "", fmt.Errorf("%s needs a network message id and a recipient (message %q, recipient %q)", actionType, t.NetworkMessageID, t.Recipient)
		}
		return "mail:" + strings.ToLower(t.NetworkMessageID) + "/" + strings.ToLower(t.Recipient), nil
	case EntityUser:
		switch {
		case t.AccountObjectID != "":
			return "user:oid:" + strings.ToLower(t.AccountObjectID), nil
		case t.SID != "":
			return "user:sid:" + t.SID, nil
		case t.UPN != "":
			return "user:upn:" + strings.ToLower(t.UPN), nil
		}
		return "", fmt.Errorf("%s needs an account object id, SID or UPN", actionType)
	case EntityIndicator:
		if t.Indicator == "" || t.IndicatorType == "" {
			return "", fmt.Errorf("%s needs an indicator and its type", actionType)
		}
		return "indicator:" + t.IndicatorType + ":" + strings.ToLower(t.Indicator), nil
	}
	return "", fmt.Errorf("unknown action type %q", actionType)
}

func (t Target) hash() string {
	if t.SHA256 != "" {
		return strings.ToLower(t.SHA256)
	}
	return strings.ToLower(t.SHA1)
}

// Approval is one decision on an action, appended, never edited.
type Approval struct {
	Decision string    `json:"decision"` // approved or rejected
	By       string    `json:"by"`
	Comment  string    `json:"comment,omitempty"`
	Time     time.Time `json:"time"`
}

// Action is one response action, as the actions topic carries it: every
// change is the full action with a higher version, so a consumer upserts
// by id.
type Action struct {
	ID         string   `json:"id"`
	TenantID   string   `json:"tenantId"`
	Type       string   `json:"type"`
	Target     Target   `json:"target"`
	IncidentID string   `json:"incidentId"`
	Alerts     []string `json:"alerts"`
	// Playbooks are the playbook rules that asked for the action.
	Playbooks []string `json:"playbooks"`
	Reason    string   `json:"reason"`
	// Automation is the level that decided the first status.
	Automation         string     `json:"automation"`
	Status             string     `json:"status"`
	CreatedDateTime    time.Time  `json:"createdDateTime"`
	LastUpdateDateTime time.Time  `json:"lastUpdateDateTime"`
	Approvals          []Approval `json:"approvals"`
	// Error is why an executor failed to carry the action out.
	Error string `json:"error,omitempty"`
	// IdempotencyKey is what executors pass on so that a retried call never
	// acts twice: the same for every version of the action.
	IdempotencyKey string `json:"idempotencyKey"`
	Version        int64  `json:"version"`
}

// ActionID is the id of the action of type on target key for an incident:
// the same decision always gets the same id, so the ledger holds it once.
func ActionID(tenant, incident, actionType, targetKey string) string {
	h := sha256.New()
	for _, s := range []string{tenant, incident, actionType, targetKey} {
		h.Write([]byte(s))
		h.Write([]byte{0})
	}
	return "act-" + hex.EncodeToString(h.Sum(nil)[:12])
}

// RecordKey is the Kafka key of an action's records: its target first,
// then its id, so that every version of one action lands on one partition
// in order and a compacted topic keeps the latest of each action (a key
// of the target alone would let one action's versions replace another's).
func (a *Action) RecordKey() string {
	k, err := a.Target.Key(a.Type)
	if err != nil {
		k = "unknown"
	}
	return k + "/" + a.ID
}

// merge folds a new decision d about the same action into a, and says
// whether anything changed (then a's version grows). The result does not
// depend on the order decisions come in: alerts and playbooks are unions,
// the target's fields are filled where empty, times are the earliest and
// latest, and the reason is that of the first playbook by name.
func (a *Action) merge(d *Action) bool {
	oldTarget := a.Target
	changed := a.Target.fill(d.Target)
	changed = union(&a.Alerts, d.Alerts) || changed
	changed = union(&a.Playbooks, d.Playbooks) || changed
	changed = widen(&a.CreatedDateTime, &a.LastUpdateDateTime, d.CreatedDateTime, d.LastUpdateDateTime) || changed
	if !changed {
		return false
	}
	prefix := strings.TrimSuffix(a.Reason, ": "+Describe(a.Type, oldTarget))
	if d.Playbooks[0] == a.Playbooks[0] {
		prefix = strings.TrimSuffix(d.Reason, ": "+Describe(d.Type, d.Target))
	}
	a.Reason = prefix + ": " + Describe(a.Type, a.Target)
	a.Version++
	return true
}

// fill sets t's empty fields from o, and says whether any was set.
func (t *Target) fill(o Target) bool {
	changed := false
	for _, f := range []struct {
		dst *string
		src string
	}{
		{&t.DeviceID, o.DeviceID}, {&t.DeviceName, o.DeviceName}, {&t.SHA256, o.SHA256}, {&t.SHA1, o.SHA1},
		{&t.NetworkMessageID, o.NetworkMessageID}, {&t.Recipient, o.Recipient}, {&t.AccountObjectID, o.AccountObjectID},
		{&t.UPN, o.UPN}, {&t.SID, o.SID}, {&t.Indicator, o.Indicator}, {&t.IndicatorType, o.IndicatorType},
	} {
		if *f.dst == "" && f.src != "" {
			*f.dst, changed = f.src, true
		}
	}
	return changed
}

// union adds to the sorted set *dst what add has that it lacks, and says
// whether it did.
func union(dst *[]string, add []string) bool {
	changed := false
	for _, v := range add {
		if !slices.Contains(*dst, v) {
			*dst = append(*dst, v)
			changed = true
		}
	}
	slices.Sort(*dst)
	return changed
}

// widen stretches [*first, *last] to cover [f, l], and says whether it did.
func widen(first, last *time.Time, f, l time.Time) bool {
	changed := false
	if f.Before(*first) {
		*first, changed = f, true
	}
	if l.After(*last) {
		*last, changed = l, true
	}
	return changed
}
