package respond

import (
	"crypto/sha256"
	"encoding/hex"
	"time"

	"github.com/stitch-xdr/stitch/operators/correlate"
)

// Block on sight tells the story too: a blocked file that reaches a new
// mailbox or a device after the block both gets its action and raises an
// alert, which the pipeline sends to the correlator as a product's alert
// (facts on the facts topic). Its evidence names the file and the device
// or message it reached, so it joins the incident of the block through the
// file hash, as Microsoft 365 Defender adds a "blocked on sight" alert to
// the incident that blocked the indicator. The alert's id is derived from
// the action's, so the same sighting raised again (a retried transaction,
// a replay) is the same alert, which the correlator places once. Blocked
// addresses raise theirs too (network.go), with raise.

// Alert source of block-on-sight alerts.
const (
	SightServiceSource   = "stitch"
	SightDetectionSource = "automatedResponse"
)

// Alert is an alert response raises, as correlation facts.
type Alert struct {
	Info     correlate.AlertFact
	Evidence []correlate.EvidenceFact
}

// sighted adds the alert of action a, new for a blocked file seen at t, to
// the result.
func sighted(res *Result, a *Action, b *Block, t time.Time) {
	sum := sha256.Sum256([]byte(a.ID))
	id := "sight-" + hex.EncodeToString(sum[:12])
	tg := a.Target
	hash := fileTarget(b.Hash, b.IsSHA1, "", "")
	file := correlate.Evidence{FileDetails: &correlate.FileDetails{SHA256: hash.SHA256, SHA1: hash.SHA1, FileName: b.FileName}}
	var ents []string
	if e, ok := correlate.FileHash(b.Hash); ok {
		ents = append(ents, e.Key())
	}
	al := Alert{Info: correlate.AlertFact{ID: id, Time: t, Severity: "medium", Category: "Malware",
		ServiceSource: SightServiceSource, DetectionSource: SightDetectionSource}}
	ev := func(odata string, e correlate.Evidence, keys []string) {
		if len(keys) == 0 {
			return
		}
		e.ODataType, e.CreatedDateTime, e.Roles = correlate.GraphEvidenceType(odata), t, []string{}
		al.Evidence = append(al.Evidence, correlate.EvidenceFact{AlertID: id, Time: t, Entities: keys, Evidence: e})
	}
	// The device or message the file reached, by the entities that name it.
	type named struct {
		entity func(string) (correlate.Entity, bool)
		value  string
	}
	var odata string
	var where correlate.Evidence
	var names []named
	switch a.Type {
	case StopAndQuarantineFile:
		al.Info.Title = "Blocked file seen on a device: " + Describe(a.Type, tg)
		odata, where = "device", correlate.Evidence{MdeDeviceID: tg.DeviceID, DeviceDNSName: tg.DeviceName}
		names = []named{{correlate.DeviceID, tg.DeviceID}, {correlate.DeviceName, tg.DeviceName}}
	case SoftDeleteEmail:
		al.Info.Title = "Blocked file delivered again: " + Describe(a.Type, tg)
		odata, where = "mailmessage", correlate.Evidence{NetworkMessageID: tg.NetworkMessageID, PrimaryAddress: tg.Recipient}
		names = []named{{correlate.MailMessage, tg.NetworkMessageID}, {correlate.Mailbox, tg.Recipient}}
	default:
		return
	}
	var keys []string
	for _, n := range names {
		if e, ok := n.entity(n.value); ok {
			keys = append(keys, e.Key())
		}
	}
	ev(odata, where, keys)
	ev("file", file, ents)
	res.Alerts = append(res.Alerts, al)
}

// sightEvidence is one evidence of a block-on-sight alert: its Graph type
// (as advanced hunting names it), its rendering and the entity keys it
// names.
type sightEvidence struct {
	odata string
	ev    correlate.Evidence
	keys  []string
}

// raise adds a block-on-sight alert to the result.
func raise(res *Result, id, title, category string, t time.Time, evs ...sightEvidence) {
	al := Alert{Info: correlate.AlertFact{ID: id, Time: t, Title: title, Severity: "medium", Category: category,
		ServiceSource: SightServiceSource, DetectionSource: SightDetectionSource}}
	for _, e := range evs {
		if len(e.keys) == 0 {
			continue
		}
		e.ev.ODataType, e.ev.CreatedDateTime, e.ev.Roles = correlate.GraphEvidenceType(e.odata), t, []string{}
		al.Evidence = append(al.Evidence, correlate.EvidenceFact{AlertID: id, Time: t, Entities: e.keys, Evidence: e.ev})
	}
	res.Alerts = append(res.Alerts, al)
}
