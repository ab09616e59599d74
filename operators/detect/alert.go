package detect

import (
	"crypto/sha256"
	"encoding/hex"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/stitch-xdr/stitch/operators/correlate"
	"github.com/stitch-xdr/stitch/operators/normalize"
)

// A match becomes an alert in the shape of a product's (an AlertInfo row
// and its AlertEvidence rows, as correlation facts): detectionSource
// customDetection, the rule's title, its level as severity, its ATT&CK tags
// as techniques and tactic, and the entities of the matched row as
// evidence. The alert id is derived from the tenant, the rule, the row's
// main entity and the suppression bucket of the row's time, so one rule
// raises one alert per entity and bucket however often it matches, and a
// match seen again (a retried transaction, another normalize task, a
// restart) yields the same alert, which the correlator places once.

// DetectionSource and ServiceSource of the alerts of custom detections.
const (
	DetectionSource = "customDetection"
	ServiceSource   = "stitch"
)

// Alert is the alert of one match, with the key that suppresses repeats.
type Alert struct {
	// Key is tenant, rule, main entity and bucket: matches with one key
	// are one alert.
	Key      string
	Info     correlate.AlertFact
	Evidence []correlate.EvidenceFact
}

// NewAlert builds the alert of rule r matching row of b, suppressing
// repeats within buckets of width suppress (0: one alert per match time).
func NewAlert(r *Rule, b normalize.Batch, row int, suppress time.Duration) Alert {
	rec := b.Record
	t := normalize.Times(rec, "Timestamp").Value(row)
	get := func(c string) string { return normalize.Strings(rec, c).Value(row) }
	evs, main := evidence(get, t)
	bucket := t.UnixNano()
	if suppress > 0 {
		bucket = t.UnixNano() / int64(suppress)
	}
	key := strings.Join([]string{b.Tenant, r.ID, r.Title, main, strconv.FormatInt(bucket, 10)}, "\x00")
	sum := sha256.Sum256([]byte(key))
	id := "sigma-" + hex.EncodeToString(sum[:12])
	for i := range evs {
		evs[i].AlertID = id
	}
	return Alert{Key: key, Evidence: evs, Info: correlate.AlertFact{
		ID: id, Time: t, Title: r.Title, Severity: Severity(r.Level), Category: category(r.Tags),
		ServiceSource: ServiceSource, DetectionSource: DetectionSource, Techniques: r.Techniques,
	}}
}

// Severity maps a Sigma level to the Graph alert severity.
func Severity(level string) string {
	switch strings.ToLower(level) {
	case "critical", "high":
		return "high"
	case "medium":
		return "medium"
	case "low":
		return "low"
	case "informational":
		return "informational"
	}
	return "unknown"
}

// category is the first ATT&CK tactic of the tags, as Defender names
// categories (attack.credential-access → CredentialAccess).
func category(tags []string) string {
	for _, t := range tags {
		tac, ok := strings.CutPrefix(strings.ToLower(t), "attack.")
		if !ok || techniqueTag.MatchString(t) || groupTag.MatchString(tac) {
			continue
		}
		var b strings.Builder
		for _, w := range strings.FieldsFunc(tac, func(r rune) bool { return r == '-' || r == '_' }) {
			b.WriteString(strings.ToUpper(w[:1]) + w[1:])
		}
		return b.String()
	}
	return "CustomDetection"
}

// groupTag matches ATT&CK group and software ids (g0016, s0002).
var groupTag = regexp.MustCompile(`^[gs]\d{4}$`)

// account column groups, the row's own account first.
var accountCols = [][4]string{
	{"AccountDomain", "AccountName", "AccountSid", "AccountUpn"},
	{"InitiatingProcessAccountDomain", "InitiatingProcessAccountName", "InitiatingProcessAccountSid", "InitiatingProcessAccountUpn"},
}

// evidence renders the entities of a row as evidence (device, account,
// cloud actor, OAuth application, file, IP, URL), and names the main one
// (the first found) that keys suppression.
func evidence(get func(string) string, t time.Time) ([]correlate.EvidenceFact, string) {
	var out []correlate.EvidenceFact
	main := ""
	add := func(odata string, ev correlate.Evidence, ents ...correlate.Entity) {
		var keys []string
		for _, e := range ents {
			if !correlate.WellKnown(e) {
				keys = append(keys, e.Key())
			}
		}
		if len(keys) == 0 {
			return
		}
		if main == "" {
			main = keys[0]
		}
		ev.ODataType, ev.CreatedDateTime = correlate.GraphEvidenceType(odata), t
		ev.Roles = []string{}
		out = append(out, correlate.EvidenceFact{Time: t, Entities: keys, Evidence: ev})
	}
	var ents []correlate.Entity
	push := func(e correlate.Entity, ok bool) {
		if ok {
			ents = append(ents, e)
		}
	}
	// device
	devID, devName := get("DeviceId"), get("DeviceName")
	push(correlate.DeviceID(devID))
	push(correlate.DeviceName(devName))
	add("device", correlate.Evidence{MdeDeviceID: devID, DeviceDNSName: devName}, ents...)
	// account
	for _, g := range accountCols {
		dom, name, sid, upn := get(g[0]), get(g[1]), get(g[2]), get(g[3])
		if name == "" && sid == "" && upn == "" {
			continue
		}
		ents = ents[:0]
		push(correlate.UserSID(sid))
		push(correlate.UserUPN(upn))
		if dom != "" {
			push(correlate.UserNT(dom, name))
		}
		add("user", correlate.Evidence{UserAccount: &correlate.UserAccount{AccountName: name, DomainName: dom, UserSID: sid, UserPrincipalName: upn}}, ents...)
		break
	}
	// the cloud actor (CloudAppEvents: object id, and AccountId, a UPN or
	// an object id)
	if oid, id := get("AccountObjectId"), get("AccountId"); oid != "" || id != "" {
		ents = ents[:0]
		ua := &correlate.UserAccount{AzureAdUserID: oid, AccountName: get("AccountDisplayName")}
		push(correlate.UserObjectID(oid))
		if strings.Contains(id, "@") {
			ua.UserPrincipalName = id
			push(correlate.UserUPN(id))
		} else {
			push(correlate.UserObjectID(id))
		}
		add("user", correlate.Evidence{UserAccount: ua}, ents...)
	}
	// the OAuth application acting
	if app := get("OAuthAppId"); app != "" {
		ents = ents[:0]
		push(correlate.OAuthApp(app))
		add("oauthapplication", correlate.Evidence{AppID: app, DisplayName: get("Application")}, ents...)
	}
	// file (the process or file of the row)
	if sha256, sha1 := get("SHA256"), get("SHA1"); sha256 != "" || sha1 != "" {
		ents = ents[:0]
		push(correlate.FileHash(sha256))
		push(correlate.FileHash(sha1))
		add("file", correlate.Evidence{FileDetails: &correlate.FileDetails{SHA1: sha1, SHA256: sha256, FileName: get("FileName"), FilePath: get("FolderPath")},
			ProcessCommand: get("ProcessCommandLine")}, ents...)
	}
	for _, c := range []string{"RemoteIP", "IPAddress"} {
		if ip := get(c); ip != "" {
			ents = ents[:0]
			push(correlate.IP(ip))
			add("ip", correlate.Evidence{IPAddress: ip}, ents...)
		}
	}
	if u := get("RemoteUrl"); u != "" {
		ents = ents[:0]
		push(correlate.URL(u))
		add("url", correlate.Evidence{URL: u}, ents...)
	}
	return out, main
}
